"""Finding and loading migration files, of every kind, in one version space.

A migration is ``<digits>_<name>.py`` holding ``up(cursor)``, usually
``down(cursor)``, and optionally ``should_run(cursor)`` (a repeat migration)
(:mod:`.python`), or ``<digits>_<name>.sql`` whose first line is a
``-- dbmigrator:`` marker (:mod:`.sql`).  Both become a :class:`Migration`
with a module of those functions.  Files that are not migrations (a README,
``.sql`` files that migrations read relative to ``__file__``, helper
modules) are left alone.
"""
import ast
import dataclasses
import gc
import hashlib
import os
import re
import sys
import traceback
import types

from .. import source_kind
from ..errors import SettingsError
from ..migration_helpers import is_deferred
from ..versions import MAX_DIGITS

FILENAME = re.compile(r'^([0-9]{1,%d})_(.+)\.(py|sql)$' % MAX_DIGITS)


@dataclasses.dataclass
class Migration:
    """A loaded migration file.

    What kind of migration it is (repeat, deferred, atomic: ``atomic =
    False`` is the name Django uses) is read off the module once, as it is
    loaded: a plan and a run ask it several times per step.
    """

    version: str
    name: str
    path: str
    checksum: str
    module: types.ModuleType = None
    is_repeat: bool = False
    is_deferred: bool = False
    is_atomic: bool = True

    def __post_init__(self):
        if self.module is not None:
            self.is_repeat = callable(getattr(self.module, 'should_run', None))
            self.is_deferred = is_deferred(self.module.up)
            self.is_atomic = getattr(self.module, 'atomic', True) is not False

    @property
    def filename(self):
        return os.path.basename(self.path)

    @property
    def up(self):
        return self.module.up

    def require_down(self):
        """Fail before anything runs when a migration cannot be rolled back."""
        if not callable(getattr(self.module, 'down', None)):
            raise SettingsError('%s has no %s: it cannot be rolled back; nothing was changed'
                                % (self.path, '-- dbmigrator: down section' if self.is_sql
                                   else 'down(cursor) function'))

    @property
    def is_sql(self):
        return self.path.endswith('.sql')

    def down(self, cursor):
        self.require_down()
        return self.module.down(cursor)

    def should_run(self, cursor):
        return self.module.should_run(cursor)


def migration_files(directories):
    """(version, name, path) of every migration file, in version order."""
    found = {}
    for directory in directories:
        if not os.path.isdir(directory):
            raise SettingsError(
                'migrations directory %s does not exist: create it '
                '(dbmigrator generate does) or fix migrations-directory' % directory)
        for filename in os.listdir(directory):
            match = FILENAME.match(filename)
            if not match:
                continue
            version, name, kind = match.groups()
            path = os.path.join(directory, filename)
            if kind == 'sql' and not sql.is_marked(_source(path)[2]):
                continue  # a helper file of a 1.x project, say
            if version in found and found[version][2] != path:
                raise SettingsError('two migrations have version %s: %s and %s; rename one' % (
                    version, found[version][2], path))
            found[version] = (version, name, path)
    return [found[v] for v in sorted(found, key=lambda v: (int(v), v))]


def error_line(exc, path):
    """Line of ``path`` where loading failed, from the traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == path:
            line = frame.lineno
    return line


def read(path):
    """A file's bytes, through os-level calls: a buffered file object costs about
    twice as much, twice per migration."""
    handle = os.open(path, os.O_RDONLY | getattr(os, 'O_BINARY', 0))
    try:
        chunks = []
        while True:
            chunk = os.read(handle, 1 << 16)
            if not chunk:
                return b''.join(chunks)
            chunks.append(chunk)
    finally:
        os.close(handle)


def _unreadable(path, exc):
    """Why a folder entry named like a migration cannot be read, and what to do."""
    if isinstance(exc, IsADirectoryError):
        return '%s is a directory named like a migration: rename it' % path
    if os.path.islink(path) and isinstance(exc, FileNotFoundError):
        return '%s is a symlink to %s, which does not exist: fix or remove the link' % (
            path, os.readlink(path))
    return '%s: cannot read the migration (%s): %s' % (
        path, exc.strerror or exc, 'let the user running dbmigrator read it'
        if isinstance(exc, PermissionError) else 'fix or remove the link')


def _source(path):
    """The file's bytes, their checksum and their text."""
    try:
        if not os.path.isfile(path) and os.path.exists(path) and not os.path.isdir(path):
            raise SettingsError('%s is not a regular file: a migration must be one' % path)
        data = read(path)
    except OSError as exc:
        raise SettingsError(_unreadable(path, exc))
    try:
        source = data.decode('utf-8')
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b'\n') + 1
        raise SettingsError('%s is not UTF-8 (byte 0x%02x on line %d): save it as UTF-8' % (
            path, data[exc.start], line))
    return data, hashlib.sha256(data).hexdigest(), source


def unmarked_sql(directories):
    """``.sql`` files named like migrations that have no marker, for ``list`` to mention."""
    found = []
    for directory in directories:
        if not os.path.isdir(directory):
            continue
        for filename in sorted(os.listdir(directory)):
            match = FILENAME.match(filename)
            path = os.path.join(directory, filename)
            if match and match.group(3) == 'sql' and not sql.is_marked(_source(path)[2]):
                found.append(path)
    return found


def load(version, name, path):
    """The migration of one file, of either kind."""
    data, checksum, source = _source(path)
    if path.endswith('.sql'):
        made = sql.module(version, name, path, source)
    else:
        made = python.load(version, name, path, data, checksum, source)
    return Migration(version, name, path, checksum, made)


def read_source(version, name, path):
    """A migration as its source reads, never executed: for pages anyone may see."""
    _, checksum, source = _source(path)
    if path.endswith('.sql'):
        sections, atomic, deferred = sql.parse(path, source)
        return Migration(version, name, path, checksum, None, 'should_run' in sections,
                         deferred, atomic)
    try:
        tree = ast.parse(source, path)
    except SyntaxError as exc:
        raise SettingsError('%s line %s: syntax error: %s' % (path, exc.lineno, exc.msg))
    is_repeat, deferred, atomic = source_kind.kind(tree)
    return Migration(version, name, path, checksum, None, is_repeat, deferred, atomic)


from . import python, sql  # noqa: E402  (they use what is defined above)

_freeze_loaded = False


def loaded_for_good():
    """Say that this process runs once (the console script): what it has loaded
    when discovery ends stays until it exits, so the cycle collector can leave
    all of it alone from then on (``gc.freeze``).  A long-lived process, which
    loads the migrations again for each page, must not."""
    global _freeze_loaded
    _freeze_loaded = True


def read_sources(directories):
    """Every migration of the directories as its source reads, without running any."""
    return [read_source(*entry) for entry in migration_files(directories)]


def discover(directories):
    """Load every migration of the directories, ordered by version.

    The directories go at the end of ``sys.path``, as db-migrator 1.x put
    them, so that migrations can import helper modules kept beside them.
    The cycle collector pauses meanwhile: thousands of new modules would
    start it again and again, over objects that all stay.
    """
    for directory in directories:
        directory = os.path.abspath(directory)
        if directory not in sys.path:
            sys.path.append(directory)
    collecting = gc.isenabled()
    gc.disable()
    try:
        migrations = [load(*entry) for entry in migration_files(directories)]
    finally:
        if collecting:
            gc.enable()
    if _freeze_loaded:
        gc.freeze()
    return migrations

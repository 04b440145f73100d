"""Finding and loading migration files.

A migration is ``<digits>_<name>.py`` holding ``up(cursor)``, usually
``down(cursor)``, and optionally ``should_run(cursor)`` (a repeat migration).
Files are loaded by path under unique module names; files that are not
migrations (a README, ``.sql`` files that migrations read relative to
``__file__``, helper modules) are left alone.
"""
import ast
import dataclasses
import functools
import gc
import hashlib
import importlib.util
import inspect
import marshal
import os
import re
import sys
import tempfile
import traceback
import types

from . import source_kind
from .errors import SettingsError
from .migration_helpers import is_deferred
from .versions import MAX_DIGITS

FILENAME = re.compile(r'^([0-9]{1,%d})_(.+)\.py$' % MAX_DIGITS)


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
            raise SettingsError('%s has no down(cursor) function: it cannot be rolled back'
                                % self.path)

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
            version, name = match.groups()
            path = os.path.join(directory, filename)
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


def _read(path):
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
        data = _read(path)
    except OSError as exc:
        raise SettingsError(_unreadable(path, exc))
    try:
        source = data.decode('utf-8')
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b'\n') + 1
        raise SettingsError('%s is not UTF-8 (byte 0x%02x on line %d): save it as UTF-8' % (
            path, data[exc.start], line))
    return data, hashlib.sha256(data).hexdigest(), source


def read_source(version, name, path):
    """A migration as its source reads, never executed: for pages anyone may see."""
    _, checksum, source = _source(path)
    try:
        tree = ast.parse(source, path)
    except SyntaxError as exc:
        raise SettingsError('%s line %s: syntax error: %s' % (path, exc.lineno, exc.msg))
    is_repeat, deferred, atomic = source_kind.kind(tree)
    return Migration(version, name, path, checksum, None, is_repeat, deferred, atomic)


def load(version, name, path):
    data, checksum, source = _source(path)
    module_name = 'dbmigrator._migrations.m%s_%s' % (
        version, hashlib.sha1(path.encode('utf-8', 'surrogateescape')).hexdigest()[:8])
    module = types.ModuleType(module_name)
    module.__file__ = path
    try:
        code = _code(path, data, source)
    except SyntaxError as exc:
        raise SettingsError('%s line %s: syntax error: %s' % (path, exc.lineno, exc.msg))
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)
    except KeyboardInterrupt:
        sys.modules.pop(module_name, None)
        raise
    except BaseException as exc:  # sys.exit() at module level must not end dbmigrator
        sys.modules.pop(module_name, None)
        what = 'it called sys.exit(%s)' % ('' if exc.code is None else repr(exc.code)) if (
            isinstance(exc, SystemExit)) else '%s: %s' % (type(exc).__name__, exc)
        raise SettingsError('%s line %s: cannot load the migration: %s' % (
            path, error_line(exc, path), what))
    if not callable(getattr(module, 'up', None)):
        raise SettingsError('%s has no up(cursor) function: every migration needs one' % path)
    for function in ('up', 'down', 'should_run'):
        code_of = getattr(getattr(module, function, None), '__code__', None)
        if code_of is not None and code_of.co_flags & (
                inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_GENERATOR):
            raise SettingsError(
                '%s: %s is an async function or a generator, so calling it would not run its '
                'body: write it as a plain def %s(cursor)' % (path, function, function))
    return Migration(version, name, path, checksum, module)


# A PEP 552 pyc checked against the source's hash, never its mtime: a file
# rewritten within the same second at the same size is still recompiled.
_CHECKED_HASH = (0b11).to_bytes(4, 'little')


def _code(path, data, source):
    """The migration's code, from ``__pycache__`` when the cached file matches its source.

    db-migrator 1.x imported migrations with ``__import__``, which keeps
    ``__pycache__`` beside them too; compiling thousands of files on every
    run is most of what ``list`` and ``migrate`` cost on a large project.
    """
    cache = _cache_path(path)
    header = importlib.util.MAGIC_NUMBER + _CHECKED_HASH + importlib.util.source_hash(data)
    code = _read_cache(cache, header, path) if cache is not None else None
    if code is not None:
        return code
    code = compile(source, path, 'exec', dont_inherit=True)
    if cache is not None and not sys.dont_write_bytecode:
        _write_cache(cache, header + marshal.dumps(code), path)
    return code


@functools.lru_cache(maxsize=None)
def _cache_folder(directory):
    """Where the pycs of a folder's files go, and how their names end: asked of
    importlib once per folder (it honours PYTHONPYCACHEPREFIX), not once per file."""
    try:
        cache = importlib.util.cache_from_source(os.path.join(directory, 'm.py'))
    except (NotImplementedError, ValueError):
        return None
    folder, name = os.path.split(cache)
    return folder, name[1:]


def _cache_path(path):
    directory, filename = os.path.split(path)
    where = _cache_folder(directory)
    return None if where is None else os.path.join(where[0], filename[:-3] + where[1])


def _read_cache(cache, header, path):
    """The cached code when the file is there and its header matches; else None."""
    try:
        cached = _read(cache)
    except OSError:
        return None
    if cached[:16] != header:
        return None
    try:
        code = marshal.loads(cached[16:])
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, types.CodeType) and code.co_filename == path else None


def _write_cache(cache, content, source_path):
    """Write a cache file whole or not at all; a read-only folder just goes without."""
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(cache), suffix='.tmp')
        try:
            with os.fdopen(handle, 'wb') as out:
                out.write(content)
            os.chmod(temporary, os.stat(source_path).st_mode & 0o666)
            os.replace(temporary, cache)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        pass


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

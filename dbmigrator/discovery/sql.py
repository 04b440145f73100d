"""Plain SQL migration files: ``<version>_<name>.sql`` starting with a marker.

::

    -- dbmigrator: should_run
    SELECT count(*) < 2 FROM settings;
    -- dbmigrator: up atomic=false deferred
    CREATE INDEX CONCURRENTLY ...;
    -- dbmigrator: down
    DROP INDEX CONCURRENTLY ...;

Only a file whose first non-blank line is a ``-- dbmigrator:`` marker is a
migration, so 1.x projects' helper ``.sql`` files stay ignored.  Each file
becomes a module with ``up``, ``down`` and ``should_run`` like a Python
migration's, so everything downstream treats both kinds alike.  Everything
is checked before anything runs, and errors name the file's own lines.
"""
import dataclasses
import re
import types

from ..errors import SettingsError
from ..migration_helpers import deferred as mark_deferred
from . import statements as lexer

MARKER = re.compile(r'^\s*--\s*dbmigrator:\s*(.*?)\s*$')
SECTIONS = ('up', 'down', 'should_run')
UP_OPTIONS = ('atomic=false', 'atomic=true', 'deferred')
CONTROL = {'BEGIN', 'COMMIT', 'ROLLBACK', 'SAVEPOINT', 'RELEASE', 'END', 'ABORT', 'START'}
# Statements PostgreSQL refuses inside a transaction block.
_OUTSIDE = (('CREATE', 'INDEX', 'CONCURRENTLY'), ('CREATE', 'UNIQUE', 'INDEX', 'CONCURRENTLY'),
            ('DROP', 'INDEX', 'CONCURRENTLY'), ('REINDEX', 'CONCURRENTLY'), ('VACUUM',),
            ('CREATE', 'DATABASE'), ('DROP', 'DATABASE'), ('ALTER', 'SYSTEM'),
            ('CREATE', 'TABLESPACE'), ('DROP', 'TABLESPACE'),
            ('ALTER', 'TABLE', 'DETACH', 'PARTITION', 'CONCURRENTLY'))


def is_marked(source):
    """A migration only when its first non-blank line is a ``-- dbmigrator:`` marker."""
    for line in source.splitlines():
        if line.strip():
            return bool(MARKER.match(line))
    return False


@dataclasses.dataclass
class Section:
    name: str
    line: int          # of its marker
    text: str
    statements: list


def parse(path, source):
    """``(sections, atomic, deferred)`` of a marked file; a clear error for anything else."""
    sections, current, atomic, deferred = {}, None, True, False
    lines = source.split('\n')
    for number, line in enumerate(lines, 1):
        match = MARKER.match(line)
        if not match:
            if current is not None:
                current[1].append(line)
            continue
        words = match.group(1).split()
        if not words or words[0] not in SECTIONS:
            raise SettingsError('%s line %d: unknown marker %r: use -- dbmigrator: up, down or '
                                'should_run' % (path, number, match.group(1)))
        name, options = words[0], [w.lower() for w in words[1:]]
        if name in sections or (current and current[0] == name):
            raise SettingsError('%s line %d: a second %s section: one of each' % (
                path, number, name))
        bad = [o for o in options if name != 'up' or o not in UP_OPTIONS]
        if bad:
            raise SettingsError('%s line %d: unknown option %s: the up line takes atomic=false '
                                'and deferred' % (path, number, bad[0]))
        atomic = atomic and 'atomic=false' not in options
        deferred = deferred or 'deferred' in options
        if current is not None:
            sections[current[0]] = current
        current = (name, [''] * number, number)
    if current is not None:
        sections[current[0]] = current
    if 'up' not in sections:
        raise SettingsError('%s has no -- dbmigrator: up section: every migration needs one'
                            % path)
    parsed = {}
    for name, (_, body, number) in sections.items():
        # Padded with the lines above it, so that positions are the file's own.
        text = '\n'.join(body)
        try:
            found = lexer.split(text)
        except lexer.LexError as exc:
            raise SettingsError('%s line %d: %s' % (path, exc.line, exc))
        parsed[name] = Section(name, number, text.strip('\n'), found)
        _check(path, parsed[name], atomic)
    return parsed, atomic, deferred


def _check(path, section, atomic):
    for statement in section.statements:
        words = statement.words
        where = '%s line %d' % (path, statement.line)
        if words and words[0] in CONTROL and not (
                words[0] == 'START' and words[1:2] != ['TRANSACTION']):
            raise SettingsError(
                '%s: %s controls the transaction, which dbmigrator does for each migration '
                '(its statements and its schema_migrations row commit together): remove it%s'
                % (where, ' '.join(words[:2]) if words[0] == 'START' else words[0],
                   '' if atomic else '; with atomic=false each statement commits on its own'))
        if words[:1] == ['COPY'] and 'STDIN' in words:
            raise SettingsError('%s: COPY ... FROM STDIN needs data that only psql sends: use '
                                'INSERT, or a Python migration with cursor.copy_expert' % where)
        if section.name == 'should_run' and len(section.statements) != 1:
            raise SettingsError('%s line %d: should_run is one query that returns one boolean'
                                % (path, section.line))
        if atomic and any(tuple(words[:len(o)]) == o for o in _OUTSIDE):
            raise SettingsError(
                '%s: %s cannot run inside a transaction block: put it in a migration of its '
                'own with -- dbmigrator: up atomic=false' % (where, ' '.join(words[:3])))


def module(version, name, path, source):
    """The migration as a module with ``up``, ``down`` and ``should_run``."""
    sections, atomic, deferred = parse(path, source)
    made = types.ModuleType('dbmigrator._migrations.sql_%s' % version)
    made.__file__ = path
    made.atomic = atomic
    made.dbmigrator_sql = sections
    made.dbmigrator_running = [None]

    def runner(section):
        def run(cursor):
            # Sent as written, with no parameters, so that % needs no doubling.
            if not section.statements:
                return None  # only comments: nothing to send
            if atomic:
                made.dbmigrator_running[0] = section.statements[0], section
                cursor.execute(section.text)
                return None
            for statement in section.statements:
                made.dbmigrator_running[0] = statement, section
                cursor.execute(statement.text)
            return None
        return run
    made.up = runner(sections['up'])
    if deferred:
        made.up = mark_deferred(made.up)
    if 'down' in sections:
        made.down = runner(sections['down'])
    if 'should_run' in sections:
        query = sections['should_run']

        def should_run(cursor):
            made.dbmigrator_running[0] = query.statements[0], query
            cursor.execute(query.text)
            row = cursor.fetchone() if cursor.description else None
            if row is None or len(row) != 1 or not isinstance(row[0], bool):
                raise SettingsError('%s line %d: should_run must return one boolean, and it '
                                    'returned %r' % (path, query.line, row))
            return row[0]
        made.should_run = should_run
    return made


def where(migration, exc):
    """``FILE line L, column C`` of the server's error in a SQL migration, or None."""
    running = getattr(migration.module, 'dbmigrator_running', [None])[0]
    diag = getattr(exc, 'diag', None)
    if running is None:
        return None
    statement, section = running
    position = getattr(diag, 'statement_position', None) if diag else None
    if position and section.text is not None and statement is section.statements[0] and (
            len(section.statements) > 1) and migration.module.atomic:
        # The whole section was sent: find the statement the position falls in.
        offset = int(position)
        for candidate in section.statements:
            start = section.text.find(candidate.text)
            if start < offset:
                statement, position = candidate, offset - start
    if position:
        line, column = lexer.locate(statement, int(position))
        return '%s line %d, column %d' % (migration.path, line, column)
    return '%s line %d' % (migration.path, statement.line)

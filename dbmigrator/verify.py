"""``verify``: up, down and up again on a scratch database, comparing schemas.

It applies every migration to an empty scratch database, then, from the
newest down, rolls each one back, compares the schema with the one before
it was applied, re-applies it, compares again, and rolls it back once more
to reach the next one.  The configured database is only used to create the
scratch database beside it (which needs CREATEDB); ``--scratch embedded``
uses a throwaway embedded server instead.
"""
import dataclasses
import logging

from . import commands, scratch as scratch_mod
from .database import connect
from .discovery import discover
from .errors import DatabaseUnavailable, DBMigratorError
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
    with scratch_mod.place(settings, scratch, 'verify') as (dsn, where):
        scratch_settings = dataclasses.replace(settings, db_connection_string=dsn,
                                               lock_wait=0)
        log.info('Verifying %d migrations on %s', len(migrations), where)
        with scratch_mod.quiet():
            commands.init(scratch_settings, version='0')
        conn = connect(dsn, settings.connect_timeout)
        try:
            dumper = SchemaDumper(conn, dsn)
            if not dumper.enabled:
                raise DatabaseUnavailable('verify compares schemas with pg_dump, and none '
                                          'could be used (see the warning above)')
            with scratch_mod.quiet():
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

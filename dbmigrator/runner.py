"""Running a plan: each ``up``/``down`` and its schema_migrations change
commit in one transaction, or not at all."""
import dataclasses
import logging
import time

import psycopg2

from . import interrupts, store
from .discovery import error_line
from .errors import DBMigratorError, Interrupted, MigrationFailed
from .migration_helpers import activate
from .plan import DOWN, SKIP_DEFERRED, UP
from .redact import scrub
from .schemadiff import SchemaDumper, unified

log = logging.getLogger(__name__)

OK, FAILED, INTERRUPTED = 'ok', 'failed', 'interrupted'


@dataclasses.dataclass
class Step:
    """One migration that ran (or failed), for every report: text, JSON, pages."""

    version: str
    name: str
    action: str
    reason: str = ''
    outcome: str = OK
    duration: float = 0.0
    diff: str = ''
    error: str = None


def _reason(exc, migration):
    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and (
            getattr(exc, 'pgcode', None) is None):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return 'lost the database connection: %s' % first
    if isinstance(exc, psycopg2.Error):
        diag = getattr(exc, 'diag', None)
        message = diag.message_primary if diag and diag.message_primary else str(exc).strip()
        return message.splitlines()[0] if message else type(exc).__name__
    if isinstance(exc, DBMigratorError):
        return str(exc)
    if isinstance(exc, SystemExit):
        return 'it called sys.exit(%s)' % (exc.code if exc.code is not None else '')
    line = error_line(exc, migration.path)
    where = ' (%s line %s)' % (migration.filename, line) if line else ''
    return '%s: %s%s' % (type(exc).__name__, exc, where)


def _safe_rollback(conn):
    try:
        conn.rollback()
    except psycopg2.Error:
        pass


def _log_skips_before(skips, version):
    """Say 'Skipping deferred migration' in version order, between the runs, as 1.x did."""
    while skips and (version is None or int(skips[0].version) < int(version)):
        log.info('Skipping deferred migration %s %s', skips[0].version, skips[0].name)
        skips = skips[1:]
    return skips


class Runner:
    """Executes a plan on one locked connection and reports each step."""

    def __init__(self, conn, settings, diff=True, checksums=True):
        self.conn = conn
        self.settings = settings
        self.checksums = checksums
        self.dumper = SchemaDumper(conn, settings.db_connection_string, enabled=diff)
        self.steps = []
        self._before = None

    def _diff_after(self):
        if not self.dumper.enabled:
            return ''
        after = self.dumper.dump()
        text = unified(self._before, after)
        self._before = after
        return text

    def _run_one(self, planned):
        """Run one migration in its own transaction; False if should_run said no."""
        migration = planned.migration
        with self.conn.cursor() as cursor:
            if planned.action == UP and migration.is_repeat:
                cursor.execute('SAVEPOINT dbmigrator_should_run')
                try:
                    wanted = migration.should_run(cursor)
                except Exception as exc:
                    raise DBMigratorError('should_run raised %s' % _reason(exc, migration))
                if not wanted:
                    cursor.execute('ROLLBACK TO SAVEPOINT dbmigrator_should_run')
                    self.conn.rollback()
                    log.info('Skipping migration %s %s: should_run is false',
                             migration.version, migration.name)
                    return False
                cursor.execute('RELEASE SAVEPOINT dbmigrator_should_run')
            if planned.action == UP:
                log.info('Running migration %s %s', migration.version, migration.name)
                migration.up(cursor)
                store.record_applied(cursor, migration.version,
                                     migration.checksum if self.checksums else None,
                                     exists=planned.has_row)
            else:
                log.info('Rolling back migration %s %s', migration.version, migration.name)
                migration.down(cursor)
                store.remove(cursor, migration.version)
        self.conn.commit()
        return True

    def run(self, plan):
        """Run the plan's steps in order; stop at the first failure."""
        if plan.steps and self.dumper.enabled:
            self._before = self.dumper.dump()
        interrupts.reset()
        skips = [s for s in plan.skipped if s.reason == SKIP_DEFERRED] if plan.action == UP else []
        with activate(self.settings.db_connection_string, self.settings.super_user,
                      self.settings.connect_timeout):
            for planned in plan.steps:
                skips = _log_skips_before(skips, planned.version)
                migration = planned.migration
                started = time.monotonic()
                try:
                    ran = self._run_one(planned)
                except KeyboardInterrupt:
                    _safe_rollback(self.conn)
                    self._fail(planned, started, INTERRUPTED, Interrupted(
                        'interrupted: migration %s %s was rolled back' % (
                            migration.version, migration.name)))
                except (Exception, SystemExit) as exc:
                    _safe_rollback(self.conn)
                    if interrupts.requested():
                        self._fail(planned, started, INTERRUPTED, Interrupted(
                            'interrupted: migration %s %s was cancelled and rolled back' % (
                                migration.version, migration.name)))
                    verb = 'Migration' if planned.action == UP else 'Rollback of migration'
                    self._fail(planned, started, FAILED, MigrationFailed('%s %s %s failed: %s' % (
                        verb, migration.version, migration.name,
                        scrub(_reason(exc, migration)))))
                if not ran:
                    continue
                duration = time.monotonic() - started
                diff = self._diff_after()
                if diff:
                    log.info('%s', diff)
                self.steps.append(Step(migration.version, migration.name, planned.action,
                                       planned.reason, OK, duration, diff))
        _log_skips_before(skips, None)
        return self.steps

    def _fail(self, planned, started, outcome, error):
        self.steps.append(Step(planned.version, planned.name, planned.action, planned.reason,
                               outcome, time.monotonic() - started, '', str(error)))
        error.steps = list(self.steps)
        raise error

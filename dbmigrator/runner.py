"""Running migrations: each ``up``/``down`` and its schema_migrations change
commit in one transaction, or not at all."""
import dataclasses
import logging

import psycopg2

from . import interrupts, store
from .discovery import error_line
from .errors import DBMigratorError, Interrupted, MigrationFailed
from .migration_helpers import activate
from .redact import scrub
from .schemadiff import SchemaDumper, unified

log = logging.getLogger(__name__)

UP, DOWN = 'migrate', 'rollback'


@dataclasses.dataclass
class Step:
    """One migration that ran, for reports (CLI output, web result page)."""

    version: str
    name: str
    action: str
    diff: str = ''


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
    line = error_line(exc, migration.path)
    where = ' (%s line %s)' % (migration.filename, line) if line else ''
    return '%s: %s%s' % (type(exc).__name__, exc, where)


def _safe_rollback(conn):
    try:
        conn.rollback()
    except psycopg2.Error:
        pass


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

    def _run_one(self, migration, action):
        """Run one migration in its own transaction; False if should_run said no."""
        with self.conn.cursor() as cursor:
            if action == UP and migration.is_repeat:
                cursor.execute('SAVEPOINT dbmigrator_should_run')
                try:
                    wanted = migration.should_run(cursor)
                except Exception as exc:
                    raise DBMigratorError('should_run raised %s' % _reason(exc, migration))
                if not wanted:
                    cursor.execute('ROLLBACK TO SAVEPOINT dbmigrator_should_run')
                    self.conn.rollback()
                    log.debug('Skipping repeat migration %s %s: should_run returned false',
                              migration.version, migration.name)
                    return False
                cursor.execute('RELEASE SAVEPOINT dbmigrator_should_run')
            if action == UP:
                log.info('Running migration %s %s', migration.version, migration.name)
                migration.up(cursor)
                store.record_applied(cursor, migration.version,
                                     migration.checksum if self.checksums else None)
            else:
                log.info('Rolling back migration %s %s', migration.version, migration.name)
                migration.down(cursor)
                store.remove(cursor, migration.version)
        self.conn.commit()
        return True

    def run(self, plan, action):
        """Run ``plan`` (migrations) in order; stop at the first failure."""
        if plan and self.dumper.enabled:
            self._before = self.dumper.dump()
        interrupts.reset()
        with activate(self.settings.db_connection_string, self.settings.super_user,
                      self.settings.connect_timeout):
            for migration in plan:
                try:
                    ran = self._run_one(migration, action)
                except KeyboardInterrupt:
                    _safe_rollback(self.conn)
                    raise Interrupted('interrupted: migration %s %s was rolled back' % (
                        migration.version, migration.name), self.steps)
                except Exception as exc:
                    _safe_rollback(self.conn)
                    if interrupts.requested():
                        raise Interrupted('interrupted: migration %s %s was cancelled and '
                                          'rolled back' % (migration.version, migration.name),
                                          self.steps)
                    verb = 'Migration' if action == UP else 'Rollback of migration'
                    raise MigrationFailed('%s %s %s failed: %s' % (
                        verb, migration.version, migration.name,
                        scrub(_reason(exc, migration))), self.steps)
                if not ran:
                    continue
                diff = self._diff_after()
                if diff:
                    log.info('%s', diff)
                self.steps.append(Step(migration.version, migration.name, action, diff))
        return self.steps

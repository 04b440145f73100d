"""The migration's connection, which an atomic migration may not commit itself.

A migration that calls ``cursor.connection.commit()`` and then fails would
leave half of itself applied with no ``schema_migrations`` row.  While
``up``, ``down`` or ``should_run`` of an atomic migration runs, the
transaction controls of its connection raise instead, as Django does inside
``atomic``; the refusal is remembered so that a migration which swallows
the exception still fails and is rolled back whole.
"""
import psycopg2.extensions

from .errors import DBMigratorError

_base = psycopg2.extensions.connection

ADVICE = ('an atomic migration commits together with its schema_migrations row; '
          'set atomic = False in the migration to manage transactions yourself')


class TransactionControlRefused(DBMigratorError):
    """An atomic migration tried to end or change its own transaction."""


def ended_by_batch(conn):
    """True when a batch's COMMIT ended the transaction that psycopg2 still counts.

    psycopg2 sends its own BEGIN only when it has seen the last transaction
    end through ``commit()`` or ``rollback()``.
    """
    return (conn.status == psycopg2.extensions.STATUS_BEGIN
            and conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE)


class MigrationConnection(_base):
    """A psycopg2 connection whose transaction controls can be locked.

    ``lease`` is the run's :class:`dbmigrator.lock.Lease` and ``recorder`` its
    :class:`dbmigrator.history.Recorder` while it holds the lock.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.locked_by = None
        self.refused = None
        self.lease = None
        self.recorder = None

    def _check(self, what):
        if self.locked_by:
            self.refused = 'it called %s, which %s may not: %s' % (what, self.locked_by, ADVICE)
            raise TransactionControlRefused(self.refused)

    def _resync(self):
        """After a batch's COMMIT, begin the transaction psycopg2 counts: its COMMIT or
        ROLLBACK would otherwise reach a server with none open, which logs a warning."""
        if ended_by_batch(self):
            with self.cursor() as cursor:
                cursor.execute('BEGIN')

    def commit(self):
        self._check('connection.commit()')
        self._resync()
        _base.commit(self)

    def rollback(self):
        self._check('connection.rollback()')
        self._resync()
        _base.rollback(self)

    def set_session(self, *args, **kwargs):
        self._check('connection.set_session()')
        _base.set_session(self, *args, **kwargs)

    def set_isolation_level(self, level):
        self._check('connection.set_isolation_level()')
        _base.set_isolation_level(self, level)

    @property
    def autocommit(self):
        return _base.autocommit.__get__(self)

    @autocommit.setter
    def autocommit(self, value):
        self._check('setting connection.autocommit')
        _base.autocommit.__set__(self, value)

    def lock(self, who):
        """Refuse transaction control from now on, naming ``who`` in the error."""
        self.locked_by, self.refused = who, None

    def unlock(self):
        self.locked_by = None
        return self.refused

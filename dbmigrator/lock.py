"""One dbmigrator run at a time per database, also behind connection poolers.

A session-level advisory lock does not survive a transaction pooler: it is
taken on one server connection and the migrations run on others.  So the
lock has two layers, neither of which needs a session:

* A **lease**: the one row of ``dbmigrator_lock``, taken by a single
  autocommit ``INSERT ... ON CONFLICT`` that only succeeds when the row is
  free, expired, or its holder's backend is gone.  A heartbeat thread on its
  own connection renews it every few seconds and records which migration
  runs; releasing deletes it.  Waiters poll with that same statement, so a
  waiting run holds no transaction open (a ``CREATE INDEX CONCURRENTLY`` in
  the running one would otherwise wait for it).  A killed runner's lease is
  taken over at once on a direct connection (its backend is gone) and after
  ``LEASE_SECONDS`` behind a pooler (whose server connection lives on).
  Another role's backend shows in ``pg_stat_activity`` without its start
  time; a live pid then counts as the holder, until the lease expires.
* Inside each migration's own transaction, ``pg_advisory_xact_lock`` and a
  fresh read of that migration's row (:func:`claim`): even if a lease were
  taken over while its holder still ran, no migration runs twice.

A least-privilege role that may neither create nor write ``dbmigrator_lock``
is warned, with the grant that would give it the lease, and holds a
session-level advisory lock instead where the connection keeps its session;
through a transaction pooler only the per-migration claim is left.
"""
import dataclasses
import datetime
import getpass
import contextvars
import hashlib
import logging
import os
import socket
import threading
import time
import uuid

import psycopg2
import psycopg2.errors

from . import interrupts, own_tables
from .errors import Interrupted, LockTimeout

log = logging.getLogger(__name__)

TABLE = 'dbmigrator_lock'


def _key(text):
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], 'big', signed=True)


KEY = _key('dbmigrator:schema_migrations')
# The lease without its table; another key than the claim's, which waits
# inside a transaction, where this one is only ever tried.
SESSION_KEY = _key('dbmigrator:lease')

# A schema target's advisory keys are its own, so that schema targets of one
# database never wait for each other: per process (a --schema run) or per
# context (the page, which serves many targets in its threads).
_process_scope = None
_scope = contextvars.ContextVar('dbmigrator_lock_scope', default=None)


def use_scope(schema):
    """This process works on schema target ``schema``."""
    global _process_scope
    _process_scope = schema


def scoped(schema):
    """The current context works on schema target ``schema`` (None: the database)."""
    _scope.set(schema)


def _scoped(base, text):
    schema = _scope.get() or _process_scope
    return base if schema is None else _key(text + ':' + schema)


def claim_key():
    """The key each migration's transaction takes."""
    return _scoped(KEY, 'dbmigrator:schema_migrations')


def lease_key():
    """The session key that stands in for the lease without its table."""
    return _scoped(SESSION_KEY, 'dbmigrator:lease')
TABLE_LEASE, SESSION_LEASE, NO_LEASE = 'table', 'session', 'none'
POLL_SECONDS = 0.2
LEASE_SECONDS = 30
HEARTBEAT_SECONDS = 1
# A run whose heartbeat has not renewed its lease for this long stops, so
# that it is gone before another run may take the lease over.
RENEW_DEADLINE_SECONDS = LEASE_SECONDS / 2
OUTPUT_CHARS = 16 * 1024

CREATE = '''
CREATE TABLE IF NOT EXISTS dbmigrator_lock (
    id INT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    holder TEXT NOT NULL,
    who TEXT NOT NULL,
    backend_pid INT,
    backend_start TIMESTAMPTZ,
    acquired TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires TIMESTAMPTZ NOT NULL,
    run_id TEXT,
    current TEXT,
    current_pid INT,
    current_started TIMESTAMPTZ,
    current_step INT,
    steps INT,
    output TEXT,
    cancel_requested TIMESTAMPTZ
)'''

COLUMNS = ('holder', 'who', 'backend_pid', 'backend_start', 'acquired', 'expires', 'run_id',
           'current', 'current_pid', 'current_started', 'current_step', 'steps', 'output',
           'cancel_requested')

TAKE = '''
INSERT INTO dbmigrator_lock AS l (holder, who, backend_pid, backend_start, acquired, expires,
                                  run_id)
SELECT %(holder)s, %(who)s, a.pid, a.backend_start, now(),
       now() + %(lease)s * interval '1 second', %(run_id)s
  FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()
ON CONFLICT (id) DO UPDATE
   SET holder = excluded.holder, who = excluded.who, backend_pid = excluded.backend_pid,
       backend_start = excluded.backend_start, acquired = excluded.acquired,
       expires = excluded.expires, run_id = excluded.run_id, current = NULL,
       current_pid = NULL, current_started = NULL, current_step = NULL, steps = NULL,
       output = NULL, cancel_requested = NULL
 WHERE l.expires < now()
    OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                    WHERE a.pid = l.backend_pid
                      AND (a.backend_start = l.backend_start OR a.backend_start IS NULL))
RETURNING holder'''

# Whether TAKE would succeed now, without taking anything.
FREE = '''
SELECT NOT EXISTS (SELECT 1 FROM dbmigrator_lock l
                    WHERE l.expires >= now()
                      AND EXISTS (SELECT 1 FROM pg_stat_activity a
                                   WHERE a.pid = l.backend_pid
                                     AND (a.backend_start = l.backend_start
                                          OR a.backend_start IS NULL)))'''


def whoami():
    """Who runs this process, for the lease and the history: user@host pid N."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    return '%s@%s pid %d' % (user, socket.gethostname(), os.getpid())


@dataclasses.dataclass
class Holder:
    """The run holding the lease, as the waiting message and the page show it."""

    who: str
    backend_pid: int
    acquired: datetime.datetime
    run_id: str = None
    current: str = None
    current_pid: int = None
    current_started: datetime.datetime = None
    current_step: int = None
    steps: int = None
    output: str = None
    cancel_requested: datetime.datetime = None

    def __str__(self):
        if self.acquired is None:
            return '%s, backend pid %s' % (self.who, self.backend_pid)
        return '%s, backend pid %s, since %s' % (
            self.who, self.backend_pid, self.acquired.astimezone(datetime.timezone.utc)
            .strftime('%Y-%m-%d %H:%M:%S UTC'))


_SESSION_HOLDER = '''
SELECT 'role ' || COALESCE(a.usename, '?'), l.pid, a.backend_start
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.classid = %s AND l.objid = %s
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())'''


def holder(cursor):
    """The current lease holder, or None; never takes or waits for anything."""
    cursor.execute("SELECT has_table_privilege(to_regclass(%s), 'SELECT')", (TABLE,))
    if cursor.fetchone()[0]:
        cursor.execute('SELECT who, backend_pid, acquired, run_id, current, current_pid,'
                       ' current_started, current_step, steps, output, cancel_requested'
                       ' FROM dbmigrator_lock'
                       ' WHERE expires >= now()')
        row = cursor.fetchone()
        if row:
            return Holder(*row)
    key = lease_key()
    cursor.execute(_SESSION_HOLDER, ((key >> 32) & 0xffffffff, key & 0xffffffff))
    row = cursor.fetchone()
    return Holder('a dbmigrator run of ' + row[0], row[1], row[2]) if row else None


class Lease:
    """The lease of one run: take it, keep it alive, give it back."""

    def __init__(self, conn, connect, who=None, run_id=None, keeps_session=lambda conn: True,
                 pooled=lambda conn: False):
        self.conn = conn
        self.keeps_session = keeps_session
        self._pooled = pooled
        self.kind = None
        self.id = uuid.uuid4().hex
        self.who = who or whoami()
        self.run_id = run_id
        self.current = self.current_pid = self.current_started = None
        self.current_step = self.steps = None
        self.output = []
        self.cancelled = False
        self._last_beat = 0
        self._connect = connect
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None

    def acquire(self, wait=None):
        """Take the lease, waiting at most ``wait`` seconds (None: forever, 0: not at all).

        Returns the connection that holds it: behind a pooler a waiting run
        lets go of its own, so that it holds no server connection the
        holder's heartbeat needs, and connects again once the lease is free.
        """
        self.kind = self._create_table()
        self._started, self._announced = time.monotonic(), False
        try:
            if self.kind == TABLE_LEASE:
                taken = self._try(self._take_row)
                if taken is False and self._pooled(self.conn):
                    taken = self._wait_apart(wait)
                elif taken is False:
                    taken = self._wait_here(self._take_row, wait)
                if taken is None:
                    with self.conn.cursor() as cursor:
                        grant = 'GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s' % (
                            TABLE, _current_user(cursor))
                    self.conn.rollback()
                    self.kind = self._without_table(
                        'cannot write %s (permission denied)' % TABLE, grant)
            if self.kind == SESSION_LEASE:
                self._try(self._take_session) or self._wait_here(self._take_session, wait)
        except KeyboardInterrupt:
            raise Interrupted('interrupted while waiting for the migration lock; '
                              'nothing was changed')
        if self.kind == TABLE_LEASE:
            self._renewed = time.monotonic()
            self._thread = threading.Thread(target=self._heartbeat, name='dbmigrator-lease',
                                            daemon=True)
            self._thread.start()
            self._deadline = threading.Thread(target=self._watch_renewals,
                                              name='dbmigrator-lease-deadline', daemon=True)
            self._deadline.start()
        return self.conn

    def _try(self, take):
        """One autocommit try: True taken, False busy, None not allowed."""
        self.conn.autocommit = True
        try:
            with self.conn.cursor() as cursor:
                return take(cursor)
        finally:
            self.conn.autocommit = False

    def _take_row(self, cursor):
        try:
            cursor.execute(TAKE, {'holder': self.id, 'who': self.who,
                                  'lease': LEASE_SECONDS, 'run_id': self.run_id})
        except psycopg2.errors.InsufficientPrivilege:
            return None
        return bool(cursor.fetchone())

    def _take_session(self, cursor):
        cursor.execute('SELECT pg_try_advisory_lock(%s)', (lease_key(),))
        return cursor.fetchone()[0]

    def _wait_here(self, take, wait):
        """Poll ``take`` on the run's connection until it succeeds or says it cannot."""
        while True:
            self.conn.autocommit = True
            try:
                with self.conn.cursor() as cursor:
                    self._still_waiting(holder(cursor), wait)
                    time.sleep(POLL_SECONDS)
                    taken = take(cursor)
            finally:
                self.conn.autocommit = False
            if taken is not False:
                return taken

    def _wait_apart(self, wait):
        """Wait with no server connection held: each poll connects, looks, and
        disconnects; only a free lease is tried on a connection of the run."""
        self.conn.close()
        while True:
            probe = self._connect()
            try:
                probe.autocommit = True
                with probe.cursor() as cursor:
                    cursor.execute(FREE)
                    free = cursor.fetchone()[0]
                    other = None if free else holder(cursor)
            finally:
                probe.close()
            if free:
                self.conn = self._connect()
                taken = self._try(self._take_row)
                if taken is not False:
                    return taken
                self.conn.close()
            self._still_waiting(other, wait)
            time.sleep(POLL_SECONDS)

    def _still_waiting(self, other, wait):
        """Give up once ``wait`` is over; say once whom the run waits for."""
        who = 'another dbmigrator run (%s)' % other if other else 'another dbmigrator run'
        if wait is not None and time.monotonic() - self._started >= wait:
            raise LockTimeout('%s holds the migration lock; gave up after %gs: '
                              'retry later or raise --lock-wait' % (who, wait))
        if not self._announced and other:
            log.info('Waiting for %s to finish...', who)
            self._announced = True

    def _create_table(self):
        """Create the lease table once; concurrent first runs queue on the xact lock."""
        try:
            with self.conn.cursor() as cursor:
                if not own_tables.found(cursor, TABLE, COLUMNS, "dbmigrator's lease table",
                                        'drop it if nothing else uses it, or rename it; '
                                        'dbmigrator then makes its own'):
                    cursor.execute('SELECT pg_advisory_xact_lock(%s)', (claim_key(),))
                    cursor.execute(CREATE)
            self.conn.commit()
            return TABLE_LEASE
        except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ReadOnlySqlTransaction):
            self.conn.rollback()
        with self.conn.cursor() as cursor:
            grant = 'GRANT CREATE ON SCHEMA %s TO %s' % (_current_schema(cursor),
                                                         _current_user(cursor))
        self.conn.rollback()
        return self._without_table('cannot create %s (no CREATE privilege)' % TABLE, grant)

    def _without_table(self, why, grant):
        """Warn once, naming the grant, and fall back to what still serialises runs."""
        if self.keeps_session(self.conn):
            log.warning('Warning: %s: holding a session advisory lock instead, which the '
                        'admin page cannot cancel; %s once to have the lease', why, grant)
            return SESSION_LEASE
        log.warning('Warning: %s, and through a transaction pooler no session lock holds: '
                    'each migration still runs only once, but a second run does not wait '
                    'for this one; %s once to have the lease', why, grant)
        return NO_LEASE

    def running(self, version, name, pid, step=None, steps=None):
        """Record which migration runs now, on which backend, for the page of any process.

        The heartbeat publishes it within a second; it is woken at once only
        when it has been quiet a while, so that a run of many quick
        migrations does not pay a write per step.
        """
        self.current = '%s %s' % (version, name) if version else None
        self.current_pid = pid
        self.current_started = datetime.datetime.now(datetime.timezone.utc)
        self.current_step, self.steps = step, steps
        self.output = []
        if time.monotonic() - self._last_beat > HEARTBEAT_SECONDS / 2:
            self._wake.set()

    def check_cancelled(self):
        """Ask the database whether a page asked to cancel (the beat may not have seen it yet)."""
        if self.kind == TABLE_LEASE and not self.cancelled and not self.conn.closed:
            try:
                with self.conn.cursor() as cursor:
                    cursor.execute('SELECT cancel_requested IS NOT NULL FROM dbmigrator_lock'
                                   ' WHERE holder = %s', (self.id,))
                    row = cursor.fetchone()
                self.conn.rollback()
                self.cancelled = bool(row and row[0])
            except psycopg2.Error:
                pass
        return self.cancelled

    def _beat(self, cursor):
        """Renew the lease and publish progress; act on a cancel asked for from a page."""
        self._last_beat = time.monotonic()
        cursor.execute(
            "SET LOCAL statement_timeout = '5s';"
            " UPDATE dbmigrator_lock SET expires = now() + %s * interval '1 second',"
            ' current = %s, current_pid = %s, current_started = %s, current_step = %s,'
            ' steps = %s, output = %s WHERE holder = %s RETURNING cancel_requested IS NOT NULL',
            (LEASE_SECONDS, self.current, self.current_pid, self.current_started,
             self.current_step, self.steps,
             '\n'.join(self.output)[-OUTPUT_CHARS:] or None, self.id))
        row = cursor.fetchone()
        if row is None:
            log.warning('Warning: the migration lock was taken over by another run; '
                        'each migration still runs only once')
        elif row[0]:
            self.cancelled = True
            if self.current and not self.conn.closed:
                self.conn.cancel()

    def _heartbeat(self):
        conn = None
        while not self._stop.is_set():
            self._wake.wait(HEARTBEAT_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                if conn is None:
                    conn = self._connect()
                    conn.autocommit = True
                with conn.cursor() as cursor:
                    self._beat(cursor)
                self._renewed = time.monotonic()
            except Exception as exc:  # the lease is a courtesy; claim() keeps it correct
                log.debug('cannot renew the migration lock: %s', exc)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _watch_renewals(self):
        """Stop the run when its heartbeat is stuck (a stalled network, a starved pool):
        from a thread of its own, because a stuck beat never returns to look."""
        while not self._stop.wait(HEARTBEAT_SECONDS):
            late = time.monotonic() - self._renewed
            if late > RENEW_DEADLINE_SECONDS:
                interrupts.stop('the migration lock could not be renewed for %ds (the database '
                                'did not answer the heartbeat), so the run stopped before its '
                                'lease could expire' % late)
                return

    def release(self):
        """Give the lease back; a broken connection leaves it to expire."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=HEARTBEAT_SECONDS * 5)
            self._deadline.join()
            self._thread = None
        if self.conn.closed:
            return
        try:
            self.conn.rollback()
            self.conn.autocommit = True
            with self.conn.cursor() as cursor:
                if self.kind == TABLE_LEASE:
                    # Never wait on the row: left behind, it expires.
                    cursor.execute("SET LOCAL lock_timeout = '2s';"
                                   ' DELETE FROM dbmigrator_lock WHERE holder = %s', (self.id,))
                elif self.kind == SESSION_LEASE:
                    cursor.execute('SELECT pg_advisory_unlock(%s)', (lease_key(),))
            self.conn.autocommit = False
        except psycopg2.Error:
            pass


def _current_user(cursor):
    cursor.execute('SELECT quote_ident(current_user)')
    return cursor.fetchone()[0]


def _current_schema(cursor):
    cursor.execute("SELECT COALESCE(quote_ident(current_schema()), 'public')")
    return cursor.fetchone()[0]


def request_cancel(cursor, run_id):
    """Ask the run ``run_id`` to stop: its heartbeat cancels the running statement.

    The statement is also cancelled at once with ``pg_cancel_backend`` when
    its backend is known.  Returns False when no such run holds the lock.
    """
    cursor.execute('UPDATE dbmigrator_lock SET cancel_requested = now() WHERE run_id = %s'
                   ' AND expires >= now() RETURNING current_pid', (run_id,))
    row = cursor.fetchone()
    if row is None:
        return False
    if row[0]:
        # Behind a pooler the pid could serve another client between
        # migrations: only a backend that runs dbmigrator's statement is hit.
        cursor.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                       " WHERE pid = %s AND application_name = 'dbmigrator'", (row[0],))
    return True


@dataclasses.dataclass(frozen=True)
class Claim:
    """A migration's transaction once it holds the lock (or tried to take it).

    ``state`` is the version's row as it reads after the lock: 'absent',
    'deferred' or 'applied'.  ``txid`` names the transaction, so that after
    an error its fate can be asked (:func:`dbmigrator.database.committed`).
    """

    state: str
    txid: int
    locked: bool = True


_READ = ('SELECT (SELECT applied IS NOT NULL FROM schema_migrations WHERE version = %s'
         ' ORDER BY applied DESC NULLS LAST LIMIT 1), txid_current()')


def xact_lock(wait=True):
    """The transaction lock as an SQL call, to be sent with other work: ``(sql, params)``.

    ``wait=False`` only tries it, and notes in the transaction's
    ``dbmigrator.locked`` setting whether it was free.
    """
    if wait:
        return 'pg_advisory_xact_lock(%s)', [claim_key()]
    return ("set_config('dbmigrator.locked', pg_try_advisory_xact_lock(%s)::text, true)",
            [claim_key()])


def claim(cursor, version, locked=False, tried=False):
    """In a migration's transaction: serialise with any other run, then re-read its row.

    ``locked`` says the caller already sent :func:`xact_lock`, ``tried``
    that it sent ``xact_lock(wait=False)``; the :class:`Claim` then says
    whether the lock was taken.  The row is read by a statement of its own,
    after the lock is held, so that its snapshot includes what the other
    run committed.
    """
    if not (locked or tried):
        cursor.execute('SELECT ' + xact_lock()[0], xact_lock()[1])
    cursor.execute(_READ + (", current_setting('dbmigrator.locked')::boolean" if tried else ''),
                   (version,))
    row = cursor.fetchone()
    state = 'absent' if row[0] is None else 'applied' if row[0] else 'deferred'
    return Claim(state, row[1], row[2] if tried else True)

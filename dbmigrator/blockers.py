"""Who blocks a migration that waits for a lock, and whom a migration blocks,
seen from a second connection.

When ``lock_timeout`` expires the waiting statement is gone, and with it the
answer.  So while a migration runs, a thread samples ``pg_blocking_pids``
of its backend every fraction of a second and keeps the last blocker seen:
its pid, application_name, user and how long its transaction has been open,
and whether what it holds is the migration lock (another run's claim).
Never its query text, which may hold data.

The other way round, the guard (``--max-blocking``): sessions that wait for
a lock the migration holds, and since when; past the limit the migration's
statement is cancelled, so that a rewrite or a long scan under a strong
lock cannot stall production for longer than that.
"""
import contextlib
import dataclasses
import logging
import threading
import time

from . import lock

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 0.2
# A step younger than this is not sampled: a run of quick migrations then
# sends the server no query at all, and a lock wait still gets its first
# sample within SAMPLE_SECONDS + QUIET_SECONDS.
QUIET_SECONDS = 0.05

QUERY = '''
SELECT b.pid, b.application_name, b.usename,
       extract(epoch FROM now() - coalesce(b.xact_start, b.backend_start)),
       (SELECT CASE WHEN c.oid IS NOT NULL THEN format('%%I.%%I', n.nspname, c.relname)
                    WHEN w.locktype = 'advisory' AND w.objsubid = 1
                     AND w.classid::bigint = %(high)s AND w.objid::bigint = %(low)s THEN ''
               END
          FROM pg_locks w LEFT JOIN pg_class c ON c.oid = w.relation
          LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE w.pid = %(pid)s AND NOT w.granted LIMIT 1)
  FROM unnest(pg_blocking_pids(%(pid)s)) AS blocking(pid)
  JOIN pg_stat_activity b ON b.pid = blocking.pid
 ORDER BY b.xact_start NULLS LAST
 LIMIT 1
'''


# Sessions that wait for a lock the watched backend holds on a table; the
# longest wait first.  pg_locks.waitstart (PostgreSQL 14+) says since when.
WAITERS = '''
SELECT count(*), max(extract(epoch FROM now() - %(since)s)),
       (array_agg(format('%%%%I.%%%%I', n.nspname, c.relname) ORDER BY %(since)s))[1],
       (array_agg(held.mode ORDER BY %(since)s))[1]
  FROM pg_locks w
  JOIN pg_stat_activity a ON a.pid = w.pid
  JOIN pg_class c ON c.oid = w.relation
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN LATERAL (SELECT h.mode FROM pg_locks h
                 WHERE h.pid = %%(pid)s AND h.granted AND h.locktype = 'relation'
                   AND h.relation = w.relation AND h.database = w.database
                 ORDER BY array_position(ARRAY['AccessExclusiveLock', 'ExclusiveLock',
                   'ShareRowExclusiveLock', 'ShareLock', 'ShareUpdateExclusiveLock',
                   'RowExclusiveLock', 'RowShareLock', 'AccessShareLock'], h.mode::text)
                 LIMIT 1) held ON true
 WHERE w.locktype = 'relation' AND NOT w.granted AND w.pid <> %%(pid)s
   AND %%(pid)s = ANY (pg_blocking_pids(w.pid))
'''

# What a held lock mode stops, and the lint rule that finds what takes it.
BLOCKS = {'AccessExclusiveLock': 'reads and writes', 'ExclusiveLock': 'writes',
          'ShareRowExclusiveLock': 'writes', 'ShareLock': 'writes'}
RULES = {'AccessExclusiveLock': 'table-rewrite or held-exclusive-lock',
         'ExclusiveLock': 'held-exclusive-lock', 'ShareRowExclusiveLock': 'validating-constraint',
         'ShareLock': 'blocking-index'}


@dataclasses.dataclass
class Blocking:
    """What the guard saw when it cancelled a migration that blocked others."""

    sessions: int
    longest: float
    relation: str
    mode: str
    limit: float

    def __str__(self):
        return ('it blocked %d session%s on %s for %.1fs (the longest wait; --max-blocking is '
                '%gs) with its %s, which blocks %s; lint flags this as %s: run dbmigrator lint '
                'and follow its advice. It was not retried: it would block again' % (
                    self.sessions, '' if self.sessions == 1 else 's', self.relation,
                    self.longest, self.limit, self.mode, BLOCKS.get(self.mode, 'others'),
                    RULES.get(self.mode, 'held-exclusive-lock')))


HELD = '''
SELECT format('%%I.%%I', n.nspname, c.relname), l.mode
  FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE l.pid = %(pid)s AND l.granted AND l.locktype = 'relation' AND c.relkind IN ('r', 'p', 'm')
   AND l.mode IN ('AccessExclusiveLock', 'ExclusiveLock', 'ShareRowExclusiveLock', 'ShareLock')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
 ORDER BY 1
'''


@dataclasses.dataclass
class Holding:
    """A running migration's strong table locks, and the sessions waiting on them."""

    locks: list
    waiting: int = 0
    longest: float = 0.0

    def __str__(self):
        if not self.locks:
            return ''
        held = ', '.join('%s on %s' % (mode, relation) for relation, mode in self.locks)
        if not self.waiting:
            return 'Holds %s; no session waits on it.' % held
        return 'Holds %s; %d session%s waiting on it, the longest for %s.' % (
            held, self.waiting, '' if self.waiting == 1 else 's', duration_text(self.longest))


def holding(cursor, pid, server_version):
    """What ``pid`` holds and who waits for it, read by a page (catalog reads only)."""
    cursor.execute(HELD, {'pid': pid})
    locks = [tuple(row) for row in cursor.fetchall()]
    if not locks:
        return Holding([])
    since = 'w.waitstart' if server_version >= 140000 else 'a.query_start'
    cursor.execute(WAITERS % {'since': since}, {'pid': pid})
    sessions, longest, _, _ = cursor.fetchone()
    return Holding(locks, sessions or 0, longest or 0.0)


def duration_text(seconds):
    """5m12s, 8s, 1h02m: how long a transaction has been open."""
    seconds = int(seconds)
    if seconds < 60:
        return '%ds' % seconds
    if seconds < 3600:
        return '%dm%02ds' % divmod(seconds, 60)
    hours, rest = divmod(seconds, 3600)
    return '%dh%02dm' % (hours, rest // 60)


@dataclasses.dataclass
class Blocker:
    pid: int
    application: str
    user: str
    open_seconds: float
    relation: str = None

    def __str__(self):
        # '' is the migration lock, taken by another run's claim
        what = ('the migration lock' if self.relation == '' else
                'a lock on %s' % self.relation if self.relation else 'a lock')
        return '%s held by pid %s (application "%s", user %s, transaction open for %s)' % (
            what, self.pid, self.application or '', self.user, duration_text(self.open_seconds))


class Watch:
    """Samples the blockers of the backend being watched, from one thread per run.

    The thread wakes every ``SAMPLE_SECONDS`` and looks at what is watched
    then, once it has been watched for ``QUIET_SECONDS``: entering and
    leaving :meth:`watching` only sets attributes, so a run of many quick
    migrations neither wakes it twice per step nor has it query.
    """

    def __init__(self, connect, max_blocking=0):
        self.last = None
        self.now = None
        self.blocked = None
        self.max_blocking = max_blocking
        self._watched = None
        self._watches = 0
        self._connect = connect
        self._key = lock.claim_key()  # read here: the sampling thread has no context
        self._stop = threading.Event()
        self._thread = None

    @contextlib.contextmanager
    def watching(self, pid, guard=False):
        """Watch ``pid`` for the duration of the block; ``last`` holds the last
        blocker seen, ``now`` the one of the latest sample (None: not waiting).

        With ``guard`` (a migration's own code runs), a statement that has
        kept another session waiting longer than ``max_blocking`` is
        cancelled, and ``blocked`` says what it blocked.
        """
        self._watches += 1
        self.last = self.now = None
        self._watched = (self._watches, pid, time.monotonic(),
                                          guard and self.max_blocking > 0)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name='dbmigrator-blockers',
                                            daemon=True)
            self._thread.start()
        try:
            yield self
        finally:
            self._watched = self.now = None

    def _guard(self, cursor, conn, watched):
        """Cancel the watched statement once it has blocked someone too long."""
        since = 'w.waitstart' if conn.server_version >= 140000 else 'a.query_start'
        cursor.execute(WAITERS % {'since': since}, {'pid': watched[1]})
        sessions, longest, relation, mode = cursor.fetchone()
        if sessions and longest > self.max_blocking and self._watched is watched:
            self.blocked = Blocking(sessions, longest, relation, mode, self.max_blocking)
            cursor.execute('SELECT pg_cancel_backend(%s)', (watched[1],))

    def close(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _run(self):
        conn = None
        try:
            while not self._stop.wait(SAMPLE_SECONDS):
                watched = self._watched
                if watched is None or time.monotonic() - watched[2] < QUIET_SECONDS:
                    continue
                if conn is None:
                    conn = self._connect()
                    conn.autocommit = True
                with conn.cursor() as cursor:
                    key = self._key
                    cursor.execute(QUERY, {'pid': watched[1], 'high': (key >> 32) & 0xffffffff,
                                           'low': key & 0xffffffff})
                    row = cursor.fetchone()
                    # A sample that outlived its block says nothing of the next one.
                    if self._watched is watched:
                        self.now = Blocker(*row) if row else None
                        self.last = self.now or self.last
                    if watched[3]:
                        self._guard(cursor, conn, watched)
        except Exception as exc:  # a reporting aid must never break the run
            log.debug('cannot watch for lock blockers: %s', exc)
        finally:
            if conn is not None:
                conn.close()

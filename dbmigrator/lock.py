"""One dbmigrator run at a time per database: a session-level advisory lock.

The lock is polled with ``pg_try_advisory_lock`` in autocommit mode, so a
waiting runner holds no open transaction: a waiter blocked inside
``pg_advisory_lock`` would deadlock with a ``CREATE INDEX CONCURRENTLY`` in
the running one.  PostgreSQL releases the lock when the session ends, also
when the process is killed.
"""
import hashlib
import logging
import time

import psycopg2

from .errors import Interrupted, LockTimeout

log = logging.getLogger(__name__)

KEY = int.from_bytes(hashlib.sha256(b'dbmigrator:schema_migrations').digest()[:8],
                     'big', signed=True)
POLL_SECONDS = 0.2


def _holder(cursor):
    unsigned = KEY & 0xFFFFFFFFFFFFFFFF
    cursor.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1",
        (unsigned >> 32, unsigned & 0xFFFFFFFF))
    row = cursor.fetchone()
    return row[0] if row else None


def acquire(conn, wait=None):
    """Take the lock, waiting at most ``wait`` seconds (None: forever, 0: not at all)."""
    conn.autocommit = True
    started = time.monotonic()
    announced = False
    try:
        with conn.cursor() as cursor:
            while True:
                cursor.execute('SELECT pg_try_advisory_lock(%s)', (KEY,))
                if cursor.fetchone()[0]:
                    break
                holder = _holder(cursor)
                who = 'another dbmigrator run (backend pid %s)' % holder if holder else (
                    'another dbmigrator run')
                if wait is not None and time.monotonic() - started >= wait:
                    raise LockTimeout('%s holds the migration lock; gave up after %gs: '
                                      'retry later or raise --lock-wait' % (who, wait))
                if not announced and holder:
                    log.info('Waiting for %s to finish...', who)
                    announced = True
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        raise Interrupted('interrupted while waiting for the migration lock; nothing was changed')
    finally:
        conn.autocommit = False


def release(conn):
    """Give the lock back; a broken connection has already lost it with its session."""
    if conn.closed:
        return
    try:
        conn.rollback()
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute('SELECT pg_advisory_unlock(%s)', (KEY,))
        conn.autocommit = False
    except psycopg2.Error:
        pass

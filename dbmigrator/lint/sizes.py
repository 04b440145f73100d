"""The target's own sizes, from read-only catalog queries.

Rows come from ``reltuples``; a table never analyzed (``-1``, or no pages
counted yet) gets an estimate from its size and the width of its columns.
``pg_total_relation_size`` takes the lock a reader takes, so the query runs
read-only with a short ``lock_timeout``; should a table be locked, the sizes
come from the page counts in ``pg_class`` instead.
"""
import dataclasses

import psycopg2

_QUERY = '''
SELECT format('%%I.%%I', n.nspname, c.relname), c.reltuples, c.relpages,
       %s,
       28 + (SELECT COALESCE(sum(CASE WHEN a.attlen > 0 THEN a.attlen ELSE 32 END), 0)
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                AND NOT a.attisdropped)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'm')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%%'
'''
_LOCKED = 'pg_total_relation_size(c.oid), pg_relation_size(c.oid)'
_PAGES = ("(c.relpages + COALESCE((SELECT sum(i.relpages) FROM pg_index x JOIN pg_class i"
          " ON i.oid = x.indexrelid WHERE x.indrelid = c.oid), 0))"
          " * current_setting('block_size')::bigint,"
          " c.relpages * current_setting('block_size')::bigint")


@dataclasses.dataclass(frozen=True)
class Size:
    rows: int
    bytes: int


def read(conn):
    """``{'schema.table': Size}`` of the target; never writes, never waits long."""
    try:
        return _read(conn, _LOCKED)
    except psycopg2.errors.LockNotAvailable:
        return _read(conn, _PAGES)


def _read(conn, sizes):
    try:
        with conn.cursor() as cursor:
            cursor.execute('SET TRANSACTION READ ONLY')
            cursor.execute("SET LOCAL lock_timeout = '2s'")
            cursor.execute(_QUERY % sizes)
            rows = cursor.fetchall()
    finally:
        conn.rollback()
    found = {}
    for name, tuples, pages, total, heap, width in rows:
        if tuples < 0 or (tuples == 0 and pages == 0 and heap > 0):
            tuples = heap * 0.9 / width
        found[name] = Size(int(tuples), int(total))
    return found

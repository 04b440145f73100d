"""The ``schema_migrations`` table.

Compatible with the original tool's ``(version TEXT, applied TIMESTAMPTZ)``
table, where NULL ``applied`` means deferred and a version could appear more
than once.  A ``checksum`` column is added in place when a command that
writes runs; tables without it keep working.
"""
import dataclasses
import datetime
import logging

import psycopg2

log = logging.getLogger(__name__)

TABLE = 'schema_migrations'


@dataclasses.dataclass
class Record:
    version: str
    applied: datetime.datetime = None
    checksum: str = None

    @property
    def is_deferred(self):
        return self.applied is None


def table_exists(cursor):
    cursor.execute('SELECT to_regclass(%s) IS NOT NULL', (TABLE,))
    return cursor.fetchone()[0]


def has_checksum_column(cursor):
    cursor.execute(
        'SELECT EXISTS (SELECT 1 FROM pg_attribute'
        ' WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped)',
        (TABLE, 'checksum'))
    return cursor.fetchone()[0]


def database_is_empty(cursor):
    """True when no table, view or sequence exists outside the system schemas."""
    cursor.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'"
        " AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))")
    return cursor.fetchone()[0]


def create(cursor):
    cursor.execute(
        'CREATE TABLE IF NOT EXISTS schema_migrations ('
        ' version TEXT NOT NULL,'
        ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,'
        ' checksum TEXT)')


def upgrade(conn):
    """Add the checksum column to a table made by the original tool.

    Runs in its own transaction; a role that may not alter the table keeps
    working, without checksums.
    """
    with conn.cursor() as cursor:
        if has_checksum_column(cursor):
            conn.rollback()
            return True
        try:
            cursor.execute('ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum TEXT')
        except psycopg2.errors.InsufficientPrivilege:
            conn.rollback()
            log.warning('cannot add the checksum column to schema_migrations '
                        '(not its owner): edited migrations will not be detected')
            return False
    conn.commit()
    return True


def read(cursor):
    """version -> Record, folding the duplicate rows older versions wrote."""
    checksum = 'checksum' if has_checksum_column(cursor) else 'NULL'
    cursor.execute('SELECT version, applied, %s FROM schema_migrations' % checksum)
    records = {}
    for version, applied, digest in cursor.fetchall():
        record = records.setdefault(version, Record(version))
        if applied is not None and (record.applied is None or applied > record.applied):
            record.applied = applied
        record.checksum = digest or record.checksum
    return records


def _write(cursor, version, applied_sql, checksum):
    """Update the version's rows, or add one; checksum None leaves that column alone."""
    if checksum is not None:
        cursor.execute(
            'UPDATE schema_migrations SET applied = %s, checksum = %%s WHERE version = %%s'
            % applied_sql, (checksum, version))
    else:
        cursor.execute('UPDATE schema_migrations SET applied = %s WHERE version = %%s'
                       % applied_sql, (version,))
    if cursor.rowcount:
        return
    if checksum is not None:
        cursor.execute('INSERT INTO schema_migrations (version, applied, checksum)'
                       ' VALUES (%%s, %s, %%s)' % applied_sql, (version, checksum))
    else:
        cursor.execute('INSERT INTO schema_migrations (version, applied) VALUES (%%s, %s)'
                       % applied_sql, (version,))


def record_applied(cursor, version, checksum=None):
    _write(cursor, version, 'CURRENT_TIMESTAMP', checksum)


def record_deferred(cursor, version, checksum=None):
    _write(cursor, version, 'NULL', checksum)


def remove(cursor, version):
    cursor.execute('DELETE FROM schema_migrations WHERE version = %s', (version,))

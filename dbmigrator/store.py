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

from .errors import DatabaseReadOnly, SettingsError

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


class Records(dict):
    """version -> Record, plus the rows whose version is not a migration version."""

    def __init__(self):
        super().__init__()
        self.invalid = []

    def require_valid(self):
        """Writing commands refuse to guess around rows they cannot read."""
        if self.invalid:
            raise SettingsError(
                'schema_migrations has a row whose version is %s: versions are digits; '
                'delete or fix that row (e.g. DELETE FROM schema_migrations WHERE version %s)'
                % (describe_invalid(self.invalid[0]),
                   'IS NULL' if self.invalid[0] is None else "= '%s'" % self.invalid[0]))


def describe_invalid(version):
    return 'NULL' if version is None else repr(version)


def table_exists(cursor):
    """True when schema_migrations exists; an error when it is not a table."""
    cursor.execute('SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)', (TABLE,))
    row = cursor.fetchone()
    if row is None:
        return False
    if row[0] not in ('r', 'p'):
        kind = {'v': 'view', 'm': 'materialized view', 'f': 'foreign table',
                'S': 'sequence'}.get(row[0], 'relation')
        raise SettingsError('schema_migrations is a %s, not a table: dbmigrator keeps its records '
                            'in a table of that name; rename or drop the %s' % (kind, kind))
    return True


def require_writable(cursor):
    """Refuse early, in words, on a read-only database or a standby."""
    cursor.execute("SELECT current_setting('transaction_read_only') = 'on', pg_is_in_recovery()")
    read_only, standby = cursor.fetchone()
    if standby:
        raise DatabaseReadOnly('the database is a read-only standby (in recovery): '
                               'point db-connection-string at the primary')
    if read_only:
        raise DatabaseReadOnly('the database is read-only (default_transaction_read_only is on): '
                               'turn it off for this role or database, or use the primary')


def has_checksum_column(cursor):
    cursor.execute(
        'SELECT EXISTS (SELECT 1 FROM pg_attribute'
        ' WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped)',
        (TABLE, 'checksum'))
    return cursor.fetchone()[0]


def database_is_empty(cursor):
    """True when no table, view or sequence exists outside the system schemas.

    dbmigrator's own tables (``dbmigrator_lock``, ``dbmigrator_history``) do not count.
    """
    cursor.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'"
        " AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
        " AND c.relname NOT LIKE 'dbmigrator\\_%%')")
    return cursor.fetchone()[0]


def create(cursor):
    cursor.execute(
        'CREATE TABLE IF NOT EXISTS schema_migrations ('
        ' version TEXT NOT NULL,'
        ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,'
        ' checksum TEXT)')
    cursor.execute('CREATE INDEX IF NOT EXISTS schema_migrations_version_idx'
                   ' ON schema_migrations (version)')


def has_version_index(cursor):
    cursor.execute(
        'SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a'
        ' ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]'
        ' WHERE i.indrelid = to_regclass(%s) AND a.attname = %s)', (TABLE, 'version'))
    return cursor.fetchone()[0]


def upgrade(conn):
    """Add the checksum column and an index on version to a table made by 1.x.

    The index keeps each step's bookkeeping independent of the table's size;
    it does not change what 1.x reads or writes.  Runs in its own
    transaction; a role that may not alter the table keeps working, without
    checksums.
    """
    with conn.cursor() as cursor:
        checksum, index = has_checksum_column(cursor), has_version_index(cursor)
        if checksum and index:
            conn.rollback()
            return True
        try:
            if not checksum:
                cursor.execute('ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum TEXT')
            if not index:
                cursor.execute('CREATE INDEX IF NOT EXISTS schema_migrations_version_idx'
                               ' ON schema_migrations (version)')
        except psycopg2.errors.InsufficientPrivilege:
            conn.rollback()
            if not checksum:
                log.warning('cannot add the checksum column to schema_migrations '
                            '(not its owner): edited migrations will not be detected')
            return checksum
    conn.commit()
    return True


def read(cursor):
    """The records, folding the duplicate rows older versions wrote."""
    checksum = 'checksum' if has_checksum_column(cursor) else 'NULL'
    cursor.execute('SELECT version, applied, %s FROM schema_migrations' % checksum)
    records = Records()
    for version, applied, digest in cursor.fetchall():
        if version is None or not version.isdigit():
            records.invalid.append(version)
            continue
        record = records.setdefault(version, Record(version))
        if applied is not None and (record.applied is None or applied > record.applied):
            record.applied = applied
        record.checksum = digest or record.checksum
    return records


def _write(cursor, version, applied_sql, checksum, exists):
    """Update the version's rows, or add one; checksum None leaves that column alone.

    ``exists`` comes from the plan, which read the table under the lock:
    True updates, False inserts, None (unknown) tries the update first.
    """
    if exists is not False:
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


def record_applied(cursor, version, checksum=None, exists=None):
    _write(cursor, version, 'CURRENT_TIMESTAMP', checksum, exists)


def record_deferred(cursor, version, checksum=None, exists=None):
    _write(cursor, version, 'NULL', checksum, exists)


def remove(cursor, version):
    cursor.execute('DELETE FROM schema_migrations WHERE version = %s', (version,))

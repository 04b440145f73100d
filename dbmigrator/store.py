"""The ``schema_migrations`` table.

Compatible with the original tool's ``(version TEXT, applied TIMESTAMPTZ)``
table, where NULL ``applied`` means deferred and a version could appear more
than once.  That table stays exactly as 1.x made it, so that 1.x (which
reads ``SELECT *`` into pairs) can still use the database: the checksums
live in ``dbmigrator_checksums`` beside it, each valid only for the
``applied`` time it was stored with, so a step 1.x re-applies is not taken
for an edit.  A ``checksum`` column earlier dbmigrator releases added is
moved there, values and all.
"""
import dataclasses
import datetime
import logging

import psycopg2

from .errors import DatabaseReadOnly, SettingsError
from .versions import is_version

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
                   'IS NULL' if self.invalid[0] is None else "= '%s'" % str(
                       self.invalid[0]).replace("'", "''")[:80]))


def describe_invalid(version):
    return 'NULL' if version is None else repr(version)[:80]


def table_exists(cursor):
    """True when schema_migrations exists; an error when it is not a table."""
    cursor.execute('SELECT (SELECT relkind FROM pg_class WHERE oid = to_regclass(%s))'
                   + _SESSION, (TABLE,))
    row = cursor.fetchone()
    _check_session(*row[1:])
    if row[0] is None:
        return False
    if row[0] not in ('r', 'p'):
        kind = {'v': 'view', 'm': 'materialized view', 'f': 'foreign table',
                'S': 'sequence'}.get(row[0], 'relation')
        raise SettingsError('schema_migrations is a %s, not a table: dbmigrator keeps its records '
                            'in a table of that name; rename or drop the %s' % (kind, kind))
    return True


_SHAPE = '''
SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory,
       a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum'''


def check_shape(cursor):
    """Refuse, before anything runs, a schema_migrations that dbmigrator cannot keep.

    1.x made ``(version TEXT, applied TIMESTAMPTZ)``; a numeric version
    column is read as text, and extra columns are left alone unless a new
    row could not be written without them.
    """
    cursor.execute(_SHAPE, (TABLE,))
    columns = {name: (kind, category, required) for name, kind, category, required
               in cursor.fetchall()}
    for name, categories, wanted in (('version', 'SN', 'text or an integer type'),
                                     ('applied', 'D', 'timestamptz')):
        if name not in columns:
            raise SettingsError('schema_migrations has no %s column, so it is not the table '
                                'dbmigrator and db-migrator 1.x keep: rename it, or add the '
                                'column (%s)' % (name, wanted))
        if columns[name][1] not in categories:
            raise SettingsError('schema_migrations.%s is %s; dbmigrator needs %s: change the '
                                'column\'s type' % (name, columns[name][0], wanted))
    required = [n for n, (_, _, needed) in columns.items()
                if needed and n not in ('version', 'applied')]
    if required:
        raise SettingsError('schema_migrations has NOT NULL column%s %s with no default, which '
                            'dbmigrator does not fill: give %s a default or drop %s' % (
                                's' if len(required) > 1 else '', ', '.join(required),
                                'them' if len(required) > 1 else 'it',
                                'them' if len(required) > 1 else 'it'))


# Below this, a role's or database's statement_timeout cancels dbmigrator's own
# bookkeeping (the lease, the history) at random.
MIN_STATEMENT_TIMEOUT_MS = 1000

_SESSION = (", current_schema() IS NULL, current_setting('search_path'),"
            " (SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'),"
            " quote_ident(current_user)")


def _check_session(no_schema, search_path, statement_timeout, user):
    if no_schema:
        raise SettingsError(
            "the connection's search_path (%s) names no schema that exists, so dbmigrator's "
            "tables have nowhere to go: set one for the role (ALTER ROLE %s SET search_path = "
            "public) or in the connection string (options=-csearch_path=public)" % (
                search_path or "''", user))
    if 0 < statement_timeout < MIN_STATEMENT_TIMEOUT_MS:
        raise SettingsError(
            'statement_timeout is %dms for this role or database, too short for dbmigrator\'s '
            "own statements: raise it (ALTER ROLE %s SET statement_timeout = '1min') or set it "
            "to 0; --statement-timeout sets the migrations' own" % (statement_timeout, user))


def require_writable(cursor):
    """Refuse early, in words, on a read-only database or a standby, and on a
    session whose settings would break dbmigrator's own statements."""
    cursor.execute("SELECT current_setting('transaction_read_only') = 'on', pg_is_in_recovery()"
                   + _SESSION)
    read_only, standby, *session = cursor.fetchone()
    _check_session(*session)
    if standby:
        raise DatabaseReadOnly('the database is a read-only standby (in recovery): '
                               'point db-connection-string at the primary')
    if read_only:
        raise DatabaseReadOnly('the database is read-only (default_transaction_read_only is on): '
                               'turn it off for this role or database, or use the primary')


CHECKSUMS = 'dbmigrator_checksums'


def _has_column(cursor, table, column):
    cursor.execute(
        'SELECT EXISTS (SELECT 1 FROM pg_attribute'
        ' WHERE attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped)',
        (table, column))
    return cursor.fetchone()[0]


def has_checksum_column(cursor):
    """The column earlier dbmigrator releases added to schema_migrations."""
    return _has_column(cursor, TABLE, 'checksum')


def has_checksums_table(cursor):
    cursor.execute('SELECT to_regclass(%s) IS NOT NULL', (CHECKSUMS,))
    return cursor.fetchone()[0]


def _create_checksums(cursor):
    cursor.execute('CREATE TABLE IF NOT EXISTS dbmigrator_checksums ('
                   ' version TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied TIMESTAMPTZ)')


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
        ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
    cursor.execute('CREATE INDEX IF NOT EXISTS schema_migrations_version_idx'
                   ' ON schema_migrations (version)')
    _create_checksums(cursor)


def has_version_index(cursor):
    cursor.execute(
        'SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a'
        ' ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]'
        ' WHERE i.indrelid = to_regclass(%s) AND a.attname = %s)', (TABLE, 'version'))
    return cursor.fetchone()[0]


def upgrade(conn):
    """Give a table made by 1.x an index on version, and its checksums a table.

    The index keeps each step's bookkeeping independent of the table's size;
    it does not change what 1.x reads or writes.  A ``checksum`` column of an
    earlier release moves out, so that 1.x can read the table again.  Runs in
    its own transaction; a role that may not do this keeps working, without
    checksums (False).
    """
    with conn.cursor() as cursor:
        column, table = has_checksum_column(cursor), has_checksums_table(cursor)
        index = has_version_index(cursor)
        if table and index and not column:
            conn.rollback()
            return True
        try:
            if not index:
                cursor.execute('CREATE INDEX IF NOT EXISTS schema_migrations_version_idx'
                               ' ON schema_migrations (version)')
            _create_checksums(cursor)
            if column:
                cursor.execute(
                    'INSERT INTO dbmigrator_checksums (version, checksum, applied)'
                    ' SELECT DISTINCT ON (version) version, checksum, applied'
                    ' FROM schema_migrations WHERE checksum IS NOT NULL'
                    ' ORDER BY version, applied DESC NULLS LAST'
                    ' ON CONFLICT (version) DO NOTHING')
                cursor.execute('ALTER TABLE schema_migrations DROP COLUMN checksum')
        except psycopg2.errors.InsufficientPrivilege:
            conn.rollback()
            log.warning('Warning: cannot create dbmigrator_checksums (no CREATE privilege, or '
                        'not the owner of schema_migrations): edited migrations will not be '
                        'detected; GRANT CREATE ON SCHEMA to this role once to have them')
            return table and not column
    conn.commit()
    return True


def read(cursor):
    """The records, folding the duplicate rows older versions wrote."""
    sources = []
    if has_checksums_table(cursor):
        sources.append('c.checksum')
    if has_checksum_column(cursor):
        sources.append('s.checksum')
    checksum = 'COALESCE(%s)' % ', '.join(sources) if sources else 'NULL'
    join = (' LEFT JOIN dbmigrator_checksums c ON c.version = s.version::text'
            ' AND c.applied IS NOT DISTINCT FROM s.applied') if 'c.checksum' in sources else ''
    cursor.execute('SELECT s.version::text, s.applied, %s FROM schema_migrations s%s' % (
        checksum, join))
    records = Records()
    for version, applied, digest in cursor.fetchall():
        if not is_version(version):
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
        cursor.execute('UPDATE schema_migrations SET applied = %s WHERE version = %%s'
                       % applied_sql, (version,))
    if exists is False or not cursor.rowcount:
        cursor.execute('INSERT INTO schema_migrations (version, applied) VALUES (%%s, %s)'
                       % applied_sql, (version,))
    if checksum is not None:
        cursor.execute(
            'INSERT INTO dbmigrator_checksums (version, checksum, applied) VALUES (%%s, %%s, %s)'
            ' ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum,'
            ' applied = EXCLUDED.applied' % applied_sql, (version, checksum))


def accept(cursor, version, checksum):
    """An applied migration's file, edited since, is accepted as it is now: only its
    checksum changes, tied to the applied time it already has."""
    if checksum is None:
        return
    cursor.execute(
        'INSERT INTO dbmigrator_checksums (version, checksum, applied)'
        ' SELECT %s, %s, max(applied) FROM schema_migrations WHERE version = %s'
        ' ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum,'
        ' applied = EXCLUDED.applied', (version, checksum, version))


def record_applied(cursor, version, checksum=None, exists=None):
    _write(cursor, version, 'CURRENT_TIMESTAMP', checksum, exists)


def record_deferred(cursor, version, checksum=None, exists=None):
    _write(cursor, version, 'NULL', checksum, exists)


def remove(cursor, version, checksums=True):
    cursor.execute('DELETE FROM schema_migrations WHERE version = %s', (version,))
    if checksums:
        cursor.execute('DELETE FROM dbmigrator_checksums WHERE version = %s', (version,))

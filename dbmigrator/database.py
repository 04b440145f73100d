"""Connection strings and connections.

Accepts libpq URIs and key=value strings, SQLAlchemy URLs
(``postgresql+psycopg2://``) and ``embedded:PATH``.  Every password is
registered with :mod:`dbmigrator.redact` before anything can print it.
"""
import re

import psycopg2
import psycopg2.extensions

from . import embedded
from .errors import DatabaseUnavailable, SettingsError
from .guard import MigrationConnection, ended_by_batch
from .redact import passwords_in, redact_dsn, register_environment, register_secret, scrub

_SQLALCHEMY_SCHEME = re.compile(r'^(postgres(?:ql)?)\+\w+://')


def normalize(dsn):
    """Register the string's passwords and turn it into something libpq reads."""
    dsn = dsn.strip()
    register_environment()
    for password in passwords_in(dsn):
        register_secret(password)
    if embedded.is_embedded(dsn):
        return dsn
    dsn = _SQLALCHEMY_SCHEME.sub(r'\1://', dsn)
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0].replace(dsn, redact_dsn(dsn))
        raise SettingsError(
            'malformed db-connection-string %s (%s): use postgresql://user@host/dbname '
            'or "host=... dbname=..."' % (redact_dsn(dsn), scrub(reason)))
    register_secret(params.get('password'))
    return dsn


def describe(dsn):
    """Where a connection string points, for pages and messages: never the password."""
    if embedded.is_embedded(dsn):
        return 'embedded database in %s' % embedded.data_path(dsn)
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return redact_dsn(dsn)
    host = params.get('host') or 'localhost'
    port = params.get('port')
    where = '%s:%s' % (host, port) if port else host
    user = params.get('user')
    name = params.get('dbname') or user or ''
    return '%s%s/%s' % (user + '@' if user else '', where, name)


def libpq_dsn(dsn):
    """The string libpq connects with; starts the embedded server if needed."""
    if embedded.is_embedded(dsn):
        return embedded.start(dsn)
    return dsn


def connect(dsn, connect_timeout=10, user=None):
    """Open a connection, turning libpq failures into one clear line."""
    # A network black hole must not hang a run that holds locks: TCP
    # keepalives and tcp_user_timeout end a connection that stops answering.
    kwargs = {'application_name': 'dbmigrator', 'keepalives': 1, 'keepalives_idle': 10,
              'keepalives_interval': 5, 'keepalives_count': 3, 'tcp_user_timeout': 30000}
    if connect_timeout:
        kwargs['connect_timeout'] = int(connect_timeout)
    if user:
        kwargs['user'] = user
    try:
        conn = psycopg2.connect(libpq_dsn(dsn), connection_factory=MigrationConnection,
                                **kwargs)
    except psycopg2.OperationalError as exc:
        reason = ' '.join(str(exc).split())
        raise DatabaseUnavailable(
            'cannot connect to the database %s: %s' % (describe(dsn), scrub(reason)))
    return conn


def _interval(seconds):
    return '%dms' % round(float(seconds) * 1000)


#: A stuck client must not hold a migration's locks for ever; a migration's
#: own Python work between two statements gets this long.
IDLE_IN_TRANSACTION = '10min'


def timeout_settings(settings, server_version):
    """The transaction-local settings of a migration: name -> value.

    ``client_connection_check_interval`` (PostgreSQL 14+) lets the server
    notice a killed dbmigrator during a long statement; without it the
    backend would keep its locks until the statement ends.
    """
    values = {'lock_timeout': _interval(settings.lock_timeout or 0),
              'statement_timeout': _interval(settings.statement_timeout or 0),
              'idle_in_transaction_session_timeout': IDLE_IN_TRANSACTION}
    if server_version >= 140000:
        values['client_connection_check_interval'] = '1s'
    return values


def local_timeouts(settings, server_version, *calls):
    """The migration's timeouts as one SELECT that sets them LOCAL: ``(sql, params)``.

    They end with the transaction, so nothing leaks into a pooled server
    connection.  ``calls`` are more ``(sql, params)`` function calls for the
    same statement (the migration lock, say).  A run builds it once.
    """
    values = timeout_settings(settings, server_version)
    fragments = ['set_config(%s, %s, true)'] * len(values) + [sql for sql, _ in calls]
    params = [item for pair in values.items() for item in pair]
    for _, more in calls:
        params.extend(more)
    return 'SELECT ' + ', '.join(fragments), params


def inline(cursor, sql, params):
    """``sql`` with ``params`` written into it, quoted as psycopg2 quotes them.

    For a statement that stays the same for a whole run: sent prepared, it
    then costs each step no parameters to quote, send and bind.
    """
    return cursor.mogrify(sql, params).decode(
        psycopg2.extensions.encodings[cursor.connection.encoding])


def set_local_timeouts(cursor, settings):
    cursor.execute(*local_timeouts(settings, cursor.connection.server_version))


class Batch:
    """A cursor that holds statements back and sends them in one round trip.

    They go as one simple query when a result is asked for (or on
    :meth:`send`); only the last statement's rows come back.  Each
    statement still gets its own snapshot, so a read sent after a lock
    sees what committed while it waited.

    :meth:`commit` ends the transaction in the same round trip, and the
    next batch on the connection begins the next one in its own: a step
    of a run then costs no round trip of its own for BEGIN or COMMIT.
    """

    def __init__(self, cursor, prepared=None):
        self.cursor = cursor
        self.connection = cursor.connection
        self.prepared = prepared
        self.statements, self.params = [], []
        if ended_by_batch(self.connection):
            self.statements.append('BEGIN')

    def execute(self, sql, params=(), prepare=False):
        """Hold ``sql`` back; one with parameters, or with ``prepare``, through
        ``prepared`` (:class:`dbmigrator.prepared.Statements`) when the batch has one."""
        if self.prepared is not None and (params or prepare):
            self.prepared.execute(self._hold, sql, params)
        else:
            self._hold(sql, params)

    def _hold(self, sql, params=()):
        self.statements.append(sql if params else sql.replace('%', '%%'))
        self.params.extend(params)

    def send(self):
        if self.statements:
            sql, params = '; '.join(self.statements), self.params
            self.statements, self.params = [], []
            self.cursor.execute(sql, params)

    def commit(self):
        """Send what is held back and COMMIT, in one round trip."""
        self.execute('COMMIT')
        self.send()

    @property
    def rowcount(self):
        self.send()
        return self.cursor.rowcount

    def fetchone(self):
        self.send()
        return self.cursor.fetchone()

    def fetchall(self):
        self.send()
        return self.cursor.fetchall()


def through_proxy(conn):
    """True when the port we reached is not the server's own: a pooler, most likely.

    PgBouncer listens on its own port (6432 by default) in front of the
    server's; a plain connection sees the same number on both sides.
    """
    with conn.cursor() as cursor:
        cursor.execute("SELECT current_setting('port')")
        server_port = cursor.fetchone()[0]
    conn.rollback()
    return str(conn.info.port) != server_port


def keeps_session(conn, pooler):
    """True when every transaction of ``conn`` reaches the same server session.

    ``pooler`` is the setting: ``auto`` assumes a pooler when the port
    reached is not the server's (one query).
    """
    if pooler in ('none', 'session'):
        return True
    return pooler == 'auto' and not through_proxy(conn)


def committed(conn, txid):
    """Whether the transaction ``txid`` (``txid_current()``) committed.

    Asked after an error in a round trip that went on past a COMMIT: it
    tells whether the error came before the COMMIT or after it.
    """
    with conn.cursor() as cursor:
        cursor.execute('SELECT txid_status(%s)', (txid,))
        status = cursor.fetchone()[0]
    conn.rollback()
    return status == 'committed'


def dump_environment(conn, dsn):
    """libpq environment variables that let pg_dump reach the same database.

    The password goes through PGPASSWORD, never the command line where
    ``ps`` would show it.
    """
    params = conn.get_dsn_parameters()
    env = {}
    names = {'host': 'PGHOST', 'port': 'PGPORT', 'user': 'PGUSER', 'dbname': 'PGDATABASE',
             'sslmode': 'PGSSLMODE', 'sslcert': 'PGSSLCERT', 'sslkey': 'PGSSLKEY',
             'sslrootcert': 'PGSSLROOTCERT', 'options': 'PGOPTIONS'}
    for key, var in names.items():
        if params.get(key):
            env[var] = params[key]
    if not embedded.is_embedded(dsn):
        password = psycopg2.extensions.parse_dsn(dsn).get('password')
        if password:
            env['PGPASSWORD'] = password
    return env

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
    kwargs = {'application_name': 'dbmigrator'}
    if connect_timeout:
        kwargs['connect_timeout'] = int(connect_timeout)
    if user:
        kwargs['user'] = user
    # libpq only enforces connect_timeout in blocking mode, so the Ctrl-C
    # wait callback (dbmigrator.interrupts) is left out of the handshake.
    callback = psycopg2.extensions.get_wait_callback()
    psycopg2.extensions.set_wait_callback(None)
    try:
        conn = psycopg2.connect(libpq_dsn(dsn), **kwargs)
    except psycopg2.OperationalError as exc:
        reason = ' '.join(str(exc).split())
        raise DatabaseUnavailable(
            'cannot connect to the database %s: %s' % (describe(dsn), scrub(reason)))
    finally:
        psycopg2.extensions.set_wait_callback(callback)
    _watch_client(conn)
    return conn


def _watch_client(conn):
    """Have the server notice a killed dbmigrator during a long statement.

    Without this a backend whose client died keeps running the statement,
    and holding its locks and the migration lock, until the statement ends.
    """
    if conn.server_version >= 140000:
        with conn.cursor() as cursor:
            cursor.execute("SET client_connection_check_interval = '1s'")
        conn.commit()


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

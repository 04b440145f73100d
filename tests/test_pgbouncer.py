"""Behind a real PgBouncer (the Debian package, run as nobody), in both pool modes.

Concurrent runs apply each migration exactly once and all exit 0, and
nothing dbmigrator SETs leaks into the pool's server connections.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg2
import pytest

from tests.conftest import dbmigrator_command, subprocess_env

PGBOUNCER = shutil.which('pgbouncer') or '/usr/sbin/pgbouncer'
POOL_SIZE = 3
DEFAULTS = {'lock_timeout': '0', 'statement_timeout': '0',
            'client_connection_check_interval': '0', 'search_path': '"$user", public'}


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Bouncer:
    def __init__(self, server, mode):
        if not os.access(PGBOUNCER, os.X_OK):
            pytest.fail('the pooler tests run a real PgBouncer, and it is missing: apt-get '
                        'install pgbouncer (bash .ci/run does)', pytrace=False)
        info = server.get_postmaster_info()
        self.mode = mode
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix='dbmigrator-pgbouncer-')
        os.chown(self.dir, 65534, 65534)
        conf = os.path.join(self.dir, 'pgbouncer.ini')
        users = os.path.join(self.dir, 'users.txt')
        with open(users, 'w') as handle:
            handle.write('"postgres" ""\n')
        with open(conf, 'w') as handle:
            handle.write('\n'.join([
                '[databases]',
                '* = host=%s port=%s' % (info.socket_dir, info.port),
                '[pgbouncer]',
                'listen_addr = 127.0.0.1',
                'listen_port = %d' % self.port,
                'unix_socket_dir =',
                'auth_type = trust',
                'auth_file = %s' % users,
                'pool_mode = %s' % mode,
                'default_pool_size = %d' % POOL_SIZE,
                'max_client_conn = 200',
                'logfile = %s' % os.path.join(self.dir, 'pgbouncer.log'),
                'pidfile = %s' % os.path.join(self.dir, 'pgbouncer.pid'),
                '']))
        for path in (conf, users):
            os.chown(path, 65534, 65534)
        self.proc = subprocess.Popen(
            ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
             PGBOUNCER, conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError('pgbouncer did not start: %s' % self.log())
                time.sleep(0.05)

    def log(self):
        path = os.path.join(self.dir, 'pgbouncer.log')
        out = self.proc.stdout.read().decode() if self.proc.poll() is not None else ''
        return out + (open(path).read() if os.path.exists(path) else '')

    def dsn(self, dbname):
        return 'postgresql://postgres@127.0.0.1:%d/%s' % (self.port, dbname)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope='module', params=['transaction', 'session'])
def bouncer(request, server):
    pool = Bouncer(server, request.param)
    yield pool
    pool.stop()


def run_many(dsn, migrations, count, *argv):
    procs = [subprocess.Popen(
        dbmigrator_command('--db-connection-string', dsn, '--migrations-directory',
                           migrations.path, *argv),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
        for _ in range(count)]
    return [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]


def server_settings_through(bouncer, dbname):
    """Every setting of interest on every server connection of the pool.

    POOL_SIZE clients hold a transaction open at once, so each is given a
    server connection of its own: together they see the whole pool.
    """
    conns = [psycopg2.connect(bouncer.dsn(dbname)) for _ in range(POOL_SIZE)]
    try:
        seen = []
        for conn in conns:
            with conn.cursor() as cursor:
                values = {}
                for name in DEFAULTS:
                    cursor.execute('SHOW %s' % name)
                    values[name] = cursor.fetchone()[0]
                seen.append(values)
        return seen
    finally:
        for conn in conns:
            conn.rollback()
            conn.close()


def test_concurrent_runs_apply_each_migration_exactly_once(bouncer, db, migrations):
    db.query('CREATE TABLE runs (version TEXT)')
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
    for i in range(30):
        version = '202001010000%02d' % i
        migrations.add(version, 'row_%02d' % i, '''\
            def up(cursor):
                cursor.execute("INSERT INTO runs VALUES (%%s)", (%r,))
            ''' % version)
    results = run_many(bouncer.dsn(db.name), migrations, 8, 'migrate', '--no-diff')
    for code, out, err in results:
        assert code == 0, err
        assert 'Traceback' not in err
    assert sum(out.count('Running migration') for _, out, _ in results) == 30
    assert db.query('SELECT version, count(*) FROM runs GROUP BY version'
                    ' HAVING count(*) <> 1') == []
    assert db.query('SELECT count(*) FROM runs') == [(30,)]
    assert db.query('SELECT count(*), count(DISTINCT version) FROM schema_migrations') == [
        (30, 30)]
    assert any('No pending migrations.  Database is up to date.' in out
               for _, out, _ in results)
    assert db.query('SELECT count(*) FROM dbmigrator_lock') == [(0,)]
    for values in server_settings_through(bouncer, db.name):
        assert values == DEFAULTS


def test_settings_do_not_leak_with_diffs_and_timeouts(bouncer, db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.add('20200102000000', 'look', '''\
        def up(cursor):
            cursor.execute("SELECT current_setting('lock_timeout')")
            assert cursor.fetchone()[0] == '3s'
        ''')
    argv = ['--lock-timeout', '3', '--statement-timeout', '30', 'migrate']
    if bouncer.mode == 'session':
        argv = ['--pooler', 'session'] + argv
    [(code, out, err)] = run_many(bouncer.dsn(db.name), migrations, 1, *argv)
    assert code == 0, err
    if bouncer.mode == 'transaction':
        assert 'Schema diffs are off: the connection seems to go through a pooler' in err
    else:
        assert '+CREATE TABLE public.ta (' in out
    assert db.versions() == ['20200101000000', '20200102000000']
    for values in server_settings_through(bouncer, db.name):
        assert values == DEFAULTS


NON_ATOMIC = '''\
    atomic = False


    def up(cursor):
        cursor.execute('CREATE INDEX CONCURRENTLY IF NOT EXISTS t_id_idx ON t (id)')
    '''


def test_non_atomic_behind_the_pool(bouncer, db, migrations):
    db.query('CREATE TABLE t (id INT)')
    migrations.add('20200101000000', 't_id_idx', NON_ATOMIC)
    dsn = bouncer.dsn(db.name)
    [(code, out, err)] = run_many(dsn, migrations, 1, 'init', '--version=0')
    assert code == 0, err
    [(code, out, err)] = run_many(dsn, migrations, 1, 'migrate', '--no-diff')
    # auto: a port that is not the server's is taken for a transaction pooler.
    assert code == 2
    assert ('migration 20200101000000 t_id_idx is non-atomic (atomic = False) and cannot run '
            'through a transaction pooler (the connection goes through a pooler or proxy: '
            'port %d' % bouncer.port) in err
    assert db.versions() == []
    if bouncer.mode == 'session':
        [(code, out, err)] = run_many(dsn, migrations, 1, '--pooler', 'session', 'migrate',
                                      '--no-diff')
        assert code == 0, err
        assert db.versions() == ['20200101000000']
        for values in server_settings_through(bouncer, db.name):
            assert values == DEFAULTS

"""Concurrent runs, killed processes, dropped connections and Ctrl-C."""
import signal
import subprocess
import time

import psycopg2
import pytest

from dbmigrator import lock
from tests.conftest import dbmigrator_command, subprocess_env


def start(db, migrations, *argv):
    return subprocess.Popen(
        dbmigrator_command('--db-connection-string', db.dsn, '--migrations-directory',
                           migrations.path, *argv),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())


def wait_for_query(db, fragment, timeout=30):
    """Backend pid of the dbmigrator session running a statement containing fragment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = db.query("SELECT pid FROM pg_stat_activity WHERE application_name = 'dbmigrator'"
                         " AND state = 'active' AND query LIKE %s", ('%' + fragment + '%',))
        if found:
            return found[0][0]
        time.sleep(0.05)
    raise AssertionError('no dbmigrator session ran %r' % fragment)


def interrupt(proc, signum):
    """Send ``signum``; the run must end promptly with exit 130 and no traceback.
    Returns its stderr."""
    started = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 130
    assert 'Traceback' not in err
    return err


def sleeping_migration(migrations, version, name, flag):
    """Creates a table, then sleeps on the server while ``flag`` exists."""
    migrations.add(version, name, '''\
        import os


        def up(cursor):
            cursor.execute('CREATE TABLE %s (id INT)')
            if os.path.exists(%r):
                cursor.execute('SELECT pg_sleep(60)')
        ''' % (name, str(flag)))


def test_four_concurrent_runs_apply_each_migration_once(db, migrations):
    db.query('CREATE TABLE runs (version TEXT)')
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
    for i in range(20):
        version = '202001010000%02d' % i
        migrations.add(version, 'step_%02d' % i, '''\
            def up(cursor):
                cursor.execute("INSERT INTO runs VALUES (%%s)", (%r,))
                cursor.execute('SELECT pg_sleep(0.05)')
            ''' % version)
    procs = [start(db, migrations, 'migrate', '--no-diff') for _ in range(4)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    for code, out, err in results:
        assert code == 0, err
    workers = [out for code, out, err in results if 'Running migration' in out]
    assert len(workers) == 1
    assert workers[0].count('Running migration') == 20
    waiters = [(out, err) for code, out, err in results if 'Running migration' not in out]
    assert len(waiters) == 3
    for out, err in waiters:
        assert 'No pending migrations.  Database is up to date.' in out
    assert any('Waiting for another dbmigrator run (' in out for out, _ in waiters)
    assert db.query('SELECT version, count(*) FROM runs GROUP BY version HAVING count(*) <> 1') == []
    assert db.query('SELECT count(*) FROM runs') == [(20,)]
    assert db.query('SELECT count(*), count(DISTINCT version) FROM schema_migrations') == [(20, 20)]


HOLDER = 'tester@ci pid 1'


class LockHolder:
    """Another run holding the migration lock; close() ends its session."""

    def __init__(self, db):
        self.conn = psycopg2.connect(db.dsn)
        self.lease = lock.Lease(self.conn, lambda: psycopg2.connect(db.dsn), who=HOLDER)
        self.lease.acquire(0)
        self.pid = self.conn.get_backend_pid()

    def close(self):
        self.lease._stop.set()
        self.lease._wake.set()
        self.conn.close()


def hold_lock(db):
    holder = LockHolder(db)
    return holder, holder.pid


def held_by(pid):
    return 'another dbmigrator run (%s, backend pid %d, since ' % (HOLDER, pid)


def test_lock_wait_gives_up_with_exit_3(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    holder, pid = hold_lock(db)
    try:
        result = dbm('--lock-wait', '0', 'migrate')
        assert result.code == 3
        assert held_by(pid) in result.err and 'holds the migration lock' in result.err
        result = dbm('--lock-wait', '0.5', 'mark', '-t', '20200101000000')
        assert result.code == 3
        assert 'Waiting for ' + held_by(pid) in result.out
        assert dbm('list').code == 0  # list never takes the lock
    finally:
        holder.close()
    assert not db.table_exists('ta')
    assert dbm('--lock-wait', '0', 'migrate').code == 0


def start_stuck_run(db, migrations, tmp_path):
    """A migrate run whose second migration sits in pg_sleep on the server.

    Returns the process, the backend pid running the sleep, and the flag file
    whose removal lets the next run go through quickly.
    """
    flag = tmp_path / 'sleep'
    flag.touch()
    migrations.table('20200101000000', 'first', 'first_table')
    sleeping_migration(migrations, '20200102000000', 'slow_table', flag)
    proc = start(db, migrations, 'migrate', '--no-diff')
    return proc, wait_for_query(db, 'pg_sleep'), flag


def test_sigkill_during_migration_leaves_nothing_recorded(db, migrations, tmp_path):
    proc, _, flag = start_stuck_run(db, migrations, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert db.versions() == ['20200101000000']
    assert not db.table_exists('slow_table')
    flag.unlink()
    # The dead session's lock goes with it within seconds, not after pg_sleep(60).
    again = start(db, migrations, '--lock-wait', '20', 'migrate', '--no-diff')
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert out.strip().endswith('Running migration 20200102000000 slow_table')
    assert db.versions() == ['20200101000000', '20200102000000']


def test_terminated_connection_names_the_migration(db, migrations, tmp_path):
    proc, pid, flag = start_stuck_run(db, migrations, tmp_path)
    db.query('SELECT pg_terminate_backend(%s)', (pid,))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert 'Migration 20200102000000 slow_table failed' in err
    assert 'connection' in err
    assert 'Traceback' not in err
    assert db.versions() == ['20200101000000']
    assert not db.table_exists('slow_table')
    flag.unlink()
    again = start(db, migrations, 'migrate', '--no-diff')
    assert again.wait(timeout=60) == 0
    assert db.versions() == ['20200101000000', '20200102000000']


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_a_migration_runs_python_code(db, migrations, tmp_path, signum):
    """No statement to cancel: the signal interrupts the migration's own code."""
    ready = tmp_path / 'ready'
    migrations.add('20200101000000', 'busy_python', '''\
        import time


        def up(cursor):
            cursor.execute('CREATE TABLE busy_table (id INT)')
            open(%r, 'w').close()
            time.sleep(60)
        ''' % str(ready))
    proc = start(db, migrations, 'migrate', '--no-diff')
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    err = interrupt(proc, signum)
    assert 'interrupted: migration 20200101000000 busy_python was rolled back' in err
    assert not db.table_exists('busy_table')
    assert not db.versions()


def test_a_migration_may_copy_from_stdin(dbm, migrations, db):
    """Statements wait in libpq, with no Python wait callback: COPY works."""
    migrations.add('20200101000000', 'copy_rows', '''\
        import io


        def up(cursor):
            cursor.execute('CREATE TABLE copied (id INT)')
            cursor.copy_expert('COPY copied FROM STDIN', io.StringIO('1\\n2\\n'))
        ''')
    result = dbm('migrate', '--no-diff')
    assert result.code == 0, result.output
    assert db.query('SELECT id FROM copied ORDER BY id') == [(1,), (2,)]


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_cancels_the_statement_on_the_server(db, migrations, tmp_path, signum):
    flag = tmp_path / 'sleep'
    flag.touch()
    sleeping_migration(migrations, '20200101000000', 'slow_table', flag)
    proc = start(db, migrations, 'migrate', '--no-diff')
    wait_for_query(db, 'pg_sleep')
    err = interrupt(proc, signum)
    assert 'interrupted: migration 20200101000000 slow_table was cancelled and rolled back' in err
    assert db.query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%'"
                    " AND application_name = 'dbmigrator'") == [(0,)]
    assert not db.table_exists('slow_table')
    assert not db.versions()

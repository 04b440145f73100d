"""Lock timeouts with retries, statement timeouts: a waiting migration never stalls the database."""
import re
import threading
import time

import psycopg2

from tests.test_reliability import start

ALTER = '''\
    def up(cursor):
        cursor.execute('ALTER TABLE t ADD COLUMN x INT')


    def down(cursor):
        cursor.execute('ALTER TABLE t DROP COLUMN x')
    '''


class Blocker:
    """Another client with an open transaction that has read ``t``."""

    def __init__(self, db):
        self.conn = psycopg2.connect(db.dsn, application_name='myapp')
        with self.conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM t WHERE 'secret-query-text' <> ''")
            cursor.execute('SELECT pg_backend_pid()')
            self.pid = cursor.fetchone()[0]

    def end(self):
        self.conn.rollback()
        self.conn.close()


def setup_table(db, migrations):
    db.query('CREATE TABLE t (id INT); INSERT INTO t VALUES (1)')
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
    migrations.add('20200101000000', 'add_x', ALTER)


def wait_for_lock_wait(db, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbmigrator'"
                    " AND wait_event_type = 'Lock'")[0][0]:
            return
        time.sleep(0.02)
    raise AssertionError('no dbmigrator backend waited for a lock')


def test_retry_succeeds_once_the_blocker_ends(db, migrations):
    setup_table(db, migrations)
    blocker = Blocker(db)
    proc = start(db, migrations, '--lock-timeout', '0.5', '--lock-retries', '3', 'migrate',
                 '--no-diff')
    wait_for_lock_wait(db)
    time.sleep(0.8)  # the first attempt times out while the blocker is there
    blocker.end()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert re.search(
        r'Migration 20200101000000 add_x waited 0.5s for a lock on public\.t held by pid %d '
        r'\(application "myapp", user \w+, transaction open for \d+s\); rolled back, retrying '
        r'in \d\.\ds \(attempt 2 of 4\)' % blocker.pid, err), err
    assert 'secret-query-text' not in out + err
    assert out.count('Running migration 20200101000000 add_x') >= 2
    assert 'x' in db.columns('t')
    assert db.versions() == ['20200101000000']


def test_gives_up_when_the_blocker_outlives_every_retry(db, migrations):
    setup_table(db, migrations)
    blocker = Blocker(db)
    try:
        proc = start(db, migrations, '--lock-timeout', '0.3', '--lock-retries', '1', 'migrate',
                     '--no-diff')
        out, err = proc.communicate(timeout=60)
    finally:
        blocker.end()
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.startswith('dbmigrator: error:')]
    assert len(lines) == 1
    assert re.fullmatch(
        r'dbmigrator: error: Migration 20200101000000 add_x failed: gave up after 2 attempts '
        r'waiting for a lock on public\.t held by pid %d \(application "myapp", user \w+, '
        r'transaction open for \d+s\): retry later, or raise --lock-timeout' % blocker.pid,
        lines[0]), lines[0]
    assert 'Traceback' not in err and 'secret-query-text' not in out + err
    assert db.versions() == []
    assert 'x' not in db.columns('t')


def reader_latencies(db, count=3):
    """Start ``count`` plain readers of t; returns a function that joins them."""
    latencies = []

    def read():
        conn = psycopg2.connect(db.dsn)
        started = time.monotonic()
        with conn.cursor() as cursor:
            cursor.execute('SELECT count(*) FROM t')
        latencies.append(time.monotonic() - started)
        conn.close()
    threads = [threading.Thread(target=read) for _ in range(count)]
    for thread in threads:
        thread.start()

    def join():
        for thread in threads:
            thread.join(timeout=60)
        return latencies
    return join


def test_readers_behind_a_waiting_migration_are_released_within_the_timeout(db, migrations):
    setup_table(db, migrations)
    blocker = Blocker(db)
    proc = start(db, migrations, '--lock-timeout', '1', '--lock-retries', '0', 'migrate',
                 '--no-diff')
    wait_for_lock_wait(db)
    join = reader_latencies(db)
    latencies = join()
    blocker_held = 6
    time.sleep(max(0, blocker_held - 1))
    blocker.end()
    assert proc.wait(timeout=30) == 1
    assert len(latencies) == 3
    assert max(latencies) < 1 + 1.5, latencies


def test_lock_timeout_0_waits_as_1x_did(db, migrations):
    setup_table(db, migrations)
    blocker = Blocker(db)
    proc = start(db, migrations, '--lock-timeout', '0', 'migrate', '--no-diff')
    wait_for_lock_wait(db)
    join = reader_latencies(db)
    time.sleep(3)
    blocker.end()
    latencies = join()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert min(latencies) > 2.5, latencies  # they queued behind the migration
    assert 'x' in db.columns('t')


def test_statement_timeout_rolls_back_without_retry(dbm, migrations, db):
    migrations.add('20200101000000', 'slow', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE slow_done (id INT)')
            cursor.execute('SELECT pg_sleep(10)')
        ''')
    started = time.monotonic()
    result = dbm('--statement-timeout', '0.5', 'migrate', '--no-diff')
    assert time.monotonic() - started < 5
    assert result.code == 1
    assert result.err.strip() == (
        'dbmigrator: error: Migration 20200101000000 slow failed: a statement ran longer than '
        '--statement-timeout and was cancelled; the migration was rolled back and is not retried')
    assert result.out.count('Running migration') == 1
    assert not db.table_exists('slow_done')
    assert db.versions() == []


def test_timeouts_from_the_ini_and_bad_values(dbm, db, migrations, tmp_path):
    from dbmigrator import settings
    ini = tmp_path / 'app.ini'
    ini.write_text('[app:main]\ndb-connection-string = %s\nmigrations-directory = %s\n'
                   'lock-timeout = 2.5\nlock-retries = 0\nstatement-timeout = 60\n'
                   % (db.dsn, migrations.path))
    resolved = settings.resolve(config=str(ini))
    assert (resolved.lock_timeout, resolved.lock_retries, resolved.statement_timeout) == (
        2.5, 0, 60)
    defaults = settings.resolve(db_connection_string=db.dsn, migrations_directories=['.'])
    assert (defaults.lock_timeout, defaults.lock_retries, defaults.statement_timeout) == (5, 3, 0)
    result = dbm('--lock-timeout', '-1', 'migrate')
    assert result.code == 2 and '--lock-timeout must be 0 or more' in result.err


def test_timeouts_do_not_outlive_the_migration(dbm, migrations, db):
    """SET LOCAL: a pooled server connection would get nothing of ours."""
    migrations.add('20200101000000', 'look', '''\
        def up(cursor):
            cursor.execute("SELECT current_setting('lock_timeout')")
            assert cursor.fetchone()[0] == '1500ms'
            cursor.execute("CREATE TABLE seen AS SELECT current_setting('statement_timeout') AS s")
        ''')
    result = dbm('--lock-timeout', '1.5', '--statement-timeout', '7', 'migrate', '--no-diff')
    assert result.code == 0, result
    assert db.query('SELECT s FROM seen') == [('7s',)]


def test_lock_timeout_applies_to_super_user(dbm, migrations, db):
    migrations.add('20200101000000', 'su', '''\
        from dbmigrator import super_user


        def up(cursor):
            with super_user() as su:
                su.execute("SELECT current_setting('lock_timeout')")
                assert su.fetchone()[0] == '2s', 'lock_timeout not applied'
        ''')
    result = dbm('--lock-timeout', '2', 'migrate', '--no-diff')
    assert result.code == 0, result


def test_help_describes_the_timeouts(run):
    out = run('--help').out
    for option in ('--lock-timeout', '--lock-retries', '--statement-timeout', '--pooler'):
        assert option in out

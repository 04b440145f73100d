"""--max-blocking: a migration that keeps other sessions waiting is cancelled."""
import threading
import time

import psycopg2


def reader(db, query, outcome):
    """A production query that waits for the migration's lock, in a thread."""
    def read():
        conn = psycopg2.connect(db.dsn)
        try:
            with conn.cursor() as cursor:
                started = time.monotonic()
                cursor.execute(query)
                outcome['rows'] = cursor.fetchall()
                outcome['waited'] = time.monotonic() - started
        finally:
            conn.close()
    thread = threading.Thread(target=read)
    return thread


def queued(db, query, outcome, delay):
    """``query`` sent ``delay`` seconds from now, to queue behind the migration's lock."""
    thread = reader(db, query, outcome)
    timer = threading.Timer(delay, thread.start)
    timer.start()
    return thread, timer


def test_a_rewrite_that_blocks_a_reader_is_cancelled_and_leaves_the_table(dbm, db, migrations):
    db.query('CREATE TABLE big (id INT PRIMARY KEY, v TEXT);'
             " INSERT INTO big SELECT i, 'v' || i FROM generate_series(1, 5000) i")
    migrations.add('20200101000000', 'add_uuid', '''\
        import time


        def up(cursor):
            cursor.execute('ALTER TABLE big ADD COLUMN u uuid DEFAULT gen_random_uuid()')
            time.sleep(0.5)  # give the reader time to queue behind the lock
            cursor.execute('SELECT pg_sleep(60)')
        ''')
    dbm('init', '--version', '0')
    outcome = {}
    thread, timer = queued(db, 'SELECT count(*) FROM big', outcome, 0.3)
    started = time.monotonic()
    result = dbm('migrate', '--no-diff', '--max-blocking', '1')
    elapsed = time.monotonic() - started
    timer.join()
    thread.join(30)
    assert result.code == 1, result
    assert elapsed < 10
    assert ('Migration 20200101000000 add_uuid was cancelled and rolled back: it blocked 1 '
            'session on public.big for ') in result.err, result
    assert ('--max-blocking is 1s) with its AccessExclusiveLock, which blocks reads and writes; '
            'lint flags this as table-rewrite or held-exclusive-lock') in result.err
    assert 'It was not retried' in result.err and 'attempt' not in result.err
    assert outcome['rows'] == [(5000,)]
    assert db.columns('big') == ['id', 'v']
    assert db.query('SELECT count(*) FROM schema_migrations') == [(0,)]


def test_a_blocking_index_build_in_a_non_atomic_migration_is_guarded_too(dbm, db, migrations):
    db.query('CREATE TABLE big (id INT, v TEXT); INSERT INTO big SELECT i, i::text'
             ' FROM generate_series(1, 1000) i')
    migrations.add('20200101000000', 'index_then_wait', '''\
        atomic = False


        def up(cursor):
            # one statement that builds an index and then takes its time
            cursor.execute('DO $$ BEGIN CREATE INDEX big_v ON big (v);'
                           ' PERFORM pg_sleep(60); END $$')
        ''')
    dbm('init', '--version', '0')
    outcome = {}
    writer, timer = queued(db, "INSERT INTO big VALUES (0, 'w') RETURNING id", outcome, 0.5)
    result = dbm('migrate', '--no-diff', '--max-blocking', '1')
    timer.join()
    writer.join(30)
    assert result.code == 1, result
    assert 'was cancelled: it blocked 1 session on public.big' in result.err, result
    assert 'with its ShareLock, which blocks writes; lint flags this as blocking-index' in (
        result.err)
    assert 'It is non-atomic (atomic = False)' in result.err
    assert outcome['rows'] == [(0,)]


def test_a_lock_held_briefly_is_left_alone_and_zero_turns_the_guard_off(dbm, db, migrations):
    db.query('CREATE TABLE t (id INT); INSERT INTO t VALUES (1)')
    migrations.add('20200101000000', 'brief', '''\
        def up(cursor):
            cursor.execute('LOCK TABLE t IN ACCESS EXCLUSIVE MODE')
            cursor.execute('SELECT pg_sleep(2.5)')
        ''')
    dbm('init', '--version', '0')
    outcome = {}
    thread, timer = queued(db, 'SELECT id FROM t', outcome, 0.3)
    result = dbm('migrate', '--no-diff', '--max-blocking', '0')
    timer.join()
    thread.join(30)
    assert result.code == 0, result
    assert outcome['rows'] == [(1,)] and outcome['waited'] > 1.5

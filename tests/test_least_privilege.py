"""A role that may only read and write its data and schema_migrations can still migrate.

The README promises that a role which may not create dbmigrator's tables gets
a warning and everything else keeps working; the lock is one of those tables.
"""
import threading

import psycopg2
import pytest

from dbmigrator import lock


@pytest.fixture
def app_role(db, migrations):
    """A role with DML on ``items`` and ``schema_migrations`` only; its connection string."""
    role = 'lp_' + db.name
    db.query('CREATE TABLE items (id INT); INSERT INTO items VALUES (1);'
             ' CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP);'
             ' REVOKE CREATE ON SCHEMA public FROM PUBLIC;'
             " CREATE ROLE %s LOGIN PASSWORD 'pw';"
             ' GRANT SELECT, INSERT, UPDATE, DELETE ON items, schema_migrations TO %s'
             % (role, role))
    migrations.add('20200101000000', 'backfill', '''\
        def up(cursor):
            cursor.execute('UPDATE items SET id = id + 1')


        def down(cursor):
            cursor.execute('UPDATE items SET id = id - 1')
        ''')
    yield role, 'postgresql://%s:pw@/%s?host=%s' % (role, db.name, db.socket_dir)
    db.query('DROP OWNED BY %s; DROP ROLE %s' % (role, role))


def as_role(run, dsn, migrations, *argv):
    return run('--db-connection-string', dsn, '--migrations-directory', migrations.path,
               *argv)


def test_without_create_the_run_holds_a_session_lock_and_names_the_grant(
        run, db, migrations, app_role):
    role, dsn = app_role
    result = as_role(run, dsn, migrations, 'migrate', '--no-diff')
    assert result.code == 0, result
    assert 'unexpected error' not in result.err
    assert ('Warning: cannot create dbmigrator_lock (no CREATE privilege): holding a session '
            'advisory lock instead, which the admin page cannot cancel; GRANT CREATE ON '
            'SCHEMA public TO %s once to have the lease' % role) in result.err
    assert db.query('SELECT id FROM items') == [(2,)]
    assert db.versions() == ['20200101000000']
    assert not db.table_exists('dbmigrator_lock')
    assert as_role(run, dsn, migrations, 'rollback', '--no-diff').code == 0
    assert db.query('SELECT id FROM items') == [(1,)]
    # Released: nobody holds the session lock once the runs are over.
    assert db.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]


def test_a_second_least_privilege_run_waits_for_the_first(run, db, migrations, app_role):
    role, dsn = app_role
    other = psycopg2.connect(dsn)
    other.autocommit = True
    with other.cursor() as cursor:
        cursor.execute('SELECT pg_advisory_lock(%s), pg_backend_pid()', (lock.SESSION_KEY,))
        pid = cursor.fetchone()[1]
    try:
        result = as_role(run, dsn, migrations, 'migrate', '--no-diff', '--lock-wait', '0.5')
        assert result.code == 3, result
        assert ('another dbmigrator run (a dbmigrator run of role %s, backend pid %d' % (
            role, pid)) in result.err
        assert db.query('SELECT id FROM items') == [(1,)]
        status = as_role(run, dsn, migrations, 'list')
        assert status.code == 0, status
        released = threading.Timer(1.0, other.close)
        released.start()
        waited = as_role(run, dsn, migrations, 'migrate', '--no-diff')
        released.join()
        assert waited.code == 0, waited
        assert 'Waiting for another dbmigrator run (a dbmigrator run of role %s' % role in (
            waited.out)
    finally:
        other.close()
    assert db.query('SELECT id FROM items') == [(2,)]


def test_a_lock_table_it_may_not_write_names_the_table_grant(run, db, migrations, app_role):
    role, dsn = app_role
    db.query(lock.CREATE)
    result = as_role(run, dsn, migrations, 'migrate', '--no-diff')
    assert result.code == 0, result
    assert ('Warning: cannot write dbmigrator_lock (permission denied): holding a session '
            'advisory lock instead, which the admin page cannot cancel; GRANT SELECT, INSERT, '
            'UPDATE, DELETE ON dbmigrator_lock TO %s once to have the lease' % role) in result.err
    assert db.versions() == ['20200101000000']


def test_through_a_transaction_pooler_it_says_what_still_holds(run, db, migrations, app_role):
    role, dsn = app_role
    result = as_role(run, dsn, migrations, '--pooler', 'transaction', 'migrate', '--no-diff')
    assert result.code == 0, result
    assert ('Warning: cannot create dbmigrator_lock (no CREATE privilege), and through a '
            'transaction pooler no session lock holds: each migration still runs only once, '
            'but a second run does not wait for this one; GRANT CREATE ON SCHEMA public TO %s '
            'once to have the lease' % role) in result.err
    assert db.versions() == ['20200101000000']

"""Non-atomic migrations (atomic = False) and the bad states and bad migrations of issue 7."""
import time

from tests.test_reliability import start

CIC = '''\
    import time

    atomic = False


    def up(cursor):
        time.sleep(%(sleep)s)
        cursor.execute('DROP INDEX CONCURRENTLY IF EXISTS items_name_idx')
        cursor.execute('CREATE INDEX CONCURRENTLY items_name_idx ON items (name)')


    def down(cursor):
        cursor.execute('DROP INDEX CONCURRENTLY IF EXISTS items_name_idx')
    '''


def index_valid(db, name):
    rows = db.query('SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)', (name,))
    return rows[0][0] if rows else None


def items(db):
    db.query("CREATE TABLE items (id INT, name TEXT);"
             " INSERT INTO items SELECT i, 'n' || (i % 7) FROM generate_series(1, 1000) i")


def test_concurrent_index_with_a_second_runner_waiting(db, migrations):
    items(db)
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
    migrations.add('20200101000000', 'items_name_idx', CIC % {'sleep': 2})
    first = start(db, migrations, 'migrate')
    time.sleep(0.7)
    second = start(db, migrations, 'migrate')
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert 'Running migration 20200101000000 items_name_idx' in out1
    assert '+CREATE INDEX items_name_idx ON public.items USING btree (name);' in out1
    assert 'Waiting for another dbmigrator run' in out2
    assert 'No pending migrations.  Database is up to date.' in out2
    assert index_valid(db, 'items_name_idx') is True
    assert db.versions() == ['20200101000000']


def test_vacuum_and_reindex_concurrently_work(dbm, migrations, db):
    items(db)
    db.query('CREATE INDEX items_id_idx ON items (id)')
    migrations.add('20200101000000', 'maintenance', '''\
        atomic = False


        def up(cursor):
            cursor.execute('VACUUM ANALYZE items')
            cursor.execute('REINDEX INDEX CONCURRENTLY items_id_idx')
        ''')
    dbm('init', '--version=0')
    result = dbm('migrate', '--no-diff')
    assert result.code == 0, result
    assert db.versions() == ['20200101000000']


def test_non_atomic_failing_half_way_says_what_stays(dbm, migrations, db):
    db.query("CREATE TABLE users (email TEXT); INSERT INTO users VALUES ('a'), ('a')")
    migrations.add('20200101000000', 'unique_email', '''\
        atomic = False


        def up(cursor):
            cursor.execute('CREATE TABLE IF NOT EXISTS audit (id INT)')
            cursor.execute('DROP INDEX CONCURRENTLY IF EXISTS users_email_key')
            cursor.execute('CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email)')
        ''')
    dbm('init', '--version=0')
    result = dbm('migrate', '--no-diff')
    assert result.code == 1
    assert result.err.strip() == (
        'dbmigrator: error: Migration 20200101000000 unique_email failed: could not create '
        'unique index "users_email_key". It is non-atomic (atomic = False): the statements that '
        'had completed stay applied (a failed CREATE INDEX CONCURRENTLY leaves an INVALID '
        'index) and nothing was recorded; make it re-runnable (IF NOT EXISTS, drop an invalid '
        'index first) and run it again')
    assert db.table_exists('audit')
    assert index_valid(db, 'users_email_key') is False
    assert db.versions() == []
    # Written to be re-runnable: fix the data, run again.
    db.query("DELETE FROM users WHERE ctid <> (SELECT min(ctid) FROM users)")
    again = dbm('migrate', '--no-diff')
    assert again.code == 0, again
    assert index_valid(db, 'users_email_key') is True
    assert db.versions() == ['20200101000000']


def test_rollback_of_a_non_atomic_migration(dbm, migrations, db):
    items(db)
    migrations.add('20200101000000', 'items_name_idx', CIC % {'sleep': 0})
    dbm('init', '--version=0')
    assert dbm('migrate', '--no-diff').code == 0
    result = dbm('rollback')
    assert result.code == 0, result
    assert 'Rolling back migration 20200101000000 items_name_idx' in result.out
    assert '-CREATE INDEX items_name_idx ON public.items USING btree (name);' in result.out
    assert index_valid(db, 'items_name_idx') is None
    assert db.versions() == []


def test_non_atomic_is_marked_and_generated(dbm, run, migrations, db, tmp_path):
    items(db)
    migrations.add('20200101000000', 'items_name_idx', CIC % {'sleep': 0})
    dbm('init', '--version=0')
    listed = dbm('list').out.splitlines()[2]
    assert listed.endswith('(non-atomic)')
    result = run('--migrations-directory', tmp_path / 'new', 'generate', '--non-atomic',
                 'add_index')
    assert result.code == 0
    [path] = (tmp_path / 'new').iterdir()
    text = path.read_text()
    assert 'atomic = False' in text and 'autocommit' in text
    assert 'Generated migration script' in result.out


def test_non_atomic_refused_behind_a_transaction_pooler(dbm, migrations, db):
    items(db)
    migrations.add('20200101000000', 'items_name_idx', CIC % {'sleep': 0})
    dbm('init', '--version=0')
    result = dbm('--pooler', 'transaction', 'migrate')
    assert result.code == 2
    assert ('migration 20200101000000 items_name_idx is non-atomic (atomic = False) and cannot '
            'run through a transaction pooler (pooler = transaction)') in result.err
    assert index_valid(db, 'items_name_idx') is None and db.versions() == []


# Bad states and bad migrations: a clear one-line error, nothing lost.

def assert_one_line(result, code, *fragments):
    assert result.code == code, result
    assert 'Traceback' not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith('dbmigrator: error:')]
    assert len(errors) == 1, result.err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_null_and_non_digit_versions_are_named(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')
    dbm('init', '--version', '20200101000000')
    db.query('ALTER TABLE schema_migrations ALTER COLUMN version DROP NOT NULL')  # as 1.x made it
    db.query("INSERT INTO schema_migrations (version) VALUES (NULL), ('v2-final')")
    listed = dbm('list')
    assert listed.code == 0
    assert [line.split()[:3] for line in listed.out.splitlines()[2:]] == [
        ['20200101000000', 'a', 'True'], ['20200102000000', 'b', 'False']]
    assert "schema_migrations has a row whose version is NULL: it is ignored" in listed.err
    assert "schema_migrations has a row whose version is 'v2-final'" in listed.err
    assert_one_line(dbm('migrate'), 2, 'schema_migrations has a row whose version is NULL',
                    'DELETE FROM schema_migrations WHERE version IS NULL')
    assert_one_line(dbm('rollback'), 2, 'row whose version is NULL')
    assert not db.table_exists('tb')
    db.query('DELETE FROM schema_migrations WHERE version IS NULL')
    assert_one_line(dbm('migrate'), 2, "version is 'v2-final'",
                    "WHERE version = 'v2-final'")


def test_view_named_schema_migrations(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    db.query("CREATE VIEW schema_migrations AS SELECT '1'::text AS version, now() AS applied")
    for command in ('list', 'migrate', 'rollback'):
        assert_one_line(dbm(command), 2, 'schema_migrations is a view, not a table',
                        'rename or drop the view')


def test_read_only_database(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    dbm('init', '--version=0')
    db.query('ALTER DATABASE %s SET default_transaction_read_only = on' % db.name)
    assert_one_line(dbm('migrate'), 2, 'the database is read-only',
                    'default_transaction_read_only is on')
    assert_one_line(dbm('mark', '-t', '20200101000000'), 2, 'read-only')
    assert dbm('list').code == 0
    assert dbm('migrate', '--check').code == 4


def test_sys_exit_in_a_migration_is_a_failed_migration(dbm, migrations, db):
    migrations.add('20200101000000', 'quits', '''\
        import sys


        def up(cursor):
            cursor.execute('CREATE TABLE quitter (id INT)')
            sys.exit(3)
        ''')
    result = dbm('migrate', '--no-diff')
    assert_one_line(result, 1, 'Migration 20200101000000 quits failed: it called sys.exit(3)')
    assert not db.table_exists('quitter') and db.versions() == []


def test_commit_inside_an_atomic_migration_is_refused(dbm, migrations, db):
    migrations.add('20200101000000', 'commits', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE half (id INT)')
            cursor.connection.commit()
            raise RuntimeError('oops')
        ''')
    result = dbm('migrate', '--no-diff')
    assert_one_line(result, 1, 'Migration 20200101000000 commits failed: it called '
                    'connection.commit(), which an atomic migration may not',
                    'set atomic = False')
    assert not db.table_exists('half') and db.versions() == []


def test_swallowed_refusal_still_fails_the_migration(dbm, migrations, db):
    migrations.add('20200101000000', 'sneaky', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE sneaky (id INT)')
            try:
                cursor.connection.autocommit = True
            except Exception:
                pass
        ''')
    result = dbm('migrate', '--no-diff')
    assert_one_line(result, 1, 'it called setting connection.autocommit')
    assert not db.table_exists('sneaky') and db.versions() == []


def test_sql_commit_inside_an_atomic_migration_is_reported(dbm, migrations, db):
    migrations.add('20200101000000', 'sql_commit', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE committed_early (id INT)')
            cursor.execute('COMMIT')
        ''')
    result = dbm('migrate', '--no-diff')
    assert_one_line(result, 1, 'it ended its own transaction (COMMIT or ROLLBACK): what ran '
                    'before that stays committed and nothing was recorded')
    assert db.versions() == []

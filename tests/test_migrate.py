import re

import pytest

USERS_TABLE = '''CREATE TABLE users (
    first_name text, firstname text, last_name text, surname text, full_name text,
    fullname text, suffix text, title text, email text, website text,
    is_moderated boolean)'''

ADD_ID = '''\
    from dbmigrator import super_user


    def up(cursor):
        # TODO migration code
        pass
        # if a super user database connection is needed
        with super_user() as super_cursor:
            super_cursor.execute('SELECT current_user')
            assert super_cursor.fetchone()[0] == 'postgres'


    def down(cursor):
        # TODO rollback code
        pass
    '''

ADD_KAREN = '''\
    def up(cursor):
        cursor.execute('ALTER TABLE users ADD COLUMN karen TEXT')


    def down(cursor):
        cursor.execute('ALTER TABLE users DROP COLUMN karen')
    '''

SEED_CONTEXT_BEFORE = [
    '     first_name text,', '     firstname text,', '     last_name text,',
    '     surname text,', '     full_name text,', '     fullname text,', '     suffix text,',
    '     title text,', '     email text,', '     website text,']


@pytest.fixture
def seed(db, migrations, dbm):
    """The seed document's two migrations on a database with its users table."""
    db.query(USERS_TABLE)
    migrations.add('20151217170514', 'add_id_to_users', ADD_ID)
    migrations.add('20151218145832', 'add_karen_to_users', ADD_KAREN)
    assert dbm('init', '--version=0').code == 0


def test_seed_migrate_prints_runs_and_karen_diff(seed, dbm, db):
    result = dbm('migrate')
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == 'Running migration 20151217170514 add_id_to_users'
    assert lines[1] == 'Running migration 20151218145832 add_karen_to_users'
    assert lines[2:4] == ['---', '+++']
    assert re.match(r'^@@ -\d+,21 \+\d+,22 @@$', lines[4])
    hunk = lines[5:]
    assert hunk[:10] == SEED_CONTEXT_BEFORE
    assert hunk[10:13] == ['-    is_moderated boolean', '+    is_moderated boolean,',
                           '+    karen text']
    assert hunk[13] == ' );'
    assert len(hunk) == 23
    assert 'karen' in db.columns('users')
    assert db.versions() == ['20151217170514', '20151218145832']


def test_migrate_to_version(seed, dbm, db):
    result = dbm('migrate', 'version=20151217170514')
    assert result.code == 0, result
    assert result.out.strip() == 'Running migration 20151217170514 add_id_to_users'
    assert db.versions() == ['20151217170514']
    result = dbm('migrate', '--version', '20151218145832')
    assert 'Running migration 20151218145832 add_karen_to_users' in result.out
    assert db.versions() == ['20151217170514', '20151218145832']


def test_migrate_when_up_to_date(seed, dbm):
    dbm('migrate')
    result = dbm('migrate')
    assert result.code == 0
    assert result.out.strip() == 'No pending migrations.  Database is up to date.'


def test_no_diff(seed, dbm):
    result = dbm('migrate', '--no-diff')
    assert result.code == 0
    assert result.out.splitlines() == ['Running migration 20151217170514 add_id_to_users',
                                       'Running migration 20151218145832 add_karen_to_users']


def test_migrate_creates_table_in_empty_database(dbm, migrations, db):
    migrations.table('20200101000000', 'create_things', 'things')
    result = dbm('migrate')
    assert result.code == 0, result
    assert 'Created the schema_migrations table' in result.out
    assert db.versions() == ['20200101000000']
    assert db.table_exists('things')


def test_migrate_refuses_uninitialized_database_with_tables(dbm, migrations, db):
    db.query('CREATE TABLE legacy (id INT)')
    migrations.table('20200101000000', 'create_things', 'things')
    result = dbm('migrate')
    assert result.code == 2
    assert 'dbmigrator init' in result.err
    assert not db.table_exists('things')
    assert not db.table_exists('schema_migrations')


def test_repeat_migration_runs_while_should_run_is_true(dbm, migrations, db, tmp_path):
    flag = tmp_path / 'data.txt'
    db.query('CREATE TABLE t (data TEXT)')
    migrations.add('20200101000000', 'load_data', '''\
        import os

        FLAG = %r


        def should_run(cursor):
            cursor.execute("INSERT INTO t VALUES ('from should_run')")
            return os.path.exists(FLAG)


        def up(cursor):
            with open(FLAG) as f:
                data = f.read()
            cursor.execute('INSERT INTO t VALUES (%%s)', (data,))


        def down(cursor):
            pass
        ''' % str(flag))
    dbm('init', '--version=0')
    result = dbm('migrate')
    assert result.out.splitlines() == [
        'Skipping migration 20200101000000 load_data: should_run is false',
        'No pending migrations.  Database is up to date.']
    assert db.query('SELECT data FROM t') == []
    flag.write_text('one')
    assert 'Running migration 20200101000000 load_data' in dbm('migrate').out
    flag.write_text('two')
    assert 'Running migration 20200101000000 load_data' in dbm('migrate').out
    assert sorted(db.query('SELECT data FROM t')) == [
        ('from should_run',), ('from should_run',), ('one',), ('two',)]
    assert db.query('SELECT count(*) FROM schema_migrations') == [(1,)]
    table = dbm('list').out
    assert re.search(r'20200101000000\s+load_data\s+True\*', table)


def test_repeat_migration_runs_again_on_original_table_with_duplicates(dbm, migrations, db):
    migrations.add('20200101000000', 'always', '''\
        def should_run(cursor):
            return True


        def up(cursor):
            pass
        ''')
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
    db.query("INSERT INTO schema_migrations VALUES ('20200101000000', '2016-01-01'),"
             " ('20200101000000', '2016-01-02')")
    assert dbm('migrate').code == 0
    dates = db.query('SELECT applied FROM schema_migrations')
    assert len(dates) == 2 and all(d[0].year > 2016 for d in dates)


def test_deferred_migration_needs_run_deferred(dbm, migrations, db):
    migrations.add('20200101000000', 'slow_index', '''\
        from dbmigrator import deferred


        @deferred
        def up(cursor):
            cursor.execute('CREATE TABLE deferred_done (id INT)')


        def down(cursor):
            cursor.execute('DROP TABLE deferred_done')
        ''')
    dbm('init', '--version=0')
    assert 'No pending migrations' in dbm('migrate').out
    assert not db.table_exists('deferred_done')
    result = dbm('migrate', '--run-deferred')
    assert 'Running migration 20200101000000 slow_index' in result.out
    assert db.table_exists('deferred_done')
    assert db.versions() == ['20200101000000']


def test_failing_migration_is_rolled_back_and_stops_the_run(dbm, migrations, db):
    migrations.table('20200101000000', 'first', 'first_table')
    migrations.add('20200102000000', 'broken', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE half_done (id INT)')
            cursor.execute('ALTER TABLE no_such_table ADD COLUMN x INT')


        def down(cursor):
            pass
        ''')
    migrations.table('20200103000000', 'third', 'third_table')
    dbm('init', '--version=0')
    result = dbm('migrate')
    assert result.code == 1
    assert 'Migration 20200102000000 broken failed' in result.err
    assert 'relation "no_such_table" does not exist' in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert 'Traceback' not in result.output
    assert db.versions() == ['20200101000000']
    assert db.table_exists('first_table')
    assert not db.table_exists('half_done')
    assert not db.table_exists('third_table')


def test_python_error_in_migration_names_file_and_line(dbm, migrations, db):
    migrations.add('20200101000000', 'oops', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE oops_table (id INT)')
            1 / 0
        ''')
    dbm('init', '--version=0')
    result = dbm('migrate')
    assert result.code == 1
    assert 'Migration 20200101000000 oops failed: ZeroDivisionError' in result.err
    assert '20200101000000_oops.py line 3' in result.err
    assert not db.table_exists('oops_table')
    assert db.versions() == []
    verbose = dbm('-v', 'migrate')
    assert 'Traceback' in verbose.output


def test_migrations_from_several_directories_run_in_version_order(run, db, tmp_path):
    from tests.conftest import Migrations
    a, b = Migrations(tmp_path / 'a'), Migrations(tmp_path / 'b')
    a.table('20200103000000', 'third', 't3')
    b.table('20200101000000', 'first', 't1')
    a.table('20200102000000', 'second', 't2')
    result = run('--db-connection-string', db.dsn, '--migrations-directory', a.path,
                 '--migrations-directory', b.path, 'migrate', '--no-diff')
    assert result.code == 0, result
    assert [line.split()[2] for line in result.out.splitlines()[1:]] == [
        '20200101000000', '20200102000000', '20200103000000']


def test_quiet_prints_nothing_on_success(seed, dbm):
    result = dbm('-q', 'migrate')
    assert result.code == 0
    assert result.out == '' and result.err == ''


def test_one_dump_between_consecutive_migrations(dbm, migrations, db, monkeypatch):
    from dbmigrator import schemadiff
    calls = []
    original = schemadiff.SchemaDumper.started

    def counting(self, tables=(), schemas=()):
        calls.append(1)
        return original(self, tables, schemas)
    monkeypatch.setattr(schemadiff.SchemaDumper, 'started', counting)
    for i in range(3):
        migrations.table('2020010100000%d' % i, 'm%d' % i, 't%d' % i)
    assert dbm('migrate', '--diff-engine', 'pg_dump', '--version', '20200101000001').code == 0
    assert len(calls) == 3
    # The default engine dumps once per run and renders the new table itself.
    result = dbm('migrate')
    assert result.code == 0
    assert len(calls) == 4
    assert '+CREATE TABLE public.t2 (' in result.out.splitlines()


def test_no_usable_pg_dump_warns_once_and_migrates(dbm, migrations, db, monkeypatch):
    from dbmigrator import schemadiff
    monkeypatch.setattr(schemadiff, '_candidates', lambda: [])
    migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')
    result = dbm('migrate')
    assert result.code == 0
    assert result.err.count('Schema diffs are off') == 1
    assert db.versions() == ['20200101000000', '20200102000000']



SEEN = """\
    atomic = {atomic}


    def up(cursor):
        cursor.execute("INSERT INTO seen VALUES ('{version}', txid_current(), now(),"
                       " current_setting('lock_timeout'))")
    """

NOT_WANTED = """

    def should_run(cursor):
        return False
    """


def _server_log(db):
    path = db.query("SELECT current_setting('data_directory') || '/log'")[0][0]
    with open(path, encoding='utf-8', errors='replace') as handle:
        return handle.read()


def test_each_step_commits_in_a_transaction_of_its_own(dbm, migrations, db):
    """A step's BEGIN and COMMIT ride with its first and last round trips:
    each migration still runs in a transaction of its own, begun when it
    starts, with its own timeouts, and the server logs no warning."""
    db.query('CREATE TABLE seen (version TEXT, txid BIGINT, started TIMESTAMPTZ,'
             ' lock_timeout TEXT)')
    for version, atomic, wanted in [
            ('20200101000000', True, True), ('20200102000000', True, True),
            ('20200103000000', False, True), ('20200104000000', True, False),
            ('20200105000000', True, True), ('20200106000000', True, True)]:
        body = SEEN.format(atomic=atomic, version=version)
        migrations.add(version, 'step', body if wanted else body + NOT_WANTED)
    dbm('init', '--version=0')
    log_before = len(_server_log(db))
    result = dbm('migrate', '--lock-timeout', '7')
    assert result.code == 0, result.output
    assert 'Skipping migration 20200104000000 step: should_run is false' in result.out
    seen = db.query('SELECT s.version, s.txid, s.started, s.lock_timeout, m.applied'
                    ' FROM seen s JOIN schema_migrations m USING (version) ORDER BY 1')
    assert [row[0] for row in seen] == ['20200101000000', '20200102000000', '20200103000000',
                                        '20200105000000', '20200106000000']
    assert len({row[1] for row in seen}) == 5
    atomic = [row for row in seen if row[0] != '20200103000000']
    assert all(row[3] == '7s' for row in atomic)
    # An atomic step's row commits in its own transaction, which began with it.
    assert all(row[4] == row[2] for row in atomic)
    assert all(a[4] < b[2] for a, b in zip(seen, seen[1:]))
    assert 'transaction in progress' not in _server_log(db)[log_before:]


@pytest.mark.parametrize('atomic', [True, False])
def test_a_migration_may_deallocate_prepared_statements(dbm, migrations, db, atomic):
    """dbmigrator prepares each step's own statements once per run; a migration
    that drops every prepared statement still runs once and is recorded."""
    db.query('CREATE TABLE ran (version TEXT)')
    migrations.table('20200101000000', 'first', 'first_table')
    migrations.add('20200102000000', 'deallocate', '''\
        atomic = %s


        def up(cursor):
            cursor.execute("INSERT INTO ran VALUES ('20200102000000')")
            cursor.execute('DEALLOCATE ALL')
        ''' % atomic)
    migrations.table('20200103000000', 'third', 'third_table')
    dbm('init', '--version=0')
    result = dbm('migrate')
    assert result.code == 0, result.output
    assert db.versions() == ['20200101000000', '20200102000000', '20200103000000']
    assert db.query('SELECT version FROM ran') == [('20200102000000',)]
    assert db.table_exists('third_table')


def test_catalog_reads_are_planned_again_as_the_schema_grows(dbm, migrations, db):
    """A run that starts on an empty database plans its statements (the schema
    diff's catalog reads among them) for a few tables.  Once the schema has
    doubled they are prepared again, and the ones they replace are dropped:
    the server keeps one of each, not one per growth."""
    db.query('CREATE TABLE seen (step INT, names TEXT[])')
    for step in range(90):
        migrations.add('2020010100%04d' % step, 'table_%d' % step, '''\
            def up(cursor):
                cursor.execute('CREATE TABLE table_%d (id serial PRIMARY KEY)')
                cursor.execute("INSERT INTO seen SELECT %d, array_agg(name ORDER BY name)"
                               " FROM pg_prepared_statements WHERE name LIKE 'dbmigrator%%%%'")
            ''' % (step, step))
    dbm('init', '--version=0')
    result = dbm('migrate')
    assert result.code == 0, result.output
    names = [set(row[0]) for row in db.query('SELECT names FROM seen ORDER BY step')]
    assert len(names) == 90
    # Those a step uses are prepared again, under new names; no more are left.
    assert 5 < len(names[-1]) <= len(names[5])
    assert not names[5] & names[-1]
    assert max(len(now) for now in names) == len(names[5])


def test_cancel_between_steps_leaves_no_server_warning(dbm, migrations, db):
    """A cancel that arrives while a migration is in Python, not in a statement,
    stops the run after that migration commits (as the heartbeat would flag it)."""
    migrations.add('20200101000000', 'flags_cancel', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE first_table (id INT)')
            cursor.connection.lease.cancelled = True
        ''')
    migrations.table('20200102000000', 'second', 'second_table')
    migrations.table('20200103000000', 'third', 'third_table')
    dbm('init', '--version=0')
    log_before = len(_server_log(db))
    result = dbm('migrate')
    assert result.code == 130, result.output
    assert 'interrupted: migration 20200102000000 second was rolled back' in result.err
    assert db.versions() == ['20200101000000']
    assert db.table_exists('first_table') and not db.table_exists('second_table')
    assert 'transaction in progress' not in _server_log(db)[log_before:]


def test_an_error_at_commit_is_that_steps_own(dbm, migrations, db):
    """A step's COMMIT shares its round trip with the next step's claim: a
    deferred constraint that fails there fails that step, and nothing more runs."""
    migrations.add('20200101000000', 'deferred_fk', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE parent (id INT PRIMARY KEY)')
            cursor.execute('CREATE TABLE child (parent_id INT REFERENCES parent'
                           ' DEFERRABLE INITIALLY DEFERRED)')
            cursor.execute('INSERT INTO child VALUES (1)')
        ''')
    migrations.table('20200102000000', 'second', 'second_table')
    dbm('init', '--version=0')
    result = dbm('migrate', '--no-diff')
    assert result.code != 0
    assert ('Migration 20200101000000 deferred_fk failed: insert or update on table "child"'
            ' violates foreign key constraint') in result.err
    assert 'Running migration 20200102000000' not in result.out
    assert db.versions() == []
    assert not db.table_exists('child') and not db.table_exists('second_table')


HOLDS_SCHEMA_MIGRATIONS = '''\
    import threading
    import time

    import psycopg2


    def _hold():
        conn = psycopg2.connect({dsn!r})
        with conn.cursor() as cursor:
            cursor.execute('LOCK schema_migrations IN ACCESS EXCLUSIVE MODE')
            time.sleep(2.5)
        conn.rollback()
        conn.close()


    def up(cursor):
        cursor.execute('CREATE TABLE first_table (id INT)')
        cursor.execute('SELECT count(*) FROM schema_migrations')
        threading.Thread(target=_hold, daemon=True).start()
        # Return once the LOCK waits for this transaction: it is granted at the COMMIT.
        while True:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted"
                           " AND relation = 'schema_migrations'::regclass")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    '''


def test_a_wait_after_a_steps_commit_is_the_next_steps(dbm, migrations, db):
    """The next step is claimed in the round trip of this one's COMMIT: when
    that claim meets a lock, this step has still committed, and the next one
    waits and retries as any step does."""
    migrations.add('20200101000000', 'first', HOLDS_SCHEMA_MIGRATIONS.format(dsn=db.dsn))
    migrations.table('20200102000000', 'second', 'second_table')
    dbm('init', '--version=0')
    result = dbm('migrate', '--lock-timeout', '1', '--lock-retries', '5')
    assert result.code == 0, result.output
    assert 'Migration 20200101000000 first waited' not in result.err
    assert 'Migration 20200102000000 second waited 1s for' in result.err
    assert db.versions() == ['20200101000000', '20200102000000']
    assert db.query('SELECT version, outcome FROM dbmigrator_history ORDER BY id') == [
        ('20200101000000', 'ok'), ('20200102000000', 'ok')]

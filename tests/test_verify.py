"""verify: up, down, up on a scratch database; the configured one is never written."""
import json
import re


GOOD_ADD = '''\
    def up(cursor):
        cursor.execute('ALTER TABLE users ADD COLUMN karen TEXT')


    def down(cursor):
        cursor.execute('ALTER TABLE users DROP COLUMN karen')
    '''

USERS = '''\
    def up(cursor):
        cursor.execute('CREATE TABLE users (id INT PRIMARY KEY, name TEXT)')


    def down(cursor):
        cursor.execute('DROP TABLE users')
    '''


def databases(db):
    return {r[0] for r in db.query('SELECT datname FROM pg_database')}


def test_clean_migrations_verify(dbm, migrations, db):
    migrations.add('20200101000000', 'users', USERS)
    migrations.add('20200102000000', 'add_karen', GOOD_ADD)
    before = databases(db)
    result = dbm('verify')
    assert result.code == 0, result
    assert result.out.splitlines()[-3:] == [
        'ok      20200102000000 add_karen', 'ok      20200101000000 users',
        'All 2 migrations roll back and re-apply cleanly.']
    assert databases(db) == before  # the scratch database is gone
    assert not db.table_exists('schema_migrations') and not db.table_exists('users')
    assert not db.table_exists('dbmigrator_lock')


def test_down_that_does_not_undo_up_is_reported_with_its_diff(dbm, migrations, db):
    migrations.add('20200101000000', 'users', USERS)
    migrations.add('20200102000000', 'add_karen', '''\
        def up(cursor):
            cursor.execute('ALTER TABLE users ADD COLUMN karen TEXT')
            cursor.execute('CREATE INDEX users_name_idx ON users (name)')


        def down(cursor):
            cursor.execute('ALTER TABLE users DROP COLUMN karen')
        ''')
    result = dbm('verify')
    assert result.code == 1
    lines = result.out.splitlines()
    assert ('FAILED  20200102000000 add_karen: down does not restore the schema it had before '
            'up; then re-applying it after down failed: Migration 20200102000000 add_karen '
            'failed: relation "users_name_idx" already exists') in lines
    assert '+CREATE INDEX users_name_idx ON public.users USING btree (name);' in lines
    assert ('--      20200101000000 users: not checked: the newer migration above could not be '
            'undone and redone') in lines
    assert lines[-1] == '1 of 2 migrations failed verification.'
    assert not db.table_exists('users')


def test_re_apply_failure_is_reported(dbm, migrations, db):
    migrations.add('20200101000000', 'seq', '''\
        def up(cursor):
            cursor.execute('CREATE SEQUENCE counter')


        def down(cursor):
            pass
        ''')
    result = dbm('--format', 'json', 'verify', '--scratch', 'embedded')
    assert result.code == 1
    document = json.loads(result.out)
    assert document['ok'] is False and document['command'] == 'verify'
    [check] = document['migrations']
    assert check['outcome'] == 'failed'
    assert check['problem'].startswith('down does not restore the schema it had before up; '
                                       'then re-applying it after down failed: ')
    assert 'relation "counter" already exists' in check['problem']
    assert '+CREATE SEQUENCE public.counter' in check['diff'].splitlines()


def test_embedded_scratch_and_json(dbm, migrations, db):
    migrations.add('20200101000000', 'users', USERS)
    result = dbm('--format', 'json', 'verify', '--scratch', 'embedded')
    assert result.code == 0, result
    document = json.loads(result.out)
    assert document['ok'] is True
    assert document['scratch'] == 'a throwaway embedded server'
    assert [m['outcome'] for m in document['migrations']] == ['ok']


def test_without_createdb_the_error_says_so(run, migrations, db, server):
    migrations.add('20200101000000', 'users', USERS)
    db.query("CREATE ROLE plain_user LOGIN PASSWORD 'pw'")
    dsn = 'postgresql://plain_user:pw@/%s?host=%s' % (db.name, db.socket_dir)
    result = run('--db-connection-string', dsn, '--migrations-directory', migrations.path,
                 'verify')
    assert result.code == 2
    assert ('verify creates a scratch database beside plain_user@%s/%s, which needs the '
            'CREATEDB privilege: ALTER ROLE plain_user CREATEDB, or use --scratch embedded'
            % (db.socket_dir, db.name)) in result.err
    # The password as a word: the server's random socket folder may hold the letters.
    assert not re.search(r'(?<![A-Za-z0-9_])pw(?![A-Za-z0-9_])', result.err)
    db.query('DROP ROLE plain_user')

"""The run history: rows written by CLI runs, failed runs and interrupted runs; the history command."""
import getpass
import json
import signal
import socket
import time

from dbmigrator import commands, settings as settings_mod
from tests.conftest import SECRET_PASSWORD, SECRET_USER
from tests.test_reliability import sleeping_migration, start, wait_for_query

LOGGING = '''\
    from dbmigrator import logger


    def up(cursor):
        cursor.execute('CREATE TABLE books (id INT)')
        logger.info('created books, 1 of 1')


    def down(cursor):
        cursor.execute('DROP TABLE books')
    '''


def steps(db):
    return db.query('SELECT action, version, name, outcome, error, diff, output, who'
                    ' FROM dbmigrator_history ORDER BY id')


def runs(db):
    return db.query('SELECT action, outcome, error, who, finished IS NOT NULL'
                    ' FROM dbmigrator_runs ORDER BY started')


def test_cli_runs_are_recorded_with_diff_output_and_who(dbm, migrations, db):
    migrations.add('20200101000000', 'books', LOGGING)
    assert dbm('migrate').code == 0
    [(action, version, name, outcome, error, diff, output, who)] = steps(db)
    assert (action, version, name, outcome, error) == (
        'migrate', '20200101000000', 'books', 'ok', None)
    assert '+CREATE TABLE public.books (' in diff.splitlines()
    assert output.splitlines() == ['Running migration 20200101000000 books',
                                   'created books, 1 of 1']
    assert who.startswith('%s@%s pid ' % (getpass.getuser(), socket.gethostname()))
    assert runs(db) == [('migrate', 'ok', None, who, True)]
    dbm('rollback')
    dbm('mark', '-d', '20200101000000')
    assert [(r[0], r[3]) for r in steps(db)] == [('migrate', 'ok'), ('rollback', 'ok'),
                                                  ('mark deferred', 'ok')]
    assert '-CREATE TABLE public.books (' in steps(db)[1][5].splitlines()


def test_who_is_recorded_as_given_whatever_it_holds(db, migrations):
    """A page's user name goes into every step's row; quotes, percent signs and
    backslashes in it are data, never SQL."""
    migrations.add('20200101000000', 'books', LOGGING)
    migrations.table('20200102000000', 'more', 'more_books')
    who = "O'Brien \\ 100%s%% of (admin)"
    settings = settings_mod.resolve(db_connection_string=db.dsn,
                                    migrations_directories=[str(migrations.path)])
    commands.migrate(settings, diff=False, origin=commands.Origin(who=who))
    assert [(r[1], r[3], r[7]) for r in steps(db)] == [
        ('20200101000000', 'ok', who), ('20200102000000', 'ok', who)]
    assert runs(db) == [('migrate', 'ok', None, who, True)]


def test_quiet_runs_record_the_same_output(dbm, migrations, db):
    """-q quiets the terminal only: the history keeps every line, in order."""
    migrations.add('20200101000000', 'books', LOGGING)
    migrations.table('20200102000000', 'second', 'second_table')
    migrations.never_due('20200103000000', 'repeat')
    result = dbm('-q', 'migrate', '--no-diff')
    assert result.code == 0 and result.out == ''
    assert [row[6].splitlines() for row in steps(db)] == [
        ['Running migration 20200101000000 books', 'created books, 1 of 1'],
        ['Running migration 20200102000000 second']]


def test_init_is_recorded(dbm, migrations, db):
    migrations.add('20200101000000', 'books', LOGGING)
    dbm('init')
    assert [(r[0], r[1], r[3]) for r in steps(db)] == [('init', '20200101000000', 'ok')]


def test_failed_run_is_recorded_after_the_rollback(dbm, migrations, db):
    migrations.add('20200101000000', 'books', LOGGING)
    migrations.add('20200102000000', 'broken', '''\
        from dbmigrator import logger


        def up(cursor):
            logger.info('about to fail')
            cursor.execute('CREATE TABLE half (id INT)')
            cursor.execute('SELECT * FROM nowhere')
        ''')
    assert dbm('migrate', '--no-diff').code == 1
    ok, failed = steps(db)
    assert ok[3] == 'ok'
    assert failed[:4] == ('migrate', '20200102000000', 'broken', 'failed')
    assert failed[4] == ('Migration 20200102000000 broken failed: relation "nowhere" does '
                         'not exist')
    assert 'about to fail' in failed[6]
    assert not db.table_exists('half')
    assert runs(db)[0][:2] == ('migrate', 'failed')


def test_interrupted_run_is_recorded(db, migrations, tmp_path):
    flag = tmp_path / 'sleep'
    flag.touch()
    sleeping_migration(migrations, '20200101000000', 'slow_table', flag)
    proc = start(db, migrations, 'migrate', '--no-diff')
    wait_for_query(db, 'pg_sleep')
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    [step] = steps(db)
    assert step[:4] == ('migrate', '20200101000000', 'slow_table', 'interrupted')
    assert 'was cancelled and rolled back' in step[4]
    assert runs(db)[0][:2] == ('migrate', 'interrupted')


def test_history_command(dbm, migrations, db):
    migrations.add('20200101000000', 'books', LOGGING)
    migrations.table('20200102000000', 'more', 'more')
    assert dbm('history').out.splitlines()[-1] == 'No runs recorded yet.'
    dbm('migrate', '--no-diff')
    dbm('rollback', '--no-diff')
    table = dbm('history').out.splitlines()
    assert [c.strip() for c in table[0].split(' | ')] == [
        'when', 'action', 'version', 'name', 'outcome', 'duration', 'who']
    assert [line.split()[2:6] for line in table[2:]] == [
        ['rollback', '20200102000000', 'more', 'ok'],
        ['migrate', '20200102000000', 'more', 'ok'],
        ['migrate', '20200101000000', 'books', 'ok']]
    assert len(dbm('history', '--limit', '1').out.splitlines()) == 3
    only = json.loads(dbm('--format', 'json', 'history', '--version', '20200101000000').out)
    assert [s['version'] for s in only['steps']] == ['20200101000000']
    assert only['steps'][0]['output'].endswith('created books, 1 of 1')
    assert dbm('history', '--limit', '0').code == 2


def test_passwords_are_never_stored(run, db, migrations):
    migrations.add('20200101000000', 'books', LOGGING)
    dsn = db.dsn_for(SECRET_USER, SECRET_PASSWORD)
    assert run('--db-connection-string', dsn, '--migrations-directory', migrations.path,
               'migrate').code == 0
    dumped = repr(db.query('SELECT * FROM dbmigrator_history')) + repr(
        db.query('SELECT * FROM dbmigrator_runs'))
    assert SECRET_PASSWORD not in dumped


def test_role_that_may_not_create_the_history_gets_a_warning(run, db, migrations):
    db.query('CREATE TABLE items (id INT); INSERT INTO items VALUES (1)')
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
    db.query('CREATE INDEX ON schema_migrations (version)')
    from dbmigrator import lock
    db.query(lock.CREATE)
    db.query("DROP ROLE IF EXISTS app_%s; CREATE ROLE app_%s LOGIN PASSWORD 'pw';"
             ' REVOKE CREATE ON SCHEMA public FROM PUBLIC;'
             ' GRANT ALL ON items, schema_migrations, dbmigrator_lock TO app_%s'
             % ((db.name,) * 3))
    migrations.add('20200101000000', 'backfill', '''\
        def up(cursor):
            cursor.execute('UPDATE items SET id = 2')
        ''')
    dsn = 'postgresql://app_%s:pw@/%s?host=%s' % (db.name, db.name, db.socket_dir)
    result = run('--db-connection-string', dsn, '--migrations-directory', migrations.path,
                 'migrate', '--no-diff')
    assert result.code == 0, result
    assert ('Warning: cannot create dbmigrator_history (no CREATE privilege): this run is not '
            'recorded in the history') in result.err
    assert db.query('SELECT id FROM items') == [(2,)]
    assert db.versions() == ['20200101000000']
    assert not db.table_exists('dbmigrator_history')
    assert run('--db-connection-string', dsn, '--migrations-directory', migrations.path,
               'history').out.splitlines()[-1] == 'No runs recorded yet.'
    db.query('DROP OWNED BY app_%s; DROP ROLE app_%s' % (db.name, db.name))

"""Bad input: one clear line, a non-zero exit, no traceback, nothing changed."""
import socket
import threading
import time

import pytest

from tests.conftest import SECRET_PASSWORD, SECRET_USER, Migrations


def assert_clean_error(result, code, *fragments):
    assert result.code == code, result
    assert 'Traceback' not in result.output
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith('dbmigrator: error: ')
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_config_file(run, tmp_path):
    assert_clean_error(run('--config', tmp_path / 'nope.ini', 'list'), 2,
                       'nope.ini not found')


def test_unreadable_config_file(run, tmp_path):
    ini = tmp_path / 'broken.ini'
    ini.write_bytes(b'this is not an ini file\n\x00\x01')
    assert_clean_error(run(ini, 'list'), 2, 'cannot read config file')


def test_missing_section(run, tmp_path):
    ini = tmp_path / 'app.ini'
    ini.write_text('[app:main]\ndb-connection-string = x\n')
    assert_clean_error(run('%s#api' % ini, 'list'), 2, 'no [app:api] section', '[app:main]')


def test_no_connection_string(run, migrations):
    migrations.add('20200101000000', 'a')
    assert_clean_error(run('--migrations-directory', migrations.path, 'list'), 2,
                       'no database given')


def test_malformed_connection_string(run, migrations):
    migrations.add('20200101000000', 'a')
    result = run('--migrations-directory', migrations.path,
                 '--db-connection-string', 'host=localhost password=hunter2 dbname', 'list')
    assert_clean_error(result, 2, 'malformed db-connection-string')
    assert 'hunter2' not in result.output


@pytest.fixture
def silent_server():
    """A TCP port on loopback that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except socket.timeout:
                pass
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_unreachable_host_times_out(run, migrations, silent_server):
    migrations.add('20200101000000', 'a')
    started = time.monotonic()
    result = run('--migrations-directory', migrations.path, '--connect-timeout', '2',
                 '--db-connection-string', 'postgresql://u@127.0.0.1:%d/db' % silent_server,
                 'migrate')
    assert time.monotonic() - started < 15
    assert_clean_error(result, 2, 'cannot connect to the database', '127.0.0.1')


def test_wrong_password(run, db, migrations):
    migrations.add('20200101000000', 'a')
    result = run('--migrations-directory', migrations.path,
                 '--db-connection-string', db.dsn_for(SECRET_USER, 'wrong-' + SECRET_PASSWORD),
                 'list')
    assert_clean_error(result, 2, 'password authentication failed')
    assert SECRET_PASSWORD not in result.output


def test_database_does_not_exist(run, db, migrations):
    migrations.add('20200101000000', 'a')
    dsn = db.dsn.replace(db.name, 'no_such_database')
    assert_clean_error(run('--migrations-directory', migrations.path,
                           '--db-connection-string', dsn, 'list'), 2,
                       'database "no_such_database" does not exist')


def test_migrations_directory_does_not_exist(run, db, tmp_path):
    assert_clean_error(run('--db-connection-string', db.dsn, '--migrations-directory',
                           tmp_path / 'missing', 'list'), 2, 'missing does not exist')


def test_syntax_error_names_file_and_line(dbm, migrations, db):
    migrations.add('20200101000000', 'bad', 'def up(cursor):\n    pass\n\ndef down(cursor:\n')
    assert_clean_error(dbm('migrate'), 2, '20200101000000_bad.py line 4', 'syntax error')
    assert not db.table_exists('schema_migrations')


def test_import_error_names_file_and_line(dbm, migrations):
    migrations.add('20200101000000', 'bad', 'import os\nimport no_such_module_xyz\n')
    assert_clean_error(dbm('list'), 2, '20200101000000_bad.py line 2',
                       "No module named 'no_such_module_xyz'")


def test_migration_without_up(dbm, migrations):
    migrations.add('20200101000000', 'no_up', 'def down(cursor):\n    pass\n')
    assert_clean_error(dbm('migrate'), 2, '20200101000000_no_up.py has no up(cursor)')


def test_should_run_that_raises(dbm, migrations, db):
    migrations.table('20200101000000', 'first', 'first_table')
    migrations.add('20200102000000', 'repeat', '''\
        def should_run(cursor):
            raise ValueError('cannot decide')


        def up(cursor):
            pass
        ''')
    result = dbm('migrate')
    assert_clean_error(result, 1, 'Migration 20200102000000 repeat failed',
                       'should_run raised ValueError: cannot decide')
    assert db.versions() == ['20200101000000']


def test_two_files_with_the_same_version(run, db, tmp_path):
    a, b = Migrations(tmp_path / 'a'), Migrations(tmp_path / 'b')
    a.add('20200101000000', 'one')
    b.add('20200101000000', 'other')
    result = run('--db-connection-string', db.dsn, '--migrations-directory', a.path,
                 '--migrations-directory', b.path, 'migrate')
    assert_clean_error(result, 2, 'two migrations have version 20200101000000',
                       '20200101000000_one.py', '20200101000000_other.py')


def test_unknown_versions(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    assert_clean_error(dbm('migrate', '--version', '20990101000000'), 2,
                       'unknown migration version 20990101000000')
    assert_clean_error(dbm('migrate', 'version=abc'), 2, 'must be a migration version')
    assert not db.table_exists('ta')
    dbm('migrate')
    assert_clean_error(dbm('rollback', '--version', '20990101000000'), 2,
                       'unknown migration version 20990101000000')
    assert_clean_error(dbm('mark', '-f', '20990101000000'), 2,
                       'unknown migration version 20990101000000')
    assert db.versions() == ['20200101000000']


@pytest.mark.parametrize('steps', ['0', '-1'])
def test_bad_steps(dbm, migrations, db, steps):
    migrations.table('20200101000000', 'a', 'ta')
    dbm('migrate')
    assert_clean_error(dbm('rollback', '--steps', steps), 2, '--steps must be 1 or more')
    assert db.versions() == ['20200101000000']


def test_bad_option_is_one_line(dbm):
    assert_clean_error(dbm('migrate', '--no-such-option'), 2, 'unrecognized arguments')


def test_file_that_is_not_utf8(dbm, migrations):
    path = migrations.path / '20200101000000_latin1.py'
    path.write_bytes(b'# caf\xe9\ndef up(cursor):\n    pass\n')
    assert_clean_error(dbm('list'), 2, '20200101000000_latin1.py is not UTF-8',
                       'line 1', 'save it as UTF-8')


def test_rollback_without_down(dbm, migrations, db):
    migrations.add('20200101000000', 'no_down', 'def up(cursor):\n    pass\n')
    dbm('migrate')
    assert_clean_error(dbm('rollback'), 2, 'has no down(cursor) function')
    assert db.versions() == ['20200101000000']


def test_verbose_shows_traceback(dbm, migrations):
    migrations.add('20200101000000', 'no_up', 'def down(cursor):\n    pass\n')
    result = dbm('-v', 'migrate')
    assert result.code == 2
    assert 'Traceback' in result.err


def test_negative_waits(dbm, migrations):
    migrations.add('20200101000000', 'a')
    assert_clean_error(dbm('--lock-wait', '-1', 'migrate'), 2, '--lock-wait must be 0 or more')
    assert_clean_error(dbm('--connect-timeout', '-5', 'list'), 2,
                       '--connect-timeout must be 0 or more')

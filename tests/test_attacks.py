"""Bad migration code and bad input met as an attacker, or a careless user, would."""
import json
import os

import pytest


@pytest.mark.parametrize('code', [3, 4, 0])
def test_sys_exit_at_module_level_is_an_error_for_that_file(dbm, migrations, code):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.add('20200102000000', 'exits', 'import sys\nsys.exit(%d)\n' % code)
    result = dbm('--format', 'json', 'migrate')
    assert result.code == 2, result
    document = json.loads(result.out)
    assert '20200102000000_exits.py line 2: cannot load the migration: it called sys.exit(%d)' % (
        code) in document['error']['message']
    assert 'dbmigrator: error:' in result.err


@pytest.mark.parametrize('raised', ['SystemExit(3)', 'GeneratorExit()'])
def test_base_exceptions_in_up_fail_that_migration(dbm, db, migrations, raised):
    migrations.add('20200101000000', 'raises', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE t (id INT)')
            raise %s
        ''' % raised)
    result = dbm('migrate')
    assert result.code == 1, result
    assert 'Migration 20200101000000 raises failed:' in result.err
    assert 'Traceback' not in result.err
    assert not db.table_exists('t')
    assert db.versions() == []


@pytest.mark.parametrize('function', ['up', 'down', 'should_run'])
def test_async_functions_are_refused(dbm, db, migrations, function):
    body = {'up': 'async def up(cursor):\n    pass\n',
            'down': 'def up(cursor):\n    pass\n\n\nasync def down(cursor):\n    pass\n',
            'should_run': 'async def should_run(cursor):\n    return True\n\n\n'
                          'def up(cursor):\n    pass\n'}[function]
    migrations.add('20200101000000', 'coroutine', body)
    result = dbm('migrate')
    assert result.code == 2, result
    assert '%s is an async function or a generator' % function in result.err
    assert db.query("SELECT to_regclass('schema_migrations')")[0][0] is None or \
        db.versions() == []


@pytest.mark.parametrize('argv,hint', [(['migrat'], 'migrate'), (['lst'], 'list'),
                                       (['x.ini', 'rolback'], 'rollback')])
def test_a_misspelled_command_names_the_closest(run, tmp_path, argv, hint):
    if argv[0] == 'x.ini':
        (tmp_path / 'x.ini').write_text('[app:main]\n')
        argv = [str(tmp_path / 'x.ini')] + argv[1:]
    result = run(*argv)
    assert result.code == 2
    assert 'did you mean %s?' % hint in result.err
    assert 'no command given' not in result.err


@pytest.mark.parametrize('option,value', [('--statement-timeout', 'nan'),
                                          ('--lock-timeout', 'inf'),
                                          ('--lock-timeout', '1e12'),
                                          ('--lock-wait', 'nan'),
                                          ('--connect-timeout', '-3')])
def test_numbers_beyond_what_postgresql_takes_are_bad_input(dbm, migrations, option, value):
    migrations.table('20200101000000', 'a', 'ta')
    result = dbm(option, value, 'migrate')
    assert result.code == 2, result
    assert result.err.startswith('dbmigrator: error: --%s must be 0 or more' % option[2:])
    assert len(result.err.splitlines()) == 1


def write_ini(tmp_path, db, migrations, more):
    """An ini file for this test's database and folder, with ``more`` lines after."""
    ini = tmp_path / 'app.ini'
    ini.write_text('[app:main]\ndb-connection-string = %s\nmigrations-directory = %s\n%s' % (
        db.dsn, migrations.path, more))
    return ini


def test_a_connect_timeout_in_the_ini_that_is_not_a_number(run, tmp_path, migrations, db):
    result = run(write_ini(tmp_path, db, migrations, 'connect-timeout = abc\n'), 'list')
    assert result.code == 2
    assert result.err == ('dbmigrator: error: connect-timeout = abc is not a number: give a '
                          'whole or decimal number without a fraction\n')


def test_broken_logging_sections_are_one_line(run, tmp_path, migrations, db):
    ini = write_ini(tmp_path, db, migrations, '[loggers]\nkeys = root\n')
    result = run(ini, 'list')
    assert result.code == 2
    assert 'Traceback' not in result.err
    assert 'the logging sections ([loggers], [handlers], [formatters]) of %s are broken' % (
        ini) in result.err


@pytest.mark.parametrize('version', ['\u00b2', '\u0661\u0662', '9' * 5000])
def test_unicode_digits_and_huge_versions_are_refused(dbm, migrations, version):
    migrations.add('20200101000000', 'a')
    result = dbm('init', '--version', version)
    assert result.code == 2, result
    assert 'must be a migration version (up to 64 ASCII digits)' in result.err


@pytest.mark.parametrize('version', ['\u00b2', '9' * 5000])
def test_odd_rows_in_schema_migrations_are_named(dbm, db, migrations, version):
    migrations.add('20200101000000', 'a')
    dbm('init')
    db.query('INSERT INTO schema_migrations VALUES (%s)', (version,))
    listed = dbm('list')
    assert listed.code == 0, listed
    assert '20200101000000' in listed.out
    migrated = dbm('migrate')
    assert migrated.code == 2, migrated
    assert 'schema_migrations has a row whose version is' in migrated.err


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'migrations')


def test_check_and_dry_run_on_a_fresh_database_with_the_shipped_examples(run, db):
    """A repeat migration's should_run reads a table an earlier pending step creates."""
    common = ('--db-connection-string', db.dsn, '--migrations-directory', EXAMPLES)
    checked = run(*common, '--format', 'json', 'migrate', '--check')
    assert checked.code == 4, checked
    steps = {s['version']: s['reason'] for s in json.loads(checked.out)['steps']}
    assert steps['20240104080000'] == 'repeat-undecided'
    assert steps['20240103100000'] == 'pending'
    dry = run(*common, 'migrate', '--dry-run')
    assert dry.code == 0, dry
    assert ('Would run migration 20240104080000 refresh_default_settings (repeat; its '
            'should_run can only be asked once the migrations before it have run)') in dry.out
    assert not db.table_exists('settings')
    assert run(*common, 'migrate').code == 0
    again = run(*common, '--format', 'json', 'migrate', '--check')
    assert again.code == 0, again
    assert json.loads(again.out)['steps'] == []


def test_verify_passes_on_the_shipped_examples(run, db):
    result = run('--db-connection-string', db.dsn, '--migrations-directory', EXAMPLES,
                 'verify')
    assert result.code == 0, result
    assert 'All 5 migrations roll back and re-apply cleanly.' in result.out


def test_a_commit_sent_as_sql_and_then_an_error_says_what_was_left(dbm, db, migrations):
    migrations.add('20200101000000', 'commits', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE t (id INT)')
            cursor.execute('COMMIT')
            raise ValueError('boom')
        ''')
    result = dbm('migrate')
    assert result.code == 1, result
    assert ('Migration 20200101000000 commits failed: ValueError: boom (20200101000000_commits.py'
            ' line 4), after it had ended its own transaction (COMMIT or ROLLBACK sent as SQL): '
            'what ran before that, and each statement after it, stays committed, and nothing '
            'was recorded') in result.err
    assert db.table_exists('t')
    assert db.versions() == []


def test_another_roles_live_lease_is_not_taken_over(run, db, migrations):
    """pg_stat_activity hides another role's backend_start; its pid still shows."""
    import psycopg2
    from dbmigrator import lock
    roles = ['deploy_a_' + db.name, 'deploy_b_' + db.name]
    for role in roles:
        db.query("CREATE ROLE %s LOGIN PASSWORD 'pw'; GRANT ALL ON SCHEMA public TO %s"
                 % (role, role))
    db.query(lock.CREATE)
    db.query('GRANT ALL ON dbmigrator_lock TO %s, %s' % tuple(roles))
    migrations.table('20200101000000', 'a', 'ta')

    def dsn(role):
        return 'postgresql://%s:pw@/%s?host=%s' % (role, db.name, db.socket_dir)
    conn = psycopg2.connect(dsn(roles[0]))
    lease = lock.Lease(conn, lambda: psycopg2.connect(dsn(roles[0])), who='a@host pid 1')
    lease.acquire(0)
    try:
        result = run('--db-connection-string', dsn(roles[1]), '--migrations-directory',
                     migrations.path, '--lock-wait', '0', 'migrate')
        assert result.code == 3, result
        assert 'a@host pid 1' in result.err
    finally:
        lease._stop.set()
        lease._wake.set()
        conn.close()
    assert not db.table_exists('ta')
    db.query('DROP OWNED BY %s, %s; DROP ROLE %s, %s' % tuple(roles * 2))


def test_a_migrations_session_cannot_stay_idle_in_transaction_for_ever(dbm, db, migrations):
    migrations.add('20200101000000', 'settings', '''\
        def up(cursor):
            cursor.execute("SHOW idle_in_transaction_session_timeout")
            idle = cursor.fetchone()[0]
            params = cursor.connection.get_dsn_parameters()
            cursor.execute('CREATE TABLE seen (idle TEXT, keepalives TEXT, user_timeout TEXT)')
            cursor.execute('INSERT INTO seen VALUES (%s, %s, %s)',
                           (idle, params.get('keepalives'), params.get('tcp_user_timeout')))
        ''')
    assert dbm('migrate').code == 0
    assert db.query('SELECT * FROM seen') == [('10min', '1', '30000')]
    assert db.query("SELECT current_setting('idle_in_transaction_session_timeout')") == [('0',)]


@pytest.mark.parametrize('make, message', [
    (lambda folder, path: os.symlink('nowhere.py', path),
     ' is a symlink to nowhere.py, which does not exist: fix or remove the link'),
    (lambda folder, path: os.symlink(os.path.basename(path), path),
     ': cannot read the migration (Too many levels of symbolic links): fix or remove the link'),
    (lambda folder, path: os.mkdir(path),
     ' is a directory named like a migration: rename it'),
    (lambda folder, path: os.mkfifo(path),
     ' is not a regular file: a migration must be one'),
    # root reads any file it may open, but no one reads a write-only /proc/sys entry
    (lambda folder, path: os.symlink('/proc/sys/vm/drop_caches', path) if os.geteuid() == 0
     else (open(path, 'w').close(), os.chmod(path, 0)),
     ': cannot read the migration (Permission denied): let the user running dbmigrator '
     'read it'),
], ids=['dangling symlink', 'symlink loop', 'directory', 'fifo', 'unreadable'])
def test_folder_entries_that_are_not_readable_files(dbm, migrations, make, message):
    path = os.path.join(migrations.path, '20200101000000_odd.py')
    make(migrations.path, path)
    for command in ('list', 'migrate'):
        result = dbm(command)
        assert result.code == 2, result
        assert result.err == 'dbmigrator: error: %s%s\n' % (path, message), result


def test_generate_refuses_a_name_ending_in_a_newline(dbm, migrations):
    result = dbm('generate', 'foo\n')
    assert result.code == 2, result
    assert "migration name 'foo\\n' is not valid" in result.err
    assert os.listdir(migrations.path) == []


def test_a_bigint_version_column_is_read_as_text(dbm, db, migrations):
    db.query('CREATE TABLE schema_migrations (version BIGINT, applied TIMESTAMPTZ);'
             " INSERT INTO schema_migrations VALUES (20200101000000, now())")
    migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')
    listed = dbm('list')
    assert listed.code == 0, listed
    assert [line.split()[2] for line in listed.out.splitlines()[2:]] == ['True', 'False']
    assert dbm('migrate', '--no-diff').code == 0
    assert db.table_exists('tb') and not db.table_exists('ta')
    assert dbm('rollback', '--no-diff').code == 0
    assert db.query('SELECT version FROM schema_migrations') == [(20200101000000,)]


@pytest.mark.parametrize('table, message', [
    ('CREATE TABLE schema_migrations (version TEXT, applied TIMESTAMPTZ, who TEXT NOT NULL)',
     'schema_migrations has NOT NULL column who with no default, which dbmigrator does not '
     'fill: give it a default or drop it'),
    ('CREATE TABLE schema_migrations (id INT, applied TIMESTAMPTZ)',
     'schema_migrations has no version column, so it is not the table dbmigrator and '
     'db-migrator 1.x keep: rename it, or add the column (text or an integer type)'),
    ('CREATE TABLE schema_migrations (version TEXT, applied BOOLEAN)',
     "schema_migrations.applied is boolean; dbmigrator needs timestamptz: change the "
     "column's type"),
    ('CREATE TABLE schema_migrations (version TEXT, applied TIMESTAMPTZ);'
     ' CREATE TABLE dbmigrator_lock (id INT PRIMARY KEY, holder TEXT)',
     "dbmigrator_lock exists but is not dbmigrator's lease table (it has no columns who, "
     'backend_pid, backend_start, acquired, expires, run_id, current, current_pid, '
     'current_started, current_step, steps, output, cancel_requested): drop it if nothing '
     'else uses it, or rename it; dbmigrator then makes its own'),
    ('CREATE TABLE schema_migrations (version TEXT, applied TIMESTAMPTZ);'
     ' CREATE TABLE dbmigrator_history (id INT, note TEXT)',
     "dbmigrator_history exists but is not dbmigrator's run history (it has no columns "
     'run_id, action, version, name, started, finished, outcome, error, diff, output, who, '
     'dbmigrator_version): rename that table (it may hold data); dbmigrator then makes its own'),
], ids=['foreign not null column', 'no version', 'applied boolean', 'lock', 'history'])
def test_tables_of_another_shape_are_named_before_anything_runs(dbm, db, migrations, table,
                                                                message):
    db.query(table)
    migrations.table('20200101000000', 'a', 'ta')
    result = dbm('migrate', '--no-diff')
    assert result.code == 2, result
    assert result.err == 'dbmigrator: error: %s\n' % message, result
    assert not db.table_exists('ta')


def test_an_empty_search_path_is_named(dbm, db, migrations):
    db.query("ALTER DATABASE %s SET search_path = ''" % db.name)
    migrations.table('20200101000000', 'a', 'ta')
    for argv in (('init', '--version', '0'), ('list',)):
        result = dbm(*argv)
        assert result.code == 2, result
        assert ("the connection's search_path (\"\") names no schema that exists, so "
                "dbmigrator's tables have nowhere to go") in result.err, result


@pytest.mark.parametrize('timeout', ['1ms', '200ms'])
def test_a_role_statement_timeout_too_short_for_dbmigrator_is_named(dbm, db, migrations,
                                                                    timeout):
    db.query("ALTER DATABASE %s SET statement_timeout = '%s'" % (db.name, timeout))
    migrations.table('20200101000000', 'a', 'ta')
    result = dbm('init', '--version', '0')
    assert result.code == 2, result
    assert 'unexpected error' not in result.err
    assert 'statement_timeout' in result.err and 'ALTER ROLE' in result.err, result
    assert len(result.err.splitlines()) == 1


def test_embedded_paths_that_are_not_data_folders_are_refused_and_left_alone(run, tmp_path,
                                                                             migrations):
    afile = tmp_path / 'afile'
    afile.write_text('mine')
    busy = tmp_path / 'busy'
    busy.mkdir()
    (busy / 'notes.txt').write_text('mine')
    for dsn, message in (
            ('embedded:', "embedded: needs the folder that keeps the server's data, as "
                          'embedded:PATH (for example embedded:.dbmigrator/pg)'),
            ('embedded:%s' % afile, '%s is not a folder: embedded:PATH names the folder that '
                                    "keeps the server's data; pick a new or empty folder" % afile),
            ('embedded:%s' % busy, '%s is a folder that holds files but no PostgreSQL data '
                                   '(no PG_VERSION)' % busy)):
        result = run('--db-connection-string', dsn, '--migrations-directory', migrations.path,
                     'list')
        assert result.code == 2, result
        assert result.err.startswith('dbmigrator: error: ' + message), result
    for path in (afile, busy, busy / 'notes.txt'):
        assert path.stat().st_uid == os.geteuid()

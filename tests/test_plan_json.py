"""The plan as users see it: dry runs, --check, out-of-order guard and JSON output."""
import json
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs',
                      'automation.md')

REPEAT_FLAG = '''\
    import os

    FLAG = %r


    def should_run(cursor):
        cursor.execute('CREATE TABLE should_run_side_effect (id INT)')
        return os.path.exists(FLAG)


    def up(cursor):
        cursor.execute('CREATE TABLE IF NOT EXISTS repeat_ran (id INT)')
        cursor.execute('INSERT INTO repeat_ran VALUES (1)')


    def down(cursor):
        pass
    '''


def readme_documents():
    """The JSON examples of the README, by the name in the line before each block."""
    text = open(README, encoding='utf-8').read()
    found = {}
    for name, body in re.findall(r'<!-- json: (\S+) -->\s*```json\n(.*?)```', text, re.S):
        found[name] = json.loads(body)
    return found


def same_shape(example, actual, path='$'):
    """Every key of the documented example is there, with a value of the same kind."""
    if isinstance(example, dict):
        assert isinstance(actual, dict), path
        assert set(actual) == set(example), '%s: keys %s, documented %s' % (
            path, sorted(actual), sorted(example))
        for key in example:
            same_shape(example[key], actual[key], '%s.%s' % (path, key))
    elif isinstance(example, list):
        assert isinstance(actual, list), path
        if example:
            for item in actual:
                same_shape(example[0], item, path + '[]')
    elif example is None or actual is None:
        pass  # documented as nullable: a string or number elsewhere
    elif isinstance(example, bool):
        assert isinstance(actual, bool), path
    elif isinstance(example, (int, float)):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), path
    else:
        assert isinstance(actual, type(example)), path


def as_json(result):
    """The one document on stdout; nothing else is there."""
    return json.loads(result.out)


def test_dry_run_prints_the_plan_and_changes_nothing(dbm, migrations, db, tmp_path):
    migrations.table('20200101000000', 'a', 'ta')
    flag = tmp_path / 'flag'
    flag.touch()
    migrations.add('20200102000000', 'repeat', REPEAT_FLAG % str(flag))
    result = dbm('migrate', '--dry-run')
    assert result.code == 0, result
    assert result.out.splitlines() == [
        'Would run migration 20200101000000 a (pending)',
        'Would run migration 20200102000000 repeat (repeat)']
    assert not db.table_exists('schema_migrations')
    assert not db.table_exists('ta')
    assert not db.table_exists('should_run_side_effect')
    flag.unlink()
    result = dbm('migrate', '--dry-run')
    assert result.out.splitlines() == [
        'Would run migration 20200101000000 a (pending)',
        'Skipping migration 20200102000000 repeat: should_run is false']


def test_check_exits_4_when_something_would_run_and_0_when_not(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    result = dbm('migrate', '--check')
    assert result.code == 4, result
    assert 'Would run migration 20200101000000 a (pending)' in result.out
    assert not db.table_exists('ta')
    assert dbm('migrate', '--no-diff').code == 0
    result = dbm('migrate', '--check')
    assert result.code == 0
    assert result.out.strip() == 'No pending migrations.  Database is up to date.'


def test_help_documents_exit_code_4(run):
    assert '4 migrate --check found migrations that would run' in run('--help').out


def test_rollback_dry_run_shows_what_would_be_rolled_back(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')
    dbm('migrate', '--no-diff')
    result = dbm('rollback', '--steps', '2', '--dry-run')
    assert result.code == 0
    assert result.out.splitlines() == ['Would roll back migration 20200102000000 b (applied)',
                                       'Would roll back migration 20200101000000 a (applied)']
    assert db.versions() == ['20200101000000', '20200102000000']
    assert db.table_exists('tb')


def test_deferred_dry_run_names_the_reason(dbm, migrations, db):
    migrations.add('20200101000000', 'later', '''\
        from dbmigrator import deferred


        @deferred
        def up(cursor):
            cursor.execute('CREATE TABLE later (id INT)')
        ''')
    dbm('init', '--version=0')
    assert dbm('migrate', '--check').code == 0
    result = dbm('migrate', '--run-deferred', '--check')
    assert result.code == 4
    assert result.out.strip() == ('Would run migration 20200101000000 later '
                                  '(deferred, included by --run-deferred)')


def test_out_of_order_migration_warns_and_runs(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200103000000', 'c', 'tc')
    dbm('migrate', '--no-diff')
    migrations.table('20200102000000', 'from_branch', 'tb')
    warning = ('Warning: migration 20200102000000 from_branch is older than the newest '
               'applied migration 20200103000000')
    listed = dbm('list')
    assert warning in listed.err
    result = dbm('migrate', '--no-diff')
    assert result.code == 0
    assert warning in result.err
    assert 'Running migration 20200102000000 from_branch' in result.out
    assert db.table_exists('tb')


def test_strict_refuses_out_of_order_before_changing_anything(dbm, migrations, db, tmp_path):
    migrations.table('20200103000000', 'c', 'tc')
    dbm('migrate', '--no-diff')
    migrations.table('20200101000000', 'old', 'ta')
    migrations.table('20200104000000', 'new', 'td')
    result = dbm('migrate', '--strict', '--no-diff')
    assert result.code == 2
    assert ('dbmigrator: error: refusing to run migration 20200101000000 old out of order '
            '(--strict)') in result.err
    assert not db.table_exists('ta') and not db.table_exists('td')
    ini = tmp_path / 'strict.ini'
    ini.write_text('[app:main]\ndb-connection-string = %s\nmigrations-directory = %s\n'
                   'strict = true\n' % (db.dsn, migrations.path))
    from_ini = dbm('--config', ini, 'migrate')
    assert from_ini.code == 2 and 'out of order' in from_ini.err
    assert dbm('migrate', '--no-diff').code == 0
    assert db.table_exists('ta') and db.table_exists('td')


def test_bad_strict_value_is_named(dbm, db, migrations, tmp_path):
    ini = tmp_path / 'strict.ini'
    ini.write_text('[app:main]\ndb-connection-string = %s\nmigrations-directory = %s\n'
                   'strict = sometimes\n' % (db.dsn, migrations.path))
    result = dbm('--config', ini, 'list')
    assert result.code == 2
    assert 'strict = sometimes is not a boolean' in result.err


def test_json_documents_match_the_readme(dbm, migrations, db):
    """Every command's document has the shape the README documents."""
    documented = readme_documents()
    assert set(documented) >= {'list', 'migrate', 'error'}
    migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')

    init = dbm('--format', 'json', 'init', '--version', '20200101000000')
    same_shape(documented['init'], as_json(init))
    assert as_json(init)['changed'] is True

    listed = dbm('list', '--format', 'json')
    same_shape(documented['list'], as_json(listed))
    assert [m['state'] for m in as_json(listed)['migrations']] == ['applied', 'pending']

    check = dbm('--format', 'json', 'migrate', '--check')
    assert check.code == 4
    same_shape(documented['migrate-check'], as_json(check))
    assert as_json(check)['changed'] is False

    migrate = dbm('--format', 'json', 'migrate')
    assert migrate.code == 0
    document = as_json(migrate)
    same_shape(documented['migrate'], document)
    assert document['changed'] is True
    [step] = document['steps']
    assert (step['version'], step['action'], step['outcome']) == ('20200102000000', 'migrate',
                                                                  'ok')
    assert '+CREATE TABLE public.tb (' in step['diff']
    assert 'Running migration 20200102000000 b' in migrate.err

    again = dbm('--format', 'json', 'migrate')
    assert as_json(again)['changed'] is False and as_json(again)['steps'] == []

    mark = dbm('--format', 'json', 'mark', '-d', '20200102000000')
    same_shape(documented['mark'], as_json(mark))

    dbm('mark', '-t', '20200102000000')
    rollback = dbm('--format', 'json', 'rollback')
    same_shape(documented['rollback'], as_json(rollback))
    assert as_json(rollback)['steps'][0]['version'] == '20200102000000'

    error = dbm('--format', 'json', 'rollback', '--steps', '0')
    assert error.code == 2
    same_shape(documented['error'], as_json(error))
    assert as_json(error)['error'] == {'message': '--steps must be 1 or more, not 0',
                                       'exit_code': 2}


def test_json_failure_reports_the_steps_that_ran(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.add('20200102000000', 'broken', '''\
        def up(cursor):
            cursor.execute('SELECT * FROM nowhere')
        ''')
    result = dbm('--format', 'json', 'migrate', '--no-diff')
    assert result.code == 1
    document = as_json(result)
    assert document['changed'] is True
    assert [(s['version'], s['outcome']) for s in document['steps']] == [
        ('20200101000000', 'ok'), ('20200102000000', 'failed')]
    assert 'relation "nowhere" does not exist' in document['error']['message']
    assert 'relation "nowhere" does not exist' in document['steps'][1]['error']


@pytest.mark.parametrize('argv', [['list'], ['migrate', '--dry-run']])
def test_json_stdout_holds_nothing_but_the_document(dbm, migrations, argv):
    migrations.table('20200101000000', 'a', 'ta')
    result = dbm('--format', 'json', *argv)
    assert result.out.startswith('{') and result.out.rstrip().endswith('}')
    json.loads(result.out)


def test_same_migration_shape_on_the_page_and_in_list(dbm, migrations, db):
    from dbmigrator import commands, reports, settings
    migrations.table('20200101000000', 'a', 'ta')
    resolved = settings.resolve(db_connection_string=db.dsn,
                                migrations_directories=[str(migrations.path)])
    assert as_json(dbm('--format', 'json', 'list')) == reports.status_json(
        commands.status(resolved))


def test_a_dry_run_prints_what_the_real_run_prints_in_the_same_order(dbm, migrations, db):
    migrations.table('20200101000000', 'applied_then_edited', 'ta')
    dbm('migrate', '--no-diff')
    with open(str(migrations.path) + '/20200101000000_applied_then_edited.py', 'a') as handle:
        handle.write('\n# edited after it was applied\n')
    migrations.add('20200102000000', 'deferred_one', '''\
        from dbmigrator import deferred


        @deferred
        def up(cursor):
            pass
        ''')
    migrations.never_due('20200103000000', 'never_due')
    migrations.table('20200104000000', 'pending', 'tb')
    dry = dbm('migrate', '--dry-run')
    real = dbm('migrate', '--no-diff')
    assert dry.code == real.code == 0, (dry, real)
    assert dry.err == real.err
    assert 'was changed after it was applied' in dry.err
    assert [line.replace('Would run migration', 'Running migration').replace(' (pending)', '')
            for line in dry.out.splitlines()] == real.out.splitlines()
    assert real.out.splitlines() == [
        'Skipping deferred migration 20200102000000 deferred_one',
        'Skipping migration 20200103000000 never_due: should_run is false',
        'Running migration 20200104000000 pending']


def test_drift_gate_for_ci(dbm, migrations, db):
    import os
    migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')
    assert dbm('migrate', '--no-diff').code == 0
    assert dbm('list', '--strict').code == 0
    assert dbm('migrate', '--check', '--strict').code == 0
    with open(str(migrations.path) + '/20200101000000_a.py', 'a') as handle:
        handle.write('\n# edited\n')
    os.unlink(str(migrations.path) + '/20200102000000_b.py')
    listed = dbm('list')
    assert listed.code == 0  # without --strict drift is only shown
    strict = dbm('list', '--strict')
    assert strict.code == 5, strict
    assert '(changed since applied)' in strict.out
    assert strict.err.splitlines()[-1] == (
        'dbmigrator: error: 2 applied migrations changed since they ran, or a file is missing '
        '(see the warnings above): restore the files, or accept an edit with '
        '"dbmigrator mark -t VERSION"')
    check = dbm('--format', 'json', 'migrate', '--check', '--strict')
    assert check.code == 5, check
    assert json.loads(check.out)['error']['exit_code'] == 5
    assert dbm('mark', '-t', '20200101000000').code == 0
    assert dbm('mark', '-f', '20200102000000').code == 0
    assert dbm('list', '--strict').code == 0

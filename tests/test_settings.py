import os
import subprocess
import sys
import textwrap

import pytest

import dbmigrator
from tests.test_init_list import rows


def write(path, text):
    path.write_text(textwrap.dedent(text), encoding='utf-8')
    return path


def test_version_flag(run):
    result = run('-V')
    assert result.code == 0
    assert result.out.strip() == dbmigrator.__version__


def test_help_lists_commands_and_exit_codes(run):
    result = run('--help')
    assert result.code == 0
    for word in ('generate', 'init', 'list', 'migrate', 'rollback', 'mark',
                 '--db-connection-string', '--migrations-directory', '--context',
                 '--config', '--db-config-ini-key', '--super-user', '--lock-wait',
                 'exit codes'):
        assert word in result.out


def test_ini_with_here_and_relative_directory(run, db, migrations, tmp_path):
    migrations.table('20200101000000', 'a', 'ta')
    ini = write(tmp_path / 'development.ini', '''\
        [DEFAULT]
        dir = migrations
        [app:main]
        db-connection-string = %s
        migrations-directory = %%(here)s/%%(dir)s
        ''' % db.dsn)
    other = tmp_path / 'elsewhere'
    other.mkdir()
    os.chdir(other)
    result = run('--config', ini, 'migrate', '--no-diff')
    assert result.code == 0, result
    assert db.versions() == ['20200101000000']


def test_relative_directory_is_relative_to_the_ini_file(run, db, migrations, tmp_path,
                                                        monkeypatch):
    migrations.table('20200101000000', 'a', 'ta')
    ini = write(tmp_path / 'app.ini', '''\
        [app:main]
        db-connection-string = %s
        migrations-directory = migrations
        ''' % db.dsn)
    monkeypatch.chdir('/')
    assert run(ini, 'migrate').code == 0
    assert db.versions() == ['20200101000000']


def test_named_section_and_positional_config_uri(run, db, migrations, tmp_path):
    migrations.table('20200101000000', 'a', 'ta')
    ini = write(tmp_path / 'app.ini', '''\
        [app:main]
        db-connection-string = postgresql://nobody@/nowhere
        [app:api]
        db-connection-string = %s
        migrations-directory = %s
        ''' % (db.dsn, migrations.path))
    result = run('%s#api' % ini, 'list')
    assert result.code == 0, result
    assert rows(result.out)[0][:3] == ['20200101000000', 'a', 'False']
    result = run('--config', '%s#api' % ini, 'list')
    assert result.code == 0, result


def test_use_config_inheritance(run, db, migrations, tmp_path):
    migrations.table('20200101000000', 'a', 'ta')
    write(tmp_path / 'base.ini', '''\
        [app:base]
        use = egg:dbmigrator
        db-connection-string = %s
        migrations-directory = %s
        ''' % (db.dsn, migrations.path))
    ini = write(tmp_path / 'production.ini', '''\
        [app:main]
        use = config:base.ini#base
        super-user = postgres
        ''')
    result = run(ini, 'migrate')
    assert result.code == 0, result
    assert db.versions() == ['20200101000000']


def test_command_line_beats_ini(run, db, migrations, tmp_path):
    migrations.table('20200101000000', 'a', 'ta')
    ini = write(tmp_path / 'app.ini', '''\
        [app:main]
        db-connection-string = postgresql://nobody@/nowhere
        migrations-directory = /does/not/exist
        ''')
    result = run('--config', ini, '--db-connection-string', db.dsn,
                 '--migrations-directory', migrations.path, 'migrate')
    assert result.code == 0, result


def test_db_config_ini_key_with_sqlalchemy_url(run, db, migrations, tmp_path):
    migrations.table('20200101000000', 'a', 'ta')
    url = db.dsn.replace('postgresql://', 'postgresql+psycopg2://')
    ini = write(tmp_path / 'app.ini', '''\
        [app:main]
        sqlalchemy.url = %s
        migrations-directory = %s
        ''' % (url, migrations.path))
    result = run(ini, '--db-config-ini-key', 'sqlalchemy.url', 'migrate')
    assert result.code == 0, result
    assert db.versions() == ['20200101000000']


def test_options_after_the_command(run, db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    result = run('migrate', '--db-connection-string', db.dsn,
                 '--migrations-directory', migrations.path)
    assert result.code == 0, result


def test_super_user_option_is_used_by_super_user_helper(run, db, migrations):
    db.query('CREATE ROLE helper_role LOGIN')
    migrations.add('20200101000000', 'who', '''\
        from dbmigrator import super_user


        def up(cursor):
            with super_user() as su:
                su.execute('SELECT current_user')
                name = su.fetchone()[0]
            cursor.execute('CREATE TABLE who_ran (name TEXT)')
            cursor.execute('INSERT INTO who_ran VALUES (%s)', (name,))
        ''')
    result = run('--db-connection-string', db.dsn, '--migrations-directory', migrations.path,
                 '--super-user', 'helper_role', 'migrate')
    assert result.code == 0, result
    assert db.query('SELECT name FROM who_ran') == [('helper_role',)]


@pytest.fixture(scope='session')
def context_packages(tmp_path_factory):
    """Two tiny packages with dbmigrator entry points, pip-installed into a folder."""
    source = tmp_path_factory.mktemp('src')
    target = tmp_path_factory.mktemp('site')
    for name, value in (('ctxstring', "migrations_directory = '{}/sql/migrations'.format("
                                      "os.path.abspath(os.path.dirname(__file__)))"),
                        ('ctxcallable', "def migrations_directory():\n    return "
                                        "'{}/sql/migrations'.format("
                                        "os.path.abspath(os.path.dirname(__file__)))")):
        root = source / name
        package = root / name
        (package / 'sql' / 'migrations').mkdir(parents=True)
        (package / '__init__.py').write_text('')
        (package / 'main.py').write_text('import os\n' + value + '\n')
        version = '20200101000000' if name == 'ctxstring' else '20200102000000'
        (package / 'sql' / 'migrations' / ('%s_from_%s.py' % (version, name))).write_text(
            "def up(cursor):\n    cursor.execute('CREATE TABLE %s_table (id INT)')\n" % name)
        (root / 'setup.py').write_text(textwrap.dedent('''\
            from setuptools import setup
            setup(name=%r, version='1.0', packages=[%r],
                  package_data={%r: ['sql/migrations/*.py']},
                  entry_points={'dbmigrator': [
                      'migrations_directory = %s.main:migrations_directory']})
            ''' % (name, name, name, name)))
        subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                        '--target', str(target), str(root)],
                       check=True, capture_output=True)
    return target


def test_contexts_add_up(run, db, context_packages, monkeypatch):
    monkeypatch.syspath_prepend(str(context_packages))
    result = run('--db-connection-string', db.dsn, '--context', 'ctxstring',
                 '--context', 'ctxcallable', 'migrate', '--no-diff')
    assert result.code == 0, result
    assert 'Running migration 20200101000000 from_ctxstring' in result.out
    assert 'Running migration 20200102000000 from_ctxcallable' in result.out
    assert db.table_exists('ctxstring_table') and db.table_exists('ctxcallable_table')


def test_context_defaults_to_current_directory_name(spawn, db, context_packages, tmp_path):
    from tests.conftest import subprocess_env
    here = tmp_path / 'ctxstring'
    here.mkdir()
    env = subprocess_env()
    env['PYTHONPATH'] = str(context_packages) + os.pathsep + env['PYTHONPATH']
    result = spawn('--db-connection-string', db.dsn, 'migrate', cwd=here, env=env)
    assert result.returncode == 0, result.stderr
    assert "using context 'ctxstring'" in result.stderr
    assert db.versions() == ['20200101000000']


def test_unknown_context(run, db):
    result = run('--db-connection-string', db.dsn, '--context', 'no_such_pkg_xyz', 'list')
    assert result.code == 2
    assert "context 'no_such_pkg_xyz' is not an installed package" in result.err


def test_console_script_runs_as_a_process(spawn, db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    result = spawn('--db-connection-string', db.dsn, '--migrations-directory',
                   migrations.path, 'migrate')
    assert result.returncode == 0, result.stderr
    assert 'Running migration 20200101000000 a\n---\n+++\n' in result.stdout
    assert db.versions() == ['20200101000000']


def test_embedded_database_from_ini(spawn, tmp_path, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    ini = write(tmp_path / 'development.ini', '''\
        [app:main]
        db-connection-string = embedded:%(here)s/var/pgdata
        migrations-directory = migrations
        ''')
    first = spawn(ini, 'migrate')
    assert first.returncode == 0, first.stderr
    assert 'Running migration 20200101000000 a' in first.stdout
    assert (tmp_path / 'var' / 'pgdata' / 'PG_VERSION').exists()
    second = spawn(ini, 'list')
    assert second.returncode == 0, second.stderr
    assert rows(second.stdout)[0][:3] == ['20200101000000', 'a', 'True']
    assert not (tmp_path / 'var' / 'pgdata' / 'postmaster.pid').exists()


def test_cli_does_not_import_pyramid():
    from tests.conftest import subprocess_env
    code = ('import sys; from dbmigrator import cli; cli.main(["--help"]); '
            'sys.stderr.write(str(sorted(m for m in sys.modules if m.startswith("pyramid"))))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=subprocess_env())
    assert result.stderr.strip() == '[]'


def test_a_command_names_itself_in_its_errors_and_lists_only_its_own_options(run):
    result = run('rollback', '--steps', 'x')
    assert result.code == 2
    assert result.err.startswith("dbmigrator rollback: error: argument --steps: invalid int "
                                 "value: 'x'"), result
    help_text = run('rollback', '--help').out
    assert help_text.startswith('usage: dbmigrator [options] [CONFIG_URI] rollback '
                                '[rollback options]')
    assert '--steps N' in help_text and '--db-connection-string DSN' not in help_text
    assert 'listed by dbmigrator --help' in help_text
    assert '--db-connection-string' in run('--help').out


def test_a_misspelled_option_names_the_closest(run):
    result = run('--db-connection-string', 'x', 'migrate', '--dry-rn')
    assert result.code == 2
    assert 'unrecognized arguments: --dry-rn: did you mean --dry-run?' in result.err
    assert 'did you mean --lock-timeout?' in run('--lock-timout', '3', 'list').err

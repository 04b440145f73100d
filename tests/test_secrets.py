"""The password of a connection string never appears in any output."""
import subprocess

from tests.conftest import SECRET_PASSWORD, SECRET_USER, subprocess_env


def keyword_dsn(db, password=SECRET_PASSWORD):
    return "host=%s dbname=%s user=%s password='%s'" % (
        db.socket_dir, db.name, SECRET_USER, password)


def test_uri_password_hidden_in_verbose_run_with_diff(run, db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    result = run('-v', '--db-connection-string', db.dsn_for(SECRET_USER, SECRET_PASSWORD),
                 '--migrations-directory', migrations.path, 'migrate')
    assert result.code == 0, result
    assert '+CREATE TABLE public.ta (' in result.out  # pg_dump logged in with the password
    assert SECRET_PASSWORD not in result.output


def test_keyword_password_hidden_in_list_and_errors(run, db, migrations):
    migrations.add('20200101000000', 'leaky', '''\
        def up(cursor):
            cursor.execute('SELECT %%s::int', (%r,))
        ''' % SECRET_PASSWORD)
    for argv in (['list'], ['-v', 'migrate'], ['migrate']):
        result = run('--db-connection-string', keyword_dsn(db),
                     '--migrations-directory', migrations.path, *argv)
        assert SECRET_PASSWORD not in result.output, argv
    assert result.code == 1
    assert 'invalid input syntax for type integer: "***"' in result.err


def test_wrong_password_in_verbose_mode(run, db, migrations):
    migrations.add('20200101000000', 'a')
    result = run('-v', '--db-connection-string', keyword_dsn(db, 'bad-' + SECRET_PASSWORD),
                 '--migrations-directory', migrations.path, 'list')
    assert result.code == 2
    assert 'Traceback' in result.err
    assert SECRET_PASSWORD not in result.output


def test_malformed_uri_with_password(run, migrations):
    migrations.add('20200101000000', 'a')
    result = run('-v', '--db-connection-string',
                 'postgresql://u:%s@localhost:notaport/db' % SECRET_PASSWORD,
                 '--migrations-directory', migrations.path, 'list')
    assert result.code == 2
    assert SECRET_PASSWORD not in result.output


def test_pgpassword_hidden_and_passed_to_pg_dump(db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.add('20200102000000', 'leaky', '''\
        import os


        def up(cursor):
            raise RuntimeError('oops ' + os.environ['PGPASSWORD'])
        ''')
    dsn = 'postgresql://%s@/%s?host=%s' % (SECRET_USER, db.name, db.socket_dir)
    result = subprocess.run(
        ['python', '-m', 'dbmigrator', '-v', '--db-connection-string', dsn,
         '--migrations-directory', str(migrations.path), 'migrate'],
        capture_output=True, text=True, env=subprocess_env(PGPASSWORD=SECRET_PASSWORD))
    assert result.returncode == 1
    assert '+CREATE TABLE public.ta (' in result.stdout
    assert 'RuntimeError: oops ***' in result.stderr
    assert SECRET_PASSWORD not in result.stdout + result.stderr


def test_pg_dump_gets_password_from_environment_only(run, db, migrations, monkeypatch):
    from dbmigrator import schemadiff
    seen = []
    real_run = subprocess.run

    def recording_run(args, **kwargs):
        seen.append((args, kwargs.get('env', {})))
        return real_run(args, **kwargs)
    monkeypatch.setattr(schemadiff.subprocess, 'run', recording_run)
    migrations.table('20200101000000', 'a', 'ta')
    result = run('--db-connection-string', db.dsn_for(SECRET_USER, SECRET_PASSWORD),
                 '--migrations-directory', migrations.path, '--diff-engine', 'pg_dump',
                 'migrate')
    assert result.code == 0
    dumps = [(args, env) for args, env in seen if '--schema-only' in args]
    assert len(dumps) == 2
    for args, env in dumps:
        assert not any(SECRET_PASSWORD in arg for arg in args)
        assert env['PGPASSWORD'] == SECRET_PASSWORD

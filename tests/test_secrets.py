"""The password of a connection string never appears in any output."""
import json
import subprocess

import pytest

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
    real_popen = subprocess.Popen

    def recording_popen(args, **kwargs):
        seen.append((args, kwargs.get('env', {})))
        return real_popen(args, **kwargs)
    monkeypatch.setattr(schemadiff.subprocess, 'Popen', recording_popen)
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


WEAK = [('postgres', 'true'), ('postgres', '1'), ('app', 'app'), ('postgres', 'postgres')]


@pytest.mark.parametrize('user,password', WEAK)
def test_a_weak_password_does_not_corrupt_output(spawn, db, migrations, user, password):
    """Masking is structural: a password that is also a common word, a digit or
    the user's name leaves JSON, versions, keys and diffs as they are."""
    db.query("DO $$BEGIN CREATE ROLE app LOGIN SUPERUSER; "
             "EXCEPTION WHEN duplicate_object THEN NULL; END$$")
    migrations.table('20200101000000', 'a', 'ta')
    dsn = 'postgresql://%s:%s@/%s?host=%s' % (user, password, db.name, db.socket_dir)
    common = ('--db-connection-string', dsn, '--migrations-directory', migrations.path)
    migrated = spawn(*common, '--format', 'json', 'migrate')
    assert migrated.returncode == 0, migrated
    document = json.loads(migrated.stdout)
    assert [s['version'] for s in document['steps']] == ['20200101000000']
    listed = json.loads(spawn(*common, '--format', 'json', 'list').stdout)
    [row] = listed['migrations']
    assert row['atomic'] is True and row['applied_at']
    assert '***' not in migrated.stdout + spawn(*common, '--format', 'json', 'list').stdout
    rolled = spawn(*common, 'rollback')
    assert 'Rolling back migration 20200101000000 a' in rolled.stdout
    assert '-ALTER TABLE public.ta OWNER TO %s;' % user in rolled.stdout
    assert '***' not in rolled.stdout


def test_a_password_in_a_dsn_or_a_password_literal_is_masked_anywhere(spawn, db, migrations):
    migrations.add('20200101000000', 'leaky', '''\
        import logging


        def up(cursor):
            logging.getLogger('dbmigrator').info(
                'copying from postgresql://bob:hunter2@replica/db')
            cursor.execute("ALTER ROLE nobody_here PASSWORD 'swordfish'")
        ''')
    result = spawn('--db-connection-string', db.dsn, '--migrations-directory',
                   migrations.path, '-v', 'migrate')
    assert result.returncode == 1
    assert 'postgresql://bob:***@replica/db' in result.stdout
    assert 'hunter2' not in result.stdout + result.stderr
    assert 'swordfish' not in result.stdout + result.stderr

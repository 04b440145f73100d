"""One run over many databases and schema tenants (--targets)."""
import json
import subprocess
import threading
import time
import uuid

import psycopg2
import pytest

from tests.conftest import Database, dbmigrator_command, subprocess_env

ACCOUNTS = '''\
def up(cursor):
    cursor.execute('CREATE TABLE accounts (id SERIAL PRIMARY KEY)')
    cursor.execute("INSERT INTO applied_log VALUES ('accounts')")


def down(cursor):
    cursor.execute('DROP TABLE accounts')
'''

LOG = '''\
def up(cursor):
    cursor.execute('CREATE TABLE applied_log (what TEXT)')


def down(cursor):
    cursor.execute('DROP TABLE applied_log')
'''

SLEEPY = '''\
def up(cursor):
    cursor.execute('SELECT pg_sleep(%s)')
    cursor.execute('CREATE TABLE slept (id INT)')


def down(cursor):
    cursor.execute('DROP TABLE slept')
'''


class Fleet:
    """Databases and schema tenants on the test server, and an ini naming them."""

    def __init__(self, server, tmp_path, databases, schemas):
        self.server = server
        self.prefix = 'fleet_%s' % uuid.uuid4().hex[:8]
        self.admin = psycopg2.connect(server.get_uri('postgres'))
        self.admin.autocommit = True
        self.databases = ['%s_db%d' % (self.prefix, i) for i in range(databases)]
        self.main = self.prefix + '_main'
        with self.admin.cursor() as cursor:
            for name in self.databases + [self.main]:
                cursor.execute('CREATE DATABASE %s' % name)
        self.schemas = ['tenant_%d' % i for i in range(schemas)]
        self.query(self.main, 'CREATE TABLE tenants (name TEXT, schema TEXT)')
        for schema in self.schemas:
            self.query(self.main, 'CREATE SCHEMA %s' % schema)
            self.query(self.main, 'INSERT INTO tenants VALUES (%s, %s)', (schema, schema))
        self.migrations = tmp_path / 'migrations'
        self.migrations.mkdir()
        self.ini = tmp_path / 'fleet.ini'
        lines = ''.join('\n    db%d %s' % (i, server.get_uri(name))
                        for i, name in enumerate(self.databases))
        self.ini.write_text('[app:main]\nuse = egg:dbmigrator\n'
                            'db-connection-string = %s\nmigrations-directory = migrations\n'
                            'targets =%s\ntargets-query = SELECT name, schema FROM tenants\n'
                            % (server.get_uri(self.main), lines))

    @property
    def names(self):
        return ['db%d' % i for i in range(len(self.databases))] + self.schemas

    def add(self, version, name, body):
        (self.migrations / ('%s_%s.py' % (version, name))).write_text(body)

    def query(self, database, sql, params=None, schema=None):
        return Database(self.server, database).query(sql, params, schema)

    def where(self, name):
        """(database, schema) of a target."""
        if name in self.schemas:
            return self.main, name
        return self.databases[int(name[2:])], None

    def versions(self, name):
        database, schema = self.where(name)
        if not self.query(database, "SELECT to_regclass('schema_migrations') IS NOT NULL",
                          schema=schema)[0][0]:
            return None
        return [v for (v,) in self.query(database, 'SELECT version FROM schema_migrations '
                                         'ORDER BY version', schema=schema)]

    def run(self, *argv, timeout=300):
        return subprocess.run(dbmigrator_command(self.ini, *argv), capture_output=True,
                              text=True, env=subprocess_env(), timeout=timeout,
                              cwd=str(self.ini.parent))

    def start(self, *argv):
        return subprocess.Popen(dbmigrator_command(self.ini, *argv), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                                cwd=str(self.ini.parent))

    def close(self):
        with self.admin.cursor() as cursor:
            for name in self.databases + [self.main]:
                cursor.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
        self.admin.close()


@pytest.fixture
def fleet(server, tmp_path):
    made = []

    def make(databases=10, schemas=6):
        made.append(Fleet(server, tmp_path, databases, schemas))
        return made[-1]
    yield make
    for fleet in made:
        fleet.close()


def test_ten_databases_and_six_schemas_migrate_in_one_run(fleet):
    f = fleet()
    f.add('20200101000000', 'log', LOG)
    f.add('20200102000000', 'accounts', ACCOUNTS)
    done = f.run('init', '--targets', 'all', '--version=0')
    assert done.returncode == 0, done.stderr
    done = f.run('migrate', '--targets', 'all', '--jobs', '6', '--per-server', '6')
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in f.names:
        assert '%s: 2 migrations in' % name in done.stdout
        assert f.versions(name) == ['20200101000000', '20200102000000']
        database, schema = f.where(name)
        assert f.query(database, 'SELECT what FROM applied_log', schema=schema) == [
            ('accounts',)]
    assert lines[-1] == '16 targets: 16 ok (16 changed), 0 failed, 0 not started'
    # Each schema tenant is a state of its own, in its schema; public has none.
    assert f.query(f.main, "SELECT to_regclass('public.schema_migrations')") == [(None,)]
    # Each target's output stays under its own line, never interleaved.
    at = lines.index(next(line for line in lines if line.startswith('tenant_3: ')))
    block = lines[at + 1:at + 4]
    assert block[0] == '    Running migration 20200101000000 log'
    assert all(line.startswith('    ') for line in block)

    again = f.run('migrate', '--targets', 'all', '--format', 'json')
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document['command'] == 'migrate'
    assert document['summary'] == {'ok': 16, 'failed': 0, 'not_started': 0, 'changed': 0}
    tenant = next(t for t in document['targets'] if t['target'] == 'tenant_0')
    assert tenant['schema'] == 'tenant_0' and tenant['outcome'] == 'ok'
    assert tenant['database'].endswith('/' + f.main)
    assert not tenant['changed'] and tenant['error'] is None


def test_selection_by_names_and_globs(fleet):
    f = fleet(databases=3, schemas=2)
    f.add('20200101000000', 'log', LOG)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    done = f.run('migrate', '--targets', 'db1,tenant_*')
    assert done.returncode == 0, done.stderr
    assert f.versions('db1') == f.versions('tenant_0') == f.versions('tenant_1') == [
        '20200101000000']
    assert f.versions('db0') == f.versions('db2') == []
    before = f.run('--targets', 'db2', '--jobs', '1', 'migrate')  # before the command too
    assert before.returncode == 0 and f.versions('db2') == ['20200101000000'], before.stderr
    not_here = f.run('--targets', 'all', 'generate', 'x')
    assert not_here.returncode == 2
    assert not_here.stderr.strip().endswith('lint, not generate')
    wrong = f.run('migrate', '--targets', 'db1,nope')
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == ('dbmigrator: error: --targets db1,nope: no target is '
                                    'named nope; the targets are db0, db1, db2, tenant_0, '
                                    'tenant_1')


def test_a_failing_target_stops_the_rest_or_not(fleet):
    f = fleet(databases=4, schemas=0)
    f.add('20200101000000', 'log', LOG)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    f.query(f.databases[1], 'CREATE TABLE applied_log (x INT)')  # the migration will fail
    stop = f.run('migrate', '--targets', 'all', '--jobs', '1')
    assert stop.returncode == 1
    assert 'db0: 1 migration in' in stop.stdout
    assert 'db1: FAILED Migration 20200101000000 log failed: ' in stop.stdout
    assert 'db2: not started' in stop.stdout and 'db3: not started' in stop.stdout
    assert stop.stdout.splitlines()[-1] == (
        '4 targets: 1 ok (1 changed), 1 failed, 2 not started')
    assert f.versions('db2') == f.versions('db3') == []

    go_on = f.run('migrate', '--targets', 'all', '--jobs', '1', '--on-error', 'continue',
                  '--format', 'json')
    assert go_on.returncode == 1
    document = json.loads(go_on.stdout)
    assert [(t['target'], t['outcome'], t['changed']) for t in document['targets']] == [
        ('db0', 'ok', False), ('db1', 'failed', False), ('db2', 'ok', True),
        ('db3', 'ok', True)]
    assert 'already exists' in document['targets'][1]['error']
    assert document['summary'] == {'ok': 3, 'failed': 1, 'not_started': 0, 'changed': 2}


def test_a_failing_canary_leaves_the_others_untouched(fleet):
    f = fleet(databases=4, schemas=2)
    f.add('20200101000000', 'log', LOG)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    f.query(f.databases[0], 'CREATE TABLE applied_log (x INT)')
    done = f.run('migrate', '--targets', 'all', '--canary', '1', '--on-error', 'continue')
    assert done.returncode == 1
    assert 'db0: FAILED' in done.stdout
    for name in f.names[1:]:
        assert '%s: not started' % name in done.stdout
        assert f.versions(name) == []
    f.query(f.databases[0], 'DROP TABLE applied_log')
    done = f.run('migrate', '--targets', 'all', '--canary', '2')
    assert done.returncode == 0, done.stdout
    assert all(f.versions(name) == ['20200101000000'] for name in f.names)
    # The canaries ran alone, first, one after the other.
    assert [line.split(':')[0] for line in done.stdout.splitlines()
            if ': 1 migration in' in line][:2] == ['db0', 'db1']


def test_per_server_cap_holds_in_pg_stat_activity(fleet, server):
    f = fleet(databases=6, schemas=0)
    f.add('20200101000000', 'sleepy', SLEEPY % 1.5)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    seen, running = [], True

    def sample():
        conn = psycopg2.connect(server.get_uri('postgres'))
        conn.autocommit = True
        with conn.cursor() as cursor:
            while running:
                cursor.execute("SELECT count(DISTINCT datname) FROM pg_stat_activity"
                               " WHERE query LIKE 'SELECT pg_sleep%%' AND datname LIKE %s",
                               (f.prefix + '%',))
                seen.append(cursor.fetchone()[0])
                time.sleep(0.05)
        conn.close()
    watcher = threading.Thread(target=sample)
    watcher.start()
    try:
        done = f.run('migrate', '--targets', 'all', '--jobs', '6', '--per-server', '2')
    finally:
        running = False
        watcher.join()
    assert done.returncode == 0, done.stdout + done.stderr
    assert max(seen) == 2


def test_two_fanout_runs_at_once_apply_each_migration_once(fleet):
    f = fleet(databases=4, schemas=3)
    f.add('20200101000000', 'log', LOG)
    f.add('20200102000000', 'accounts', ACCOUNTS)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    first = f.start('migrate', '--targets', 'all', '--jobs', '4')
    second = f.start('migrate', '--targets', 'all', '--jobs', '4')
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    for name in f.names:
        assert f.versions(name) == ['20200101000000', '20200102000000']
        database, schema = f.where(name)
        assert f.query(database, 'SELECT what FROM applied_log', schema=schema) == [
            ('accounts',)]


def test_schema_tenants_of_one_database_migrate_side_by_side(fleet):
    f = fleet(databases=0, schemas=6)
    f.add('20200101000000', 'sleepy', SLEEPY % 2)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    started = time.monotonic()
    done = f.run('migrate', '--targets', 'all', '--jobs', '6', '--per-server', '6')
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(f.versions(name) == ['20200101000000'] for name in f.names)
    # One after another they would take 12 s of sleeping alone.
    assert took < 9, took


def test_list_shows_a_drift_matrix(fleet):
    f = fleet(databases=3, schemas=1)
    f.add('20200101000000', 'log', LOG)
    f.add('20200102000000', 'accounts', ACCOUNTS)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    assert f.run('migrate', '--targets', 'all').returncode == 0
    f.query(f.databases[2], "DELETE FROM schema_migrations WHERE version = '20200102000000'")
    done = f.run('list', '--targets', 'all')
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows[0] == ['TARGET', 'PENDING', 'NEWEST', 'APPLIED', 'DRIFT']
    assert rows[1] == ['db0', '0', '20200102000000', '-']
    assert rows[3] == ['db2', '1', '20200101000000', 'applied', 'set', 'differs']
    document = json.loads(f.run('list', '--targets', 'all', '--format', 'json').stdout)
    db2 = next(t for t in document['targets'] if t['target'] == 'db2')
    assert (db2['pending'], db2['newest_applied'], db2['drift']) == (
        1, '20200101000000', ['applied set differs'])


def test_only_lock_waits_failing_exits_3(fleet):
    f = fleet(databases=2, schemas=0)
    f.add('20200101000000', 'sleepy', SLEEPY % 6)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    holder = f.start('migrate', '--targets', 'db0')
    deadline = time.monotonic() + 30
    while not f.query(f.databases[0], "SELECT count(*) FROM pg_stat_activity WHERE query "
                      "LIKE 'SELECT pg_sleep%%' AND datname = %s", (f.databases[0],))[0][0]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    waited = f.run('migrate', '--targets', 'db0', '--lock-wait', '0', '--format', 'json')
    holder.communicate(timeout=60)
    assert waited.returncode == 3, waited.stdout + waited.stderr
    target = json.loads(waited.stdout)['targets'][0]
    assert target['outcome'] == 'failed' and 'lock' in target['error']


def test_no_password_in_the_report(fleet, db):
    from tests.conftest import SECRET_PASSWORD, SECRET_USER
    f = fleet(databases=0, schemas=0)
    f.add('20200101000000', 'broken', "def up(cursor):\n    cursor.execute('SELEC 1')\n")
    f.ini.write_text(f.ini.read_text().replace('targets =', 'targets =\n    secret %s'
                                               % db.dsn_for(SECRET_USER, SECRET_PASSWORD)))
    for output in ('text', 'json'):
        done = f.run('migrate', '--targets', 'secret', '--format', output)
        assert done.returncode == 1
        assert 'secret: FAILED' in done.stdout or '"failed"' in done.stdout
        assert SECRET_PASSWORD not in done.stdout + done.stderr


def test_history_over_targets_shows_each_targets_own_table(fleet):
    f = fleet(databases=2, schemas=1)
    f.add('20200101000000', 'log', LOG)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    assert f.run('migrate', '--targets', 'db1').returncode == 0
    done = f.run('history', '--targets', 'db1,tenant_0', '--limit', '5')
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    db1 = lines.index('db1: done')
    assert lines[db1 + 1].split() == ['when', '|', 'action', '|', 'version', '|', 'name', '|',
                                      'outcome', '|', 'duration', '|', 'who']
    assert any('20200101000000' in line and 'log' in line for line in lines[db1:])
    tenant = lines.index('tenant_0: done')
    assert tenant < db1 or not any('20200101000000' in line for line in lines[tenant:db1])


def test_a_schema_targets_diff_shows_its_schema_only(fleet):
    f = fleet(databases=0, schemas=2)
    f.add('20200101000000', 'own', "def up(cursor):\n    cursor.execute('CREATE TABLE mine (id SERIAL PRIMARY KEY)')\n")
    f.add('20200102000000', 'elsewhere', "def up(cursor):\n    cursor.execute('CREATE TABLE public.shared_elsewhere (id INT)')\n")
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    done = f.run('-v', 'migrate', '--targets', 'tenant_0')
    assert done.returncode == 0, done.stderr
    assert '+CREATE TABLE tenant_0.mine (' in done.stdout
    assert 'tenant_1' not in done.stdout.replace('targets', '')
    # The table made outside the schema is not in the schema's diff: pg_dump
    # --schema leaves it out, and the fast path hands that step to pg_dump.
    assert 'shared_elsewhere' not in done.stdout.split('20200102000000 elsewhere')[1]
    assert 'outside schema tenant_0' in done.stdout

"""The README's playbook, run by real ansible-playbook on three local hosts at once."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAYBOOK = os.path.join(ROOT, 'examples', 'ansible', 'migrate.yml')
ANSIBLE = shutil.which('ansible-playbook') or os.path.join(os.path.dirname(sys.executable),
                                                           'ansible-playbook')


@pytest.fixture
def deploy(tmp_path, db, migrations):
    db.query('CREATE TABLE runs (version TEXT)')
    for i in range(5):
        version = '202001010000%02d' % i
        migrations.add(version, 'step_%d' % i, '''\
            def up(cursor):
                cursor.execute("INSERT INTO runs VALUES (%%s)", (%r,))
                cursor.execute('SELECT pg_sleep(0.2)')
            ''' % version)
    ini = tmp_path / 'production.ini'
    ini.write_text('[app:main]\ndb-connection-string = %s\nmigrations-directory = %s\n'
                   % (db.dsn, migrations.path))
    inventory = tmp_path / 'inventory'
    inventory.write_text('[app]\n' + ''.join(
        'web%d ansible_connection=local ansible_python_interpreter=%s\n' % (i, sys.executable)
        for i in range(1, 4)))
    dbm = '%s -m dbmigrator' % sys.executable
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')

    def _deploy(*argv, succeed=True):
        env = subprocess_env(ANSIBLE_FORKS='3',
                             ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_NOCOLOR='1',
                             ANSIBLE_LOCAL_TEMP=str(tmp_path / 'ansible-local'),
                             ANSIBLE_REMOTE_TEMP=str(tmp_path / 'ansible-remote'))
        result = subprocess.run(
            [ANSIBLE, '-i', str(inventory), PLAYBOOK, '--forks', '3',
             '-e', json.dumps({'dbmigrator': dbm, 'dbmigrator_config': str(ini)})] + list(argv),
            capture_output=True, text=True, env=env, timeout=300)
        if not succeed:
            return result
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return recap(result.stdout)
    _deploy.ini = ini
    return _deploy


def recap(out):
    """host -> {'ok': n, 'changed': n, 'failed': n, ...} from the PLAY RECAP."""
    stats = {}
    for host, counts in re.findall(r'^(\S+)\s+:\s+(ok=.*)$', out, re.M):
        stats[host] = {key: int(value) for key, value in re.findall(r'(\w+)=(\d+)', counts)}
    return {'stats': stats}


def changed_hosts(report):
    return sorted(host for host, stats in report['stats'].items() if stats['changed'])


def test_check_mode_reports_pending_everywhere_and_changes_nothing(deploy, db):
    report = deploy('--check')
    assert changed_hosts(report) == ['web1', 'web2', 'web3']
    assert db.query('SELECT count(*) FROM runs') == [(0,)]


def test_one_host_migrates_and_a_second_run_changes_nothing(deploy, db):
    report = deploy()
    assert len(report['stats']) == 3
    assert all(stats['failed'] == 0 and stats['unreachable'] == 0
               for stats in report['stats'].values())
    assert len(changed_hosts(report)) == 1
    assert db.query('SELECT version, count(*) FROM runs GROUP BY version'
                    ' HAVING count(*) <> 1') == []
    assert db.query('SELECT count(*) FROM runs') == [(5,)]
    again = deploy()
    assert changed_hosts(again) == []
    assert db.query('SELECT count(*) FROM runs') == [(5,)]
    assert changed_hosts(deploy('--check')) == []


def test_check_mode_fails_on_an_unsafe_migration_and_changes_nothing(deploy, db, migrations):
    db.query('CREATE TABLE big (id INT); INSERT INTO big SELECT generate_series(1, 500);'
             ' ANALYZE big')
    deploy.ini.write_text(deploy.ini.read_text() + 'lint-big-table-rows = 100\n')
    migrations.add('20200201000000', 'rewrite_big', """\
        def up(cursor):
            cursor.execute('ALTER TABLE big ADD COLUMN u uuid DEFAULT gen_random_uuid()')
        """)
    result = deploy('--check', succeed=False)
    assert result.returncode != 0
    assert 'Lint pending migrations on a scratch copy' in result.stdout
    assert 'table-rewrite' in result.stdout
    assert db.query('SELECT count(*) FROM runs') == [(0,)]
    assert db.columns('big') == ['id']

"""The admin page as a console: background runs, live progress, history, cancel."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import webtest

from dbmigrator import commands, settings as settings_mod
from tests.conftest import Migrations, dbmigrator_command, subprocess_env
from tests.test_web import ADMIN, confirmed, csrf_form, finished, host_app, step_titles

SLOW = '''\
    import os
    import time

    from dbmigrator import logger

    FLAG = %r


    def up(cursor):
        cursor.execute('CREATE TABLE slow_done (id INT)')
        logger.info('backfill started')
        while os.path.exists(FLAG):
            cursor.execute('SELECT pg_sleep(0.2)')
        logger.info('backfill finished')


    def down(cursor):
        cursor.execute('DROP TABLE slow_done')
    '''


@pytest.fixture
def slow(migrations, tmp_path):
    flag = tmp_path / 'keep-running'
    flag.touch()
    migrations.add('20200101000000', 'slow_backfill', SLOW % str(flag))
    return flag


@pytest.fixture
def apps(db, migrations):
    settings = {'db-connection-string': db.dsn, 'migrations-directory': str(migrations.path)}
    return webtest.TestApp(host_app(settings)), webtest.TestApp(host_app(settings))


def wait_json(app, url, until, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        data = app.get(url, headers=ADMIN).json
        if until(data):
            return data
        assert time.monotonic() < deadline, json.dumps(data)
        time.sleep(0.1)


def test_post_returns_at_once_and_another_instance_follows_the_run(apps, db, slow):
    first, second = apps
    started = time.monotonic()
    response = confirmed(csrf_form(first.get('/migrations', headers=ADMIN), '/migrate').submit(
        headers=ADMIN), ADMIN)
    assert time.monotonic() - started < 5
    assert response.status_int == 303 and '/migrations/runs/' in response.location
    run_id = response.location.rsplit('/', 1)[1]
    url = '/migrations/runs/%s.json' % run_id
    data = wait_json(second, url, lambda d: d['output'] == [
        'Running migration 20200101000000 slow_backfill', 'backfill started'])
    assert data['state'] == 'running'
    assert data['current'] == '20200101000000 slow_backfill'
    assert data['who'] == 'admin from None (web)' or data['who'].startswith('admin from ')
    first_elapsed = data['elapsed']
    later = wait_json(second, url, lambda d: d['elapsed'] > first_elapsed + 1)
    assert later['state'] == 'running'
    banner = second.get('/migrations', headers=ADMIN).html.find(id='running')
    text = ' '.join(banner.get_text().split())
    assert 'A run is in progress: admin from' in text
    assert 'running migration 20200101000000 slow_backfill' in text
    assert banner.find('a')['href'].endswith('/migrations/runs/' + run_id)
    page = second.get('/migrations/runs/' + run_id, headers=ADMIN)
    assert page.html.find(id='current').text == '20200101000000 slow_backfill'
    assert 'backfill started' in page.html.find(id='output').text
    slow.unlink()
    done = finished(second, response, ADMIN)
    assert step_titles(done)[0].startswith('ok migrate 20200101000000 slow_backfill')
    assert '+CREATE TABLE public.slow_done (' in done.text
    assert 'backfill finished' in done.html.find(class_='output').text
    assert db.versions() == ['20200101000000']


def test_history_view_and_run_json(apps, db, migrations):
    app, _ = apps
    migrations.table('20200101000000', 'users', 'users')
    migrations.add('20200102000000', 'broken', '''\
        def up(cursor):
            cursor.execute('SELECT * FROM nowhere')
        ''')
    run = finished(app, csrf_form(app.get('/migrations', headers=ADMIN), '/migrate').submit(
        headers=ADMIN), ADMIN)
    assert 'relation "nowhere" does not exist' in run.html.find(class_='error').text
    history = app.get('/migrations/history', headers=ADMIN)
    [row] = history.html.select('table.runs tbody tr')
    assert 'failed' in row.text and '20200101000000' in row.text
    run_id = row['id'][len('run-'):]
    data = app.get('/migrations/runs/%s.json' % run_id, headers=ADMIN).json
    assert data['state'] == 'failed' and data['action'] == 'migrate'
    assert [(s['version'], s['outcome']) for s in data['steps']] == [
        ('20200101000000', 'ok'), ('20200102000000', 'failed')]
    assert '+CREATE TABLE public.users (' in data['steps'][0]['diff']
    by_version = app.get('/migrations/history?version=20200101000000', headers=ADMIN)
    assert step_titles(by_version)[0].startswith('ok migrate 20200101000000 users')
    status = app.get('/migrations', headers=ADMIN)
    link = status.html.find(id='migration-20200101000000').find(class_='history-link')
    assert link['href'].endswith('/migrations/history?version=20200101000000')
    app.get('/migrations/runs/nope', headers=ADMIN, status=404)
    app.get('/migrations/source/20990101000000', headers=ADMIN, status=404)
    source = app.get('/migrations/source/20200102000000', headers=ADMIN)
    assert "SELECT * FROM nowhere" in source.html.find(id='source').text


def test_cli_run_is_shown_on_the_page(apps, db, migrations, slow):
    app, _ = apps
    proc = subprocess.Popen(dbmigrator_command('--db-connection-string', db.dsn,
                                               '--migrations-directory', migrations.path,
                                               'migrate', '--no-diff'),
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        data = wait_json(app, '/migrations/status.json', lambda d: True)
        deadline = time.monotonic() + 30
        while True:
            banner = app.get('/migrations', headers=ADMIN).html.find(id='running')
            if banner and 'slow_backfill' in banner.text:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert ' pid %d' % proc.pid in banner.text
        assert data is not None
    finally:
        slow.unlink()
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_cancel_needs_permission_and_csrf_and_interrupts(apps, db, slow):
    app, _ = apps
    response = confirmed(csrf_form(app.get('/migrations', headers=ADMIN), '/migrate').submit(
        headers=ADMIN), ADMIN)
    run_id = response.location.rsplit('/', 1)[1]
    url = '/migrations/runs/%s.json' % run_id
    wait_json(app, url, lambda d: 'backfill started' in d['output'])
    page = app.get('/migrations/runs/' + run_id, headers=ADMIN)
    cancel = csrf_form(page, '/cancel')
    app.post('/migrations/runs/%s/cancel' % run_id, {}, headers=ADMIN, status=400)
    app.post('/migrations/runs/%s/cancel' % run_id,
             {'csrf_token': cancel['csrf_token'].value}, headers={'X-User': 'bob'}, status=403)
    assert app.get(url, headers=ADMIN).json['state'] == 'running'
    review = cancel.submit(headers=ADMIN, status=200)
    assert 'Migration 20200101000000 slow_backfill is running' in ' '.join(
        review.html.find('main').text.split())
    assert app.get(url, headers=ADMIN).json['state'] == 'running'
    confirmed(review, ADMIN)
    data = wait_json(app, url, lambda d: d['state'] not in ('running', 'waiting'))
    assert data["state"] == "interrupted", json.dumps(data)
    [step] = data['steps']
    assert step['outcome'] == 'interrupted'
    assert 'cancelled and rolled back' in step['error']
    assert not db.table_exists('slow_done') and db.versions() == []
    app.post('/migrations/runs/%s/cancel' % run_id, {'csrf_token': cancel['csrf_token'].value,
                                                    'confirm': 'yes'},
             headers=ADMIN, status=409)


def test_two_runs_in_one_process_against_two_databases(server, tmp_path):
    import psycopg2
    import uuid
    admin = psycopg2.connect(server.get_uri('postgres'))
    admin.autocommit = True
    names = ['twin_%s' % uuid.uuid4().hex[:8] for _ in range(2)]
    resolved, barrier = [], threading.Barrier(2)
    for name in names:
        with admin.cursor() as cursor:
            cursor.execute('CREATE DATABASE %s' % name)
        folder = Migrations(tmp_path / name)
        folder.add('20200101000000', 'check', '''\
            import time

            from dbmigrator import super_user


            def up(cursor):
                for _ in range(5):
                    with super_user() as su:
                        su.execute('SELECT current_database()')
                        assert su.fetchone()[0] == %r, 'super_user() reached another database'
                    time.sleep(0.05)
                cursor.execute('CREATE TABLE checked (id INT)')
            ''' % name)
        resolved.append(settings_mod.resolve(db_connection_string=server.get_uri(name),
                                             migrations_directories=[str(folder.path)]))
    errors = []

    def run(settings):
        barrier.wait()
        try:
            commands.migrate(settings, diff=False)
        except Exception as exc:
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(s,)) for s in resolved]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        for name in names:
            conn = psycopg2.connect(server.get_uri(name))
            with conn.cursor() as cursor:
                cursor.execute("SELECT to_regclass('checked') IS NOT NULL")
                assert cursor.fetchone()[0]
            conn.close()
    finally:
        with admin.cursor() as cursor:
            for name in names:
                cursor.execute('DROP DATABASE %s WITH (FORCE)' % name)
        admin.close()


def test_pserve_sigterm_stops_the_embedded_server(tmp_path, migrations):
    migrations.table('20200101000000', 'users', 'users')
    pgdata = tmp_path / 'pgdata'
    port = free_port()
    ini = tmp_path / 'app.ini'
    ini.write_text('[app:main]\nuse = egg:dbmigrator\ndb-connection-string = embedded:%s\n'
                   'migrations-directory = %s\n\n[server:main]\nuse = egg:waitress#main\n'
                   'listen = 127.0.0.1:%d\n' % (pgdata, migrations.path, port))
    pserve = os.path.join(os.path.dirname(sys.executable), 'pserve')
    proc = subprocess.Popen([pserve, str(ini)], env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                body = urllib.request.urlopen('http://127.0.0.1:%d/migrations' % port,
                                              timeout=5).read().decode()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert 'users' in body
        pid_file = pgdata / 'postmaster.pid'
        postmaster = int(pid_file.read_text().split()[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while pid_alive(postmaster):
        assert time.monotonic() < deadline, 'the embedded PostgreSQL is still running'
        time.sleep(0.1)
    assert not pid_file.exists()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]

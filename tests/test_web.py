"""The add-on's pages and actions, through WebTest, in a host app and standalone."""
import base64
import json
import re
import time

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.security import Allowed, Denied
from pyramid.session import SignedCookieSessionFactory

import dbmigrator
from dbmigrator.passwords import hash_password
from tests.conftest import SECRET_PASSWORD, SECRET_USER

ADMIN_PASSWORD = 'correct horse battery staple'


class HeaderPolicy:
    """The host's own security policy: X-User names the user; 'admin' may migrate."""

    def identity(self, request):
        return request.headers.get('X-User')

    def authenticated_userid(self, request):
        return self.identity(request)

    def permits(self, request, context, permission):
        user = self.identity(request)
        if permission == 'dbmigrator.admin' and user == 'admin':
            return Allowed('admin')
        return Denied('not admin')

    def remember(self, request, userid, **kw):
        return []

    def forget(self, request, **kw):
        return []


def secure_host(config):
    config.set_security_policy(HeaderPolicy())
    config.set_session_factory(SignedCookieSessionFactory('host-secret'))


def host_app(settings, **include):
    with Configurator(settings=settings) as config:
        secure_host(config)
        config.include('dbmigrator', **include)
        return config.make_wsgi_app()


@pytest.fixture
def settings(db, migrations):
    migrations.table('20200101000000', 'create_users', 'users')
    migrations.add('20200102000000', 'add_karen_to_users', '''\
        def up(cursor):
            cursor.execute('ALTER TABLE users ADD COLUMN karen TEXT')


        def down(cursor):
            cursor.execute('ALTER TABLE users DROP COLUMN karen')
        ''')
    return {'db-connection-string': db.dsn_for(SECRET_USER, SECRET_PASSWORD),
            'migrations-directory': str(migrations.path)}


@pytest.fixture
def app(settings, db):
    return webtest.TestApp(host_app(settings))


ADMIN = {'X-User': 'admin'}


def csrf_form(page, action):
    return next(f for f in page.forms.values() if f.action.endswith(action))


def confirmed(response, headers=None, **fields):
    """Past an action's confirmation step: submit the form it shows."""
    if response.status_int != 200:
        return response
    form = next(f for f in response.forms.values() if 'confirm' in f.fields)
    for name, value in fields.items():
        form[name] = value
    return form.submit(headers=headers)


def finished(app, response, headers=None, timeout=60):
    """Follow a started run (past its confirmation) to its page and wait there until it
    is over."""
    response = confirmed(response, headers)
    assert response.status_int == 303, response
    page = response.follow(headers=headers)
    url = page.html.find(id='run')['data-json']
    deadline = time.monotonic() + timeout
    while app.get(url, headers=headers).json['state'] in ('running', 'waiting'):
        assert time.monotonic() < deadline, 'the run did not finish'
        time.sleep(0.1)
    return app.get(response.location, headers=headers)


def step_titles(page):
    return [' '.join(h.get_text().split()) for h in page.html.select('section.step h2')]


def test_status_page_shows_database_counts_and_table(app, db):
    page = app.get('/migrations', headers=ADMIN)
    assert page.content_type == 'text/html'
    assert db.name in page.html.find(class_='database').text
    assert page.html.find(id='count-pending').text == '2'
    assert page.html.find(id='count-applied').text == '0'
    row = page.html.find(id='migration-20200102000000')
    assert 'state-pending' in row['class']
    assert 'add_karen_to_users' in row.text
    assert 'dbmigrator.css' in page.text
    assert app.get('/migrations/dbmigrator.css', headers=ADMIN).content_type == 'text/css'


def test_get_requests_never_run_migration_code(settings, migrations, tmp_path):
    """Importing a migration runs its module-level code: pages only read files."""
    marker = tmp_path / 'imported'
    migrations.add('20200103000000', 'side_effect', '''\
        import pathlib
        from dbmigrator import deferred
        pathlib.Path(%r).write_text('imported')
        atomic = False


        def should_run(cursor):
            return True


        @deferred
        def up(cursor):
            pass
        ''' % str(marker))
    anonymous = standalone(settings)
    admin = webtest.TestApp(host_app(settings))
    for app, headers in ((anonymous, {}), (admin, ADMIN)):
        for url in ('/migrations', '/migrations/status.json', '/migrations/history',
                    '/migrations/source/20200103000000'):
            app.get(url, headers=headers)
    assert not marker.exists()
    [row] = [m for m in anonymous.get('/migrations/status.json').json['migrations']
             if m['version'] == '20200103000000']
    assert (row['state'], row['repeat'], row['atomic']) == ('deferred', True, False)


def test_status_json(app, db):
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             " applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP); INSERT INTO schema_migrations"
             " VALUES ('20200101000000', '2020-05-01T10:00:00+00:00')")
    data = app.get('/migrations/status.json', headers=ADMIN).json
    assert data['pending'] == 1
    assert db.name in data['database']
    first, second = data['migrations']
    assert first == {'version': '20200101000000', 'name': 'create_users', 'state': 'applied',
                     'repeat': False, 'applied_at': '2020-05-01T10:00:00+00:00',
                     'changed': False, 'missing': False, 'out_of_order': False,
                     'atomic': True}
    assert second['state'] == 'pending' and second['applied_at'] is None


def test_post_without_csrf_token_is_400(app, db):
    app.post('/migrations/migrate', {}, headers=ADMIN, status=400)
    assert not db.table_exists('users')


def test_post_without_permission_is_403(app, db):
    page = app.get('/migrations', headers=ADMIN)
    token = csrf_form(page, '/migrate')['csrf_token'].value
    app.post('/migrations/migrate', {'csrf_token': token}, status=403)
    app.post('/migrations/migrate', {'csrf_token': token}, headers={'X-User': 'bob'},
             status=403)
    assert not db.table_exists('users')


def test_anonymous_cannot_see_the_page_of_a_host_app(app):
    app.get('/migrations', status=403)
    app.get('/migrations/status.json', status=403)


def test_get_never_changes_anything(app, db):
    for url in ('/migrations/migrate', '/migrations/rollback', '/migrations/mark'):
        app.get(url, headers=ADMIN, status=404)
    assert not db.table_exists('users')


def test_migrate_from_the_page_shows_the_diff(app, db):
    page = app.get('/migrations', headers=ADMIN)
    result = finished(app, csrf_form(page, '/migrate').submit(headers=ADMIN), ADMIN)
    assert result.status_int == 200
    assert db.versions() == ['20200101000000', '20200102000000']
    assert 'karen' in db.columns('users')
    text = result.html.get_text()
    assert step_titles(result)[0].startswith('ok migrate 20200101000000 create_users')
    assert result.html.find(id='run-result').text == 'Done: 2 steps.'
    assert '+    karen text' in text
    assert SECRET_PASSWORD not in result.text


def test_migrate_up_to_version_and_with_deferred(app, db, migrations):
    migrations.add('20200103000000', 'later', '''\
        from dbmigrator import deferred


        @deferred
        def up(cursor):
            cursor.execute('CREATE TABLE later (id INT)')
        ''')
    page = app.get('/migrations', headers=ADMIN)
    form = csrf_form(page, '/migrate')
    form['version'] = '20200101000000'
    finished(app, form.submit(headers=ADMIN), ADMIN)
    assert db.versions() == ['20200101000000']
    form = csrf_form(app.get('/migrations', headers=ADMIN), '/migrate')
    form['run_deferred'] = True
    finished(app, form.submit(headers=ADMIN), ADMIN)
    assert db.table_exists('later')


def test_failed_migration_is_shown_in_full(app, db, migrations):
    migrations.add('20200103000000', 'broken', '''\
        def up(cursor):
            cursor.execute('SELECT * FROM no_such_table')
        ''')
    result = finished(app, csrf_form(app.get('/migrations', headers=ADMIN), '/migrate').submit(
        headers=ADMIN), ADMIN)
    error = result.html.find(class_='error').text
    assert 'Migration 20200103000000 broken failed' in error
    assert 'relation "no_such_table" does not exist' in error
    assert '+    karen text' in result.text
    assert db.versions() == ['20200101000000', '20200102000000']


def test_rollback_needs_confirmation(app, db):
    finished(app, csrf_form(app.get('/migrations', headers=ADMIN), '/migrate').submit(
        headers=ADMIN), ADMIN)
    page = app.get('/migrations', headers=ADMIN)
    form = csrf_form(page, '/rollback')
    form['steps'] = '1'
    confirm = form.submit(headers=ADMIN)
    assert 'add_karen_to_users' in confirm.html.find(class_='targets').text
    assert db.versions() == ['20200101000000', '20200102000000']
    result = finished(app, csrf_form(confirm, '/rollback').submit(headers=ADMIN), ADMIN)
    assert db.versions() == ['20200101000000'], ' '.join(result.html.get_text().split())[-1500:]
    assert '-    karen text' in result.text
    assert step_titles(result)[0].startswith('ok rollback 20200102000000 add_karen_to_users')


def test_mark_from_the_page(app, db):
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
    form = csrf_form(app.get('/migrations', headers=ADMIN), '/mark')
    form['version'] = '20200102000000'
    form['state'] = 'deferred'
    review = form.submit(headers=ADMIN)
    assert 'Migration 20200102000000 will be marked as deferred' in ' '.join(
        review.html.find('main').text.split())
    assert db.query('SELECT count(*) FROM schema_migrations') == [(0,)]
    result = confirmed(review, ADMIN)
    assert 'Done.' in result.text
    assert db.query('SELECT version, applied FROM schema_migrations') == [
        ('20200102000000', None)]
    token = form['csrf_token'].value
    bad = app.post('/migrations/mark', {'csrf_token': token, 'version': '20990101000000',
                                        'state': 'completed', 'confirm': 'yes'}, headers=ADMIN)
    assert 'unknown migration version 20990101000000' in bad.text


def test_names_are_escaped(app, migrations):
    migrations.table('20200103000000', '<script>alert(1)<.script>', 'xss')
    page = app.get('/migrations', headers=ADMIN)
    assert '<script>alert' not in page.text
    assert '&lt;script&gt;alert(1)&lt;.script&gt;' in page.text
    result = finished(app, csrf_form(page, '/migrate').submit(headers=ADMIN), ADMIN)
    assert '<script>alert' not in result.text
    assert '&lt;script&gt;' in result.text
    source = app.get('/migrations/source/20200103000000', headers=ADMIN)
    assert '<script>alert' not in source.text


def test_password_never_rendered(app, db):
    for url in ('/migrations', '/migrations/status.json'):
        assert SECRET_PASSWORD not in app.get(url, headers=ADMIN).text


def test_route_prefix_from_include(settings):
    app = webtest.TestApp(host_app(settings, route_prefix='/admin/db'))
    page = app.get('/admin/db', headers=ADMIN)
    assert page.html.find(id='count-pending').text == '2'
    assert app.get('/admin/db/status.json', headers=ADMIN).json['pending'] == 2
    app.get('/migrations', headers=ADMIN, status=404)


def test_settings_are_coerced_and_written_back(settings):
    settings = dict(settings, **{'dbmigrator.route_prefix': '/ops/migrations',
                                 'dbmigrator.permission': 'ops',
                                 'dbmigrator.lock_wait': '2',
                                 'dbmigrator.schema_diff': 'off',
                                 'migrations-directory': settings['migrations-directory'] + '\n'})
    with Configurator(settings=settings) as config:
        secure_host(config)
        config.include('dbmigrator')
        registry = config.registry
    coerced = registry.settings
    assert coerced['dbmigrator.lock_wait'] == 2.0
    assert coerced['dbmigrator.schema_diff'] is False
    assert coerced['dbmigrator.view_permission'] == 'ops'
    assert coerced['migrations-directory'] == [settings['migrations-directory'].strip()]
    assert registry['dbmigrator.settings'].lock_wait == 2.0


def test_add_on_reads_the_production_settings(settings):
    for keys in ({'dbmigrator.lock_timeout': '2.5', 'dbmigrator.lock_retries': '1',
                  'dbmigrator.statement_timeout': '30', 'dbmigrator.pooler': 'session'},
                 {'lock-timeout': '2.5', 'lock-retries': '1', 'statement-timeout': '30',
                  'pooler': 'session'}):
        with Configurator(settings=dict(settings, **keys)) as config:
            secure_host(config)
            config.include('dbmigrator')
            resolved = config.registry['dbmigrator.settings']
        assert (resolved.lock_timeout, resolved.lock_retries, resolved.statement_timeout,
                resolved.pooler) == (2.5, 1, 30, 'session')


def standalone(settings, password_hash=None):
    if password_hash:
        settings = dict(settings, **{'dbmigrator.admin_password_hash': password_hash})
    return webtest.TestApp(dbmigrator.main({'here': '/'}, **settings))


def test_standalone_without_password_is_read_only(settings, db):
    app = standalone(settings)
    assert app.get('/').location.endswith('/migrations')
    page = app.get('/migrations')
    assert page.html.find(id='count-pending').text == '2'
    assert not page.forms
    assert app.get('/migrations/status.json').json['pending'] == 2
    app.post('/migrations/migrate', {}, status=403)
    login = app.get('/migrations/login')
    assert 'read-only' in login.text
    assert not db.table_exists('users')
    assert page.html.find(id='read-only').text.startswith('Read-only: log in with the admin '
                                                          'password to migrate')
    assert login.html.h1.text == 'Log in to %s' % page.html.find(class_='database').text


class ViewerPolicy(HeaderPolicy):
    """Anyone may look ('dbmigrator.view'); only admin may change."""

    def permits(self, request, context, permission):
        if permission == 'dbmigrator.view':
            return Allowed('anyone may look')
        return super().permits(request, context, permission)


def test_a_host_app_user_without_the_permission_is_told_why_it_is_read_only(settings):
    with Configurator(settings=dict(settings, **{'dbmigrator.view_permission':
                                                 'dbmigrator.view'})) as config:
        config.set_security_policy(ViewerPolicy())
        config.set_session_factory(SignedCookieSessionFactory('host-secret'))
        config.include('dbmigrator')
        app = webtest.TestApp(config.make_wsgi_app())
    page = app.get('/migrations', headers={'X-User': 'viewer'})
    assert ('need the dbmigrator.admin permission (dbmigrator.permission), which this '
            'account does not have') in ' '.join(page.html.find(id='read-only').text.split())
    assert app.get('/migrations', headers=ADMIN).html.find(id='read-only') is None


def test_standalone_basic_auth(settings, db):
    app = standalone(settings, hash_password(ADMIN_PASSWORD))
    page = app.get('/migrations')
    assert not page.forms
    good = {'Authorization': 'Basic ' + base64.b64encode(
        b'admin:' + ADMIN_PASSWORD.encode()).decode()}
    bad = {'Authorization': 'Basic ' + base64.b64encode(b'admin:nope').decode()}
    page = app.get('/migrations', headers=good)
    form = csrf_form(page, '/migrate')
    app.post('/migrations/migrate', {'csrf_token': form['csrf_token'].value}, headers=bad,
             status=403)
    assert not db.table_exists('users')
    finished(app, form.submit(headers=good), good)
    assert db.versions() == ['20200101000000', '20200102000000']


def test_standalone_login_form(settings, db):
    app = standalone(settings, hash_password(ADMIN_PASSWORD))
    login = app.get('/migrations/login')
    form = login.forms[0]
    form['password'] = 'wrong'
    assert 'Wrong password' in form.submit(status=403).text
    form = app.get('/migrations/login').forms[0]
    form['password'] = ADMIN_PASSWORD
    page = form.submit(status=303).follow()
    assert 'signed in as admin' in ' '.join(page.html.get_text().split())
    finished(app, csrf_form(page, '/migrate').submit())
    assert db.versions() == ['20200101000000', '20200102000000']
    page = app.get('/migrations')
    csrf_form(page, '/logout').submit(status=303)
    assert not app.get('/migrations').html.find(action=re.compile('/migrate$'))
    assert ADMIN_PASSWORD not in page.text


def test_hash_password_command(run, monkeypatch):
    import io
    from dbmigrator.passwords import check_password
    monkeypatch.setattr('sys.stdin', io.StringIO(ADMIN_PASSWORD + '\n' + ADMIN_PASSWORD + '\n'))
    result = run('hash-password')
    assert result.code == 0
    encoded = result.out.strip()
    assert encoded.startswith('pbkdf2_sha256$')
    assert ADMIN_PASSWORD not in encoded
    assert check_password(ADMIN_PASSWORD, encoded)
    assert not check_password('other', encoded)


@pytest.mark.parametrize('given, message', [
    ('a\nb\n', 'the passwords do not match; nothing was printed'),
    ('only-once\n', 'hash-password reads the password twice, one line each, and stdin gave '
                     'one line'),
    ('\n\n', 'the password is empty; nothing was printed'),
])
def test_hash_password_on_stdin_is_checked_twice(run, monkeypatch, given, message):
    import io
    monkeypatch.setattr('sys.stdin', io.StringIO(given))
    result = run('hash-password')
    assert result.code == 2, result
    assert result.out == ''
    assert message in result.err


def test_status_json_is_valid_json_for_uninitialized_database(app):
    data = json.loads(app.get('/migrations/status.json', headers=ADMIN).text)
    assert data['initialized'] is False
    assert data['pending'] == 2


def test_connection_string_from_another_settings_key(settings, db):
    settings = {'sqlalchemy.url': settings['db-connection-string'].replace(
        'postgresql://', 'postgresql+psycopg2://'), 'db-config-ini-key': 'sqlalchemy.url',
        'migrations-directory': settings['migrations-directory']}
    app = webtest.TestApp(host_app(settings))
    assert app.get('/migrations/status.json', headers=ADMIN).json['pending'] == 2


def test_action_while_another_run_holds_the_lock(settings, db):
    from tests.test_reliability import held_by, hold_lock
    app = webtest.TestApp(host_app(dict(settings, **{'dbmigrator.lock_wait': '0'})))
    page = app.get('/migrations', headers=ADMIN)
    holder, pid = hold_lock(db)
    try:
        result = finished(app, csrf_form(page, '/migrate').submit(headers=ADMIN), ADMIN)
    finally:
        holder.close()
    assert held_by(pid) in result.html.find(id='run-error').text
    assert not db.table_exists('users')


def test_out_of_order_and_non_atomic_on_the_page(app, db, migrations):
    db.query('CREATE TABLE users (id INT)')
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             " applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP); INSERT INTO schema_migrations"
             " VALUES ('20200102000000')")
    migrations.add('20200103000000', 'concurrent_index', '''\
        atomic = False


        def up(cursor):
            cursor.execute('CREATE INDEX CONCURRENTLY IF NOT EXISTS users_id ON users (id)')
        ''')
    page = app.get('/migrations', headers=ADMIN)
    warnings = [p.text for p in page.html.find_all(class_='warning')]
    assert ('Warning: migration 20200101000000 create_users is older than the newest applied '
            'migration 20200102000000') in warnings
    row = page.html.find(id='migration-20200103000000')
    assert row.find(class_='nonatomic').text == 'non-atomic'
    data = app.get('/migrations/status.json', headers=ADMIN).json
    assert data['warnings'] == warnings[:1]


def checked(app, page, timeout=60):
    """Start "Check safety" from ``page`` and wait on the check's page until it is over."""
    started = csrf_form(page, '/check').submit(headers=ADMIN)
    assert started.status_int == 303
    deadline = time.monotonic() + timeout
    check = started.follow(headers=ADMIN)
    while check.html.find(id='check')['data-state'] == 'running':
        assert time.monotonic() < deadline, 'the check did not finish'
        time.sleep(0.2)
        check = app.get(started.location, headers=ADMIN)
    return check


def test_check_safety_shows_findings_and_migrate_then_needs_a_confirmation(app, db, migrations):
    db.query('CREATE TABLE big (id INT); INSERT INTO big SELECT generate_series(1, 300);'
             ' ANALYZE big; CREATE TABLE schema_migrations (version TEXT, applied TIMESTAMPTZ)')
    migrations.add('20200103000000', 'index_big', '''\
        def up(cursor):
            cursor.execute('CREATE INDEX big_id ON big (id)')
        ''')
    page = app.get('/migrations', headers=ADMIN)
    assert 'last-check' not in page.text
    check = checked(app, page)
    assert check.html.find(id='check')['data-state'] == 'done', check.text
    rows = check.html.find(id='findings').find_all('tr')[1:]
    assert [r.find_all('td')[1].get_text() for r in rows] == ['blocking-index']
    # 300 rows: below the default threshold, so a warning, and migrating needs no confirmation
    assert rows[0].find_all('td')[0].get_text() == 'warning'
    assert 'CREATE INDEX big_id ON big (id)' in check.text
    assert '+CREATE INDEX big_id ON public.big' in check.text
    assert not db.table_exists('users')  # the check changed nothing here


def test_an_error_finding_makes_migrate_ask_for_a_confirmation(settings, db, migrations):
    db.query('CREATE TABLE big (id INT); INSERT INTO big SELECT generate_series(1, 300);'
             ' ANALYZE big; CREATE TABLE schema_migrations (version TEXT, applied TIMESTAMPTZ)')
    migrations.add('20200103000000', 'rewrite_big', '''\
        def up(cursor):
            cursor.execute('ALTER TABLE big ADD COLUMN u uuid DEFAULT gen_random_uuid()')
        ''')
    app = webtest.TestApp(host_app(dict(settings, **{'dbmigrator.lint_big_table_rows': '100'})))
    checked(app, app.get('/migrations', headers=ADMIN))
    page = app.get('/migrations', headers=ADMIN)
    assert 'table-rewrite on public.big (20200103000000)' in page.html.find(id='unsafe').text
    review = csrf_form(page, '/migrate').submit(headers=ADMIN)
    assert 'table-rewrite on public.big (20200103000000)' in review.html.find(id='unsafe').text
    form = next(f for f in review.forms.values() if 'confirm' in f.fields)
    refused = app.post('/migrations/migrate', {'csrf_token': form['csrf_token'].value,
                                              'confirm': 'yes'}, headers=ADMIN, status=409)
    assert 'the last safety check found 1 error finding:' in refused.text
    assert db.versions() == []
    form['confirm_unsafe'] = 'yes'
    done = finished(app, form.submit(headers=ADMIN), headers=ADMIN)
    assert 'ok' in done.html.find(id='run-state').text
    assert 'u' in db.columns('big')


def test_the_run_page_shows_the_locks_a_migration_holds_and_who_waits(app, db, migrations):
    import threading
    import psycopg2
    db.query('CREATE TABLE big (id INT); INSERT INTO big VALUES (1);'
             ' CREATE TABLE schema_migrations (version TEXT, applied TIMESTAMPTZ)')
    migrations.add('20200103000000', 'hold_big', '''\
        def up(cursor):
            cursor.execute('LOCK TABLE big IN ACCESS EXCLUSIVE MODE')
            cursor.execute('SELECT pg_sleep(6)')
        ''')
    started = confirmed(csrf_form(app.get('/migrations', headers=ADMIN), '/migrate').submit(
        headers=ADMIN), ADMIN)
    url = started.follow(headers=ADMIN).html.find(id='run')['data-json']
    deadline = time.monotonic() + 30
    while 'AccessExclusiveLock on public.big' not in app.get(url, headers=ADMIN).json['holding']:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    reader = threading.Thread(target=lambda: db.query('SELECT count(*) FROM big'))
    reader.start()
    while '1 session waiting' not in app.get(url, headers=ADMIN).json['holding']:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page = app.get(started.location, headers=ADMIN)
    assert 'Holds AccessExclusiveLock on public.big; 1 session waiting on it' in (
        page.html.find(id='holding').text)
    # The lease names the running migration within a heartbeat.
    while 'hold_big' not in app.get('/migrations', headers=ADMIN).html.find(id='running').text:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status = app.get('/migrations', headers=ADMIN)
    row = status.html.find(id='migration-20200103000000')
    assert row.find(class_='badge').text == 'running'
    assert status.html.find('fieldset', class_='actions-fieldset').has_attr('disabled')
    assert status.html.find('meta', attrs={'http-equiv': 'refresh'}) is not None
    reader.join(30)
    finished(app, started, headers=ADMIN)

"""The admin pages as an attacker meets them: forged cookies, open add-ons,
guessed passwords, framing, forged hosts and odd form values."""
import base64

import pytest
import webtest
from pyramid.authentication import AuthTktCookieHelper
from pyramid.config import Configurator
from pyramid.csrf import CookieCSRFStoragePolicy
from pyramid.exceptions import ConfigurationError
from pyramid.session import SignedCookieSessionFactory

from dbmigrator.passwords import hash_password
from dbmigrator.web import app as app_module
from tests.test_web import (ADMIN, ADMIN_PASSWORD, HeaderPolicy, app, csrf_form,  # noqa: F401
                            finished, host_app, settings, standalone)


def basic(password, user='admin'):
    return {'Authorization': 'Basic ' + base64.b64encode(
        ('%s:%s' % (user, password)).encode()).decode()}


def logged_in(app):
    form = app.get('/migrations/login').forms[0]
    form['password'] = ADMIN_PASSWORD
    return form.submit(status=303)


def test_a_cookie_forged_from_the_password_hash_is_refused(settings, db):
    password_hash = hash_password(ADMIN_PASSWORD)
    app = standalone(settings, password_hash)
    csrf = app.get('/migrations/login').forms[0]['csrf_token'].value
    forger = AuthTktCookieHelper(secret='dbmigrator-login:' + password_hash,
                                 cookie_name='dbmigrator_auth', hashalg='sha512')
    request = webtest.TestRequest.blank('http://localhost/')
    [(_, cookie)] = forger.remember(request, 'admin')[:1]
    app.set_cookie('dbmigrator_auth', cookie.split(';')[0].split('=', 1)[1].strip('"'))
    app.post('/migrations/migrate', {'csrf_token': csrf}, status=403)
    assert not db.table_exists('users')


def test_logout_ends_a_copied_cookie(settings, db):
    app = standalone(settings, hash_password(ADMIN_PASSWORD))
    logged_in(app)
    copied = app.cookies['dbmigrator_auth']
    page = app.get('/migrations')
    csrf = csrf_form(page, '/migrate')['csrf_token'].value
    csrf_form(page, '/logout').submit(status=303)
    app.set_cookie('dbmigrator_auth', copied)
    app.post('/migrations/migrate', {'csrf_token': csrf}, status=403)
    assert not db.table_exists('users')


def test_a_new_password_ends_every_login(settings, db):
    secret = {'dbmigrator.secret': 'a-configured-secret'}
    old = standalone(dict(settings, **secret), hash_password(ADMIN_PASSWORD))
    logged_in(old)
    copied = old.cookies['dbmigrator_auth']
    new = standalone(dict(settings, **secret), hash_password('another password'))
    csrf = new.get('/migrations/login').forms[0]['csrf_token'].value
    new.set_cookie('dbmigrator_auth', copied)
    new.post('/migrations/migrate', {'csrf_token': csrf}, status=403)
    assert not db.table_exists('users')


def test_the_add_on_refuses_a_host_without_a_security_policy(settings):
    config = Configurator(settings=settings)
    config.set_session_factory(SignedCookieSessionFactory('host-secret'))
    config.include('dbmigrator')
    with pytest.raises(ConfigurationError) as raised:
        config.make_wsgi_app()
    assert 'no security policy' in str(raised.value)
    assert 'set_security_policy' in str(raised.value)


def test_the_add_on_refuses_session_csrf_without_a_session_factory(settings):
    config = Configurator(settings=settings)
    config.set_security_policy(HeaderPolicy())
    config.include('dbmigrator')
    with pytest.raises(ConfigurationError) as raised:
        config.make_wsgi_app()
    assert 'no session factory' in str(raised.value)
    assert 'CookieCSRFStoragePolicy' in str(raised.value)


def test_the_add_on_works_without_a_session_given_cookie_csrf(settings, db):
    config = Configurator(settings=settings)
    config.set_security_policy(HeaderPolicy())
    config.set_csrf_storage_policy(CookieCSRFStoragePolicy())
    config.include('dbmigrator')
    app = webtest.TestApp(config.make_wsgi_app())
    page = app.get('/migrations', headers=ADMIN)
    finished(app, csrf_form(page, '/migrate').submit(headers=ADMIN), ADMIN)
    assert db.versions() == ['20200101000000', '20200102000000']
    app.get('/migrations', status=403)
    app.get('/migrations/status.json', status=403)


def test_repeated_wrong_passwords_are_slowed_down(settings, db):
    app = standalone(settings, hash_password(ADMIN_PASSWORD))
    for _ in range(5):
        form = app.get('/migrations/login').forms[0]
        form['password'] = 'guess'
        form.submit(status=403)
    form = app.get('/migrations/login').forms[0]
    form['password'] = 'guess'
    throttled = form.submit(status=429)
    assert int(throttled.headers['Retry-After']) >= 1
    assert 'Too many wrong passwords' in throttled.text
    form = app.get('/migrations/login').forms[0]
    form['password'] = ADMIN_PASSWORD
    form.submit(status=429)
    assert 'dbmigrator_auth' not in app.cookies
    app.post('/migrations/migrate', {}, headers=basic(ADMIN_PASSWORD), status=403)


def test_a_wrong_basic_auth_header_costs_one_password_check(settings, db, monkeypatch):
    checks = []
    real = app_module.check_password

    def counting(password, encoded):
        checks.append(password)
        return real(password, encoded)
    monkeypatch.setattr(app_module, 'check_password', counting)
    app = standalone(settings, hash_password(ADMIN_PASSWORD))
    page = app.get('/migrations', headers=basic('nope'))
    assert not page.forms
    assert checks == ['nope']


def test_pages_forbid_framing_and_sniffing(settings):
    app = standalone(settings, hash_password(ADMIN_PASSWORD))
    for url in ('/migrations', '/migrations/status.json', '/migrations/login',
                '/migrations/dbmigrator.css'):
        headers = app.get(url).headers
        assert headers['X-Frame-Options'] == 'DENY', url
        assert "frame-ancestors 'none'" in headers['Content-Security-Policy']
        assert headers['X-Content-Type-Options'] == 'nosniff'
        assert headers['Referrer-Policy'] == 'same-origin'


def test_cookies_are_secure_over_https(settings):
    wsgi = standalone(settings, hash_password(ADMIN_PASSWORD)).app
    app = webtest.TestApp(wsgi, extra_environ={'wsgi.url_scheme': 'https',
                                               'HTTP_HOST': 'localhost:443'})
    login = app.get('/migrations/login')
    assert all('secure' in c.lower() for c in login.headers.getall('Set-Cookie'))
    form = login.forms[0]
    form['password'] = ADMIN_PASSWORD
    response = form.submit(status=303, headers={'Origin': 'https://localhost'})
    [auth] = [c for c in response.headers.getall('Set-Cookie')
              if c.startswith('dbmigrator_auth=')]
    assert 'secure' in auth.lower()
    plain = webtest.TestApp(wsgi).get('/migrations/login').headers.getall('Set-Cookie')
    assert plain and not any('secure' in c.lower() for c in plain)


def test_redirects_ignore_a_forged_host(settings):
    app = standalone(settings, hash_password(ADMIN_PASSWORD))
    evil = {'Host': 'evil.example'}
    assert app.get('/', headers=evil).headers['Location'] == '/migrations'
    form = app.get('/migrations/login', headers=evil).forms[0]
    form['password'] = ADMIN_PASSWORD
    response = form.submit(status=303, headers=evil)
    assert response.headers['Location'] == '/migrations'
    assert 'evil.example' not in app.get('/migrations', headers=evil).text


def test_who_is_the_authenticated_identity_not_the_basic_auth_name(settings, db):
    app = standalone(settings, hash_password(ADMIN_PASSWORD))
    auth = basic(ADMIN_PASSWORD, user='the-ceo')
    page = app.get('/migrations', headers=auth)
    finished(app, csrf_form(page, '/migrate').submit(headers=auth), auth)
    who = {w for (w,) in db.query('SELECT who FROM dbmigrator_history')}
    assert who and all(w.startswith('admin from ') for w in who), who


@pytest.mark.parametrize('steps', ['\u00b2', '9' * 5000, '0', '-1'])
def test_odd_rollback_steps_are_a_bad_request(app, steps):
    page = app.get('/migrations', headers=ADMIN)
    csrf = csrf_form(page, '/migrate')['csrf_token'].value
    response = app.post('/migrations/rollback', {'csrf_token': csrf, 'steps': steps},
                        headers=ADMIN, status=400)
    assert 'steps must be a whole number' in response.text


def test_a_host_app_with_a_policy_still_denies_anonymous_users(settings, db):
    app = webtest.TestApp(host_app(settings))
    for url in ('/migrations', '/migrations/source/20200101000000', '/migrations/history',
                '/migrations/status.json'):
        app.get(url, status=403)
    app.post('/migrations/mark', {'version': '20200101000000', 'state': 'f'}, status=403)

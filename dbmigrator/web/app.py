"""The standalone admin app: ``[app:main] use = egg:dbmigrator`` and ``pserve``.

A minimal Pyramid app that includes the add-on at ``/migrations``.  Changes
need the password whose salted hash is ``dbmigrator.admin_password_hash``
(``dbmigrator hash-password`` prints one), given through HTTP basic auth or
the login form.  Without a hash the app is read-only.
"""
import base64
import binascii
import signal
import threading

from pyramid.authentication import AuthTktCookieHelper
from pyramid.security import Allowed, Denied
from pyramid.config import Configurator
from pyramid.csrf import CookieCSRFStoragePolicy, get_csrf_token
from pyramid.events import BeforeRender
from pyramid.httpexceptions import HTTPFound, HTTPSeeOther
from pyramid.security import forget, remember

from ..interrupts import terminate_as_interrupt
from ..passwords import check_password

VIEW_PERMISSION = 'dbmigrator.view'
ADMIN_PERMISSION = 'dbmigrator.admin'
ADMIN_USER = 'admin'


class AdminPasswordPolicy:
    """Everyone may look; only who knows the admin password may change."""

    def __init__(self, password_hash):
        self.password_hash = password_hash
        self.cookie = AuthTktCookieHelper(
            secret='dbmigrator-login:' + (password_hash or ''), cookie_name='dbmigrator_auth',
            hashalg='sha512', http_only=True, samesite='Lax', max_age=8 * 3600,
            timeout=8 * 3600, reissue_time=600) if password_hash else None

    def _basic_auth(self, request):
        header = request.headers.get('Authorization', '')
        scheme, _, encoded = header.partition(' ')
        if scheme.lower() != 'basic':
            return None
        try:
            user, _, password = base64.b64decode(encoded).decode('utf-8').partition(':')
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or ADMIN_USER if self.check(password) else None

    def check(self, password):
        return bool(self.password_hash) and check_password(password, self.password_hash)

    def identity(self, request):
        if not self.password_hash:
            return None
        ticket = self.cookie.identify(request)
        if ticket:
            return ticket['userid']
        return self._basic_auth(request)

    def authenticated_userid(self, request):
        return self.identity(request)

    def permits(self, request, context, permission):
        if permission == VIEW_PERMISSION:
            return Allowed('anyone may view migration status')
        if permission == ADMIN_PERMISSION and self.identity(request):
            return Allowed('signed in with the admin password')
        return Denied('changes need the admin password')

    def remember(self, request, userid, **kw):
        return self.cookie.remember(request, userid, **kw) if self.cookie else []

    def forget(self, request, **kw):
        return self.cookie.forget(request, **kw) if self.cookie else []


def login_form(request):
    return {'error': None, 'configured': bool(request.registry.settings.get(
        'dbmigrator.admin_password_hash')), 'csrf_token': get_csrf_token(request),
        'database': ''}


def login(request):
    policy = request.registry['dbmigrator.admin_policy']
    if policy.check(request.POST.get('password', '')):
        return HTTPSeeOther(request.route_url('dbmigrator.status'),
                            headers=remember(request, ADMIN_USER))
    result = login_form(request)
    result['error'] = 'Wrong password.' if result['configured'] else (
        'No admin password is configured: this app is read-only.')
    request.response.status = 403
    return result


def logout(request):
    return HTTPSeeOther(request.route_url('dbmigrator.status'), headers=forget(request))


def add_auth_links(event):
    request = event.get('request')
    if request is None or not request.matched_route:
        return
    user = request.authenticated_userid
    event['auth'] = {
        'user': user,
        'login_url': request.route_url('dbmigrator.login'),
        'logout_url': request.route_url('dbmigrator.logout'),
        'csrf_token': get_csrf_token(request) if user else '',
    }


def redirect_to_status(request):
    return HTTPFound(request.route_url('dbmigrator.status'))


def stop_on_sigterm():
    """SIGTERM (systemd, supervisord, docker stop) ends pserve as Ctrl-C does.

    Python's default for SIGTERM skips the exit handlers, which would leave
    the embedded PostgreSQL of an ``embedded:`` database running.  Only the
    main thread may install it, and a handler the host set is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, terminate_as_interrupt)


def make_app(global_config, **settings):
    stop_on_sigterm()
    settings.setdefault('here', global_config.get('here'))
    settings['dbmigrator.permission'] = ADMIN_PERMISSION
    settings['dbmigrator.view_permission'] = VIEW_PERMISSION
    password_hash = (settings.get('dbmigrator.admin_password_hash') or '').strip()
    policy = AdminPasswordPolicy(password_hash)
    with Configurator(settings=settings) as config:
        config.registry['dbmigrator.admin_policy'] = policy
        config.set_security_policy(policy)
        config.set_csrf_storage_policy(CookieCSRFStoragePolicy(samesite='Lax', httponly=True))
        config.include('dbmigrator')
        prefix = config.get_settings()['dbmigrator.route_prefix']
        config.add_route('dbmigrator.login', prefix + '/login')
        config.add_route('dbmigrator.logout', prefix + '/logout')
        config.add_route('root', '/')
        config.add_view(redirect_to_status, route_name='root', permission=VIEW_PERMISSION)
        config.add_view(login_form, route_name='dbmigrator.login', request_method='GET',
                        permission=VIEW_PERMISSION,
                        renderer='dbmigrator:web/templates/login.jinja2')
        config.add_view(login, route_name='dbmigrator.login', request_method='POST',
                        permission=VIEW_PERMISSION, require_csrf=True,
                        renderer='dbmigrator:web/templates/login.jinja2')
        config.add_view(logout, route_name='dbmigrator.logout', request_method='POST',
                        permission=VIEW_PERMISSION, require_csrf=True)
        config.add_subscriber(add_auth_links, BeforeRender)
        return config.make_wsgi_app()

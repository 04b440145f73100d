"""The standalone admin app: ``[app:main] use = egg:dbmigrator`` and ``pserve``.

A minimal Pyramid app that includes the add-on at ``/migrations``.  Changes
need the password whose salted hash is ``dbmigrator.admin_password_hash``
(``dbmigrator hash-password`` prints one), given through HTTP basic auth or
the login form.  Without a hash the app is read-only.

The login cookie is signed with ``dbmigrator.secret`` (or a random secret
made when the app starts), mixed with the password hash so that a new
password ends every login.  A cookie is only good while its login is one
this process handed out and has not seen logged out.
"""
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import signal
import threading
import time

from pyramid.authentication import AuthTktCookieHelper
from pyramid.config import Configurator
from pyramid.csrf import CookieCSRFStoragePolicy, get_csrf_token
from pyramid.events import BeforeRender
from pyramid.security import Allowed, Denied, forget, remember

from ..interrupts import terminate_as_interrupt
from ..passwords import check_password
from .redirects import found, see_other
from .throttle import Throttle

log = logging.getLogger(__name__)

VIEW_PERMISSION = 'dbmigrator.view'
ADMIN_PERMISSION = 'dbmigrator.admin'
ADMIN_USER = 'admin'
LOGIN_SECONDS = 8 * 3600
_IDENTITY = 'dbmigrator.identity'


def _is_https(request):
    return request.scheme == 'https'


class Logins:
    """The logins this process handed out; a cookie names one of them."""

    def __init__(self):
        self._expires = {}
        self._lock = threading.Lock()

    def new(self):
        login_id = 'login' + secrets.token_hex(16)
        with self._lock:
            now = time.monotonic()
            self._expires = {k: v for k, v in self._expires.items() if v > now}
            self._expires[login_id] = now + LOGIN_SECONDS
        return login_id

    def valid(self, login_id):
        with self._lock:
            return self._expires.get(login_id, 0) > time.monotonic()

    def end(self, login_id):
        with self._lock:
            self._expires.pop(login_id, None)


class AdminPasswordPolicy:
    """Everyone may look; only who knows the admin password may change."""

    def __init__(self, password_hash, secret=None):
        self.password_hash = password_hash
        self.logins = Logins()
        self.throttle = Throttle()
        secret = secret or secrets.token_hex(32)
        key = hmac.new(secret.encode('utf-8'), (password_hash or '').encode('utf-8'),
                       hashlib.sha512).hexdigest()
        self.cookies = {secure: AuthTktCookieHelper(
            secret=key, cookie_name='dbmigrator_auth', secure=secure, hashalg='sha512',
            http_only=True, samesite='Lax', max_age=LOGIN_SECONDS, timeout=LOGIN_SECONDS,
            reissue_time=600) for secure in (False, True)} if password_hash else None

    def _cookie(self, request):
        return self.cookies[_is_https(request)]

    @staticmethod
    def throttle_keys(request):
        return ('client', request.remote_addr or 'unknown'), ('user', ADMIN_USER)

    def retry_after(self, request):
        return self.throttle.retry_after(*self.throttle_keys(request))

    def attempt(self, request, password):
        """Check a password, counting failures; refused unchecked while throttled."""
        keys = self.throttle_keys(request)
        if self.throttle.retry_after(*keys):
            return False
        if bool(self.password_hash) and check_password(password, self.password_hash):
            self.throttle.succeeded(keys[0])
            return True
        self.throttle.failed(*keys)
        return False

    def _basic_auth(self, request):
        header = request.headers.get('Authorization', '')
        scheme, _, encoded = header.partition(' ')
        if scheme.lower() != 'basic':
            return None
        try:
            password = base64.b64decode(encoded, validate=True).decode('utf-8').partition(
                ':')[2]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return ADMIN_USER if self.attempt(request, password) else None

    def _ticket(self, request):
        ticket = self._cookie(request).identify(request)
        if not ticket or ticket['userid'] != ADMIN_USER or len(ticket['tokens']) != 1:
            return None
        return ticket['tokens'][0] if self.logins.valid(ticket['tokens'][0]) else None

    def identity(self, request):
        """Worked out once per request: a wrong password costs one PBKDF2, not one per check."""
        if not self.password_hash:
            return None
        if _IDENTITY not in request.environ:
            request.environ[_IDENTITY] = (
                ADMIN_USER if self._ticket(request) else self._basic_auth(request))
        return request.environ[_IDENTITY]

    def authenticated_userid(self, request):
        return self.identity(request)

    def permits(self, request, context, permission):
        if permission == VIEW_PERMISSION:
            return Allowed('anyone may view migration status')
        if permission == ADMIN_PERMISSION and self.identity(request):
            return Allowed('signed in with the admin password')
        return Denied('changes need the admin password')

    def remember(self, request, userid, **kw):
        if not self.cookies:
            return []
        return self._cookie(request).remember(request, userid, tokens=(self.logins.new(),))

    def forget(self, request, **kw):
        if not self.cookies:
            return []
        login_id = self._ticket(request)
        if login_id:
            self.logins.end(login_id)
        return self._cookie(request).forget(request)


class SchemeCSRFStoragePolicy:
    """The CSRF cookie, ``Secure`` when the request came over HTTPS."""

    def __init__(self):
        self.policies = {secure: CookieCSRFStoragePolicy(
            samesite='Lax', httponly=True, secure=secure) for secure in (False, True)}

    def _policy(self, request):
        return self.policies[_is_https(request)]

    def new_csrf_token(self, request):
        return self._policy(request).new_csrf_token(request)

    def get_csrf_token(self, request):
        return self._policy(request).get_csrf_token(request)

    def check_csrf_token(self, request, supplied_token):
        return self._policy(request).check_csrf_token(request, supplied_token)


def login_form(request):
    return {'error': None, 'configured': bool(request.registry.settings.get(
        'dbmigrator.admin_password_hash')), 'csrf_token': get_csrf_token(request),
        'database': request.registry['dbmigrator.database']}


def login(request):
    policy = request.registry['dbmigrator.admin_policy']
    wait = policy.retry_after(request)
    if not wait and policy.attempt(request, request.POST.get('password', '')):
        return see_other(request, 'dbmigrator.status', headers=remember(request, ADMIN_USER))
    result = login_form(request)
    wait = wait or policy.retry_after(request)
    if not result['configured']:
        result['error'] = 'No admin password is configured: this app is read-only.'
        request.response.status = 403
    elif wait:
        result['error'] = 'Too many wrong passwords: try again in %d s.' % max(1, round(wait))
        request.response.status = 429
        request.response.headers['Retry-After'] = str(max(1, round(wait)))
    else:
        result['error'] = 'Wrong password.'
        request.response.status = 403
    return result


def logout(request):
    return see_other(request, 'dbmigrator.status', headers=forget(request))


def add_auth_links(event):
    request = event.get('request')
    if request is None or not request.matched_route:
        return
    user = request.authenticated_userid
    event['auth'] = {
        'user': user,
        'login_url': request.route_path('dbmigrator.login'),
        'logout_url': request.route_path('dbmigrator.logout'),
        'csrf_token': get_csrf_token(request) if user else '',
    }


def redirect_to_status(request):
    return found(request, 'dbmigrator.status')


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
    policy = AdminPasswordPolicy(password_hash, (settings.get('dbmigrator.secret') or '').strip())
    with Configurator(settings=settings) as config:
        config.registry['dbmigrator.admin_policy'] = policy
        config.set_security_policy(policy)
        config.set_csrf_storage_policy(SchemeCSRFStoragePolicy())
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

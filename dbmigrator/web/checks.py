"""What the host app must provide before the add-on serves anything.

Pyramid skips permission checks altogether when no security policy is set,
and the default CSRF storage needs a session: without them the pages would
be open to anyone, or fail on every request.  Both are checked once the
host's configuration is committed, so the order of its calls does not matter.
"""
from pyramid.csrf import LegacySessionCSRFStoragePolicy, SessionCSRFStoragePolicy
from pyramid.exceptions import ConfigurationError
from pyramid.interfaces import ICSRFStoragePolicy, ISecurityPolicy, ISessionFactory

#: After the host's own actions (PHASE3_CONFIG is 0, the default order).
ORDER = 10


def check_host(registry):
    if registry.queryUtility(ISecurityPolicy) is None:
        raise ConfigurationError(
            'dbmigrator: the host app has no security policy, so every dbmigrator page '
            'would be open to anyone: call config.set_security_policy() with a policy that '
            "grants 'dbmigrator.admin' to your operators only")
    csrf = registry.queryUtility(ICSRFStoragePolicy)
    if isinstance(csrf, (LegacySessionCSRFStoragePolicy, SessionCSRFStoragePolicy)) and (
            registry.queryUtility(ISessionFactory) is None):
        raise ConfigurationError(
            'dbmigrator: the CSRF tokens of its forms are kept in the session, but the host '
            'app has no session factory: call config.set_session_factory(), or '
            'config.set_csrf_storage_policy(CookieCSRFStoragePolicy()), which needs no session')


def has_security_policy(request):
    return request.registry.queryUtility(ISecurityPolicy) is not None


def includeme(config):
    config.action('dbmigrator.check_host', lambda: check_host(config.registry), order=ORDER)

"""Pyramid add-on: ``config.include('dbmigrator')``.

Adds a migration status page, its JSON twin, the migrate / rollback / mark
actions, run pages with live progress and cancel, the run history and each
migration's source under ``dbmigrator.route_prefix`` (default
``/migrations``), or under the ``route_prefix`` given to ``config.include``.  Every view carries
an explicit permission, checked by the host's security policy; POST views
require a CSRF token, so the host needs a CSRF storage policy (Pyramid's
default keeps the token in the session; ``CookieCSRFStoragePolicy`` needs no
session).
"""
import logging

from pyramid.interfaces import IRoutesMapper
from pyramid.settings import asbool, aslist

from .. import settings as settings_mod
from ..database import describe
from .views import register_views

DEFAULTS = {
    'dbmigrator.route_prefix': '/migrations',
    'dbmigrator.permission': 'dbmigrator.admin',
    'dbmigrator.lock_wait': '10',
    'dbmigrator.schema_diff': 'true',
}


def parse_settings(settings):
    """Coerce the add-on's settings once and write them back, as pyramid_tm does."""
    for key, default in DEFAULTS.items():
        settings.setdefault(key, default)
    settings['dbmigrator.view_permission'] = settings.get(
        'dbmigrator.view_permission') or settings['dbmigrator.permission']
    settings['dbmigrator.lock_wait'] = float(settings['dbmigrator.lock_wait'])
    settings['dbmigrator.schema_diff'] = asbool(settings['dbmigrator.schema_diff'])
    for key in ('migrations-directory', 'migrations_directory', 'context'):
        if key in settings:
            settings[key] = aslist(settings[key])
    return settings


def includeme(config):
    # Runs record (and the run page shows) what migrations log at INFO; an
    # ini file that sets the dbmigrator logger's level keeps its choice.
    logger = logging.getLogger('dbmigrator')
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    config.include('pyramid_jinja2')
    settings = parse_settings(config.get_settings())
    config.registry['dbmigrator.settings'] = settings_mod.resolve(
        ini_settings=settings, base_dir=settings.get('here'),
        lock_wait=settings['dbmigrator.lock_wait'])
    if config.route_prefix:
        _add_routes(config)
    else:
        with config.route_prefix_context(settings['dbmigrator.route_prefix']):
            _add_routes(config)
    dsn = config.registry['dbmigrator.settings'].db_connection_string
    config.registry['dbmigrator.database'] = describe(dsn) if dsn else ''
    config.add_request_method(dbm_path)
    register_views(config)
    config.include('dbmigrator.web.headers')
    config.include('dbmigrator.web.checks')


# The pages of one database; with targets, each target has them too, under
# /targets/NAME (routes dbmigrator.t.*).
PAGES = (('status', ''), ('status_json', '/status.json'), ('migrate', '/migrate'),
         ('rollback', '/rollback'), ('mark', '/mark'), ('history', '/history'),
         ('run_json', '/runs/{run_id}.json'), ('run', '/runs/{run_id}'),
         ('cancel', '/runs/{run_id}/cancel'), ('source', '/source/{version}'),
         ('check', '/check'), ('check_page', '/checks/{check_id}'))


def dbm_path(request, name, **kw):
    """``request.route_path`` of a dbmigrator route, on the target whose page this is."""
    target = (request.matchdict or {}).get('target')
    twin = 'dbmigrator.t.' + name[len('dbmigrator.'):]
    if target is not None and request.registry.getUtility(IRoutesMapper).get_route(twin):
        return request.route_path(twin, target=target, **kw)
    return request.route_path(name, **kw)


def _add_routes(config):
    config.add_route('dbmigrator.css', '/dbmigrator.css')
    config.add_route('dbmigrator.script', '/run.js')
    config.add_route('dbmigrator.fanout', '/fanout')
    config.add_route('dbmigrator.fanout_page', '/fanouts/{fanout_id}')
    for name, pattern in PAGES:
        config.add_route('dbmigrator.' + name, pattern, **(
            {'inherit_slash': True} if not pattern else {}))
        config.add_route('dbmigrator.t.' + name, '/targets/{target}' + pattern)

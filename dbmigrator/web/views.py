"""Views over :mod:`dbmigrator.commands`: the same functions the CLI calls.

Registered by :func:`register_views` with the permissions the registry
settings name; GET views never change anything.
"""
import os

from pyramid.csrf import get_csrf_token
from pyramid.httpexceptions import HTTPBadRequest
from pyramid.response import FileResponse

from .. import commands, reports
from ..database import describe
from ..errors import DBMigratorError
from ..redact import scrub

STYLESHEET = os.path.join(os.path.dirname(__file__), 'static', 'dbmigrator.css')


def migration_settings(request):
    return request.registry['dbmigrator.settings']


def can_change(request):
    return bool(request.has_permission(request.registry.settings['dbmigrator.permission']))


def _int_field(request, name, default=None):
    value = request.POST.get(name, '').strip()
    if not value:
        return default
    if not value.lstrip('-').isdigit():
        raise HTTPBadRequest('%s must be a number' % name)
    return int(value)


class MigrationViews:
    def __init__(self, context, request):
        self.request = request
        self.settings = migration_settings(request)
        dsn = self.settings.db_connection_string
        self.database = describe(dsn) if dsn else ''
        self.diff = request.registry.settings['dbmigrator.schema_diff']

    def _result(self, title, run):
        steps, error = [], None
        try:
            steps = run().steps
        except DBMigratorError as exc:
            steps = getattr(exc, 'steps', [])
            error = scrub(exc)
        return {'title': title, 'steps': steps, 'error': error, 'database': self.database}

    def status(self):
        try:
            return commands.status(self.settings), None
        except DBMigratorError as exc:
            return None, scrub(exc)

    def page(self):
        status, error = self.status()
        allowed = can_change(self.request)
        return {'status': status, 'error': error, 'can_change': allowed,
                'warnings': reports.status_warnings(status) if status else [],
                'csrf_token': get_csrf_token(self.request) if allowed else '',
                'database': self.database}

    def json(self):
        status, error = self.status()
        if error:
            self.request.response.status = 503
            return {'error': error}
        return reports.status_json(status)

    def css(self):
        return FileResponse(STYLESHEET, request=self.request, content_type='text/css')

    def migrate(self):
        version = self.request.POST.get('version', '').strip() or None
        run_deferred = self.request.POST.get('run_deferred') == 'on'
        return self._result('Migrate', lambda: commands.migrate(
            self.settings, version=version, run_deferred=run_deferred, diff=self.diff))

    def rollback(self):
        steps = _int_field(self.request, 'steps', 1)
        if self.request.POST.get('confirm') != 'yes':
            try:
                targets, error = commands.rollback(self.settings, steps=steps,
                                                   dry_run=True).steps, None
            except DBMigratorError as exc:
                targets, error = [], scrub(exc)
            self.request.override_renderer = 'dbmigrator:web/templates/confirm_rollback.jinja2'
            return {'steps': steps, 'targets': targets, 'error': error,
                    'csrf_token': get_csrf_token(self.request), 'database': self.database}
        return self._result('Roll back', lambda: commands.rollback(
            self.settings, steps=steps, diff=self.diff))

    def mark(self):
        versions = self.request.POST.getall('version')
        state = self.request.POST.get('state', '')

        def run():
            commands.mark(self.settings, versions, state)
            return commands.Result('mark', [])
        result = self._result('Mark %s as %s' % (', '.join(versions), state), run)
        result['marked'] = not result['error']
        return result


def register_views(config):
    """Add the views with the permissions the registry settings name."""
    settings = config.get_settings()
    view_perm = settings['dbmigrator.view_permission']
    change_perm = settings['dbmigrator.permission']
    add = config.add_view
    add(MigrationViews, attr='page', route_name='dbmigrator.status', request_method='GET',
        permission=view_perm, renderer='dbmigrator:web/templates/status.jinja2')
    add(MigrationViews, attr='json', route_name='dbmigrator.status_json', request_method='GET',
        permission=view_perm, renderer='json')
    add(MigrationViews, attr='css', route_name='dbmigrator.css', request_method='GET',
        permission=view_perm)
    for name in ('migrate', 'rollback', 'mark'):
        add(MigrationViews, attr=name, route_name='dbmigrator.' + name, request_method='POST',
            permission=change_perm, require_csrf=True,
            renderer='dbmigrator:web/templates/result.jinja2')

"""Views over :mod:`dbmigrator.commands`: the same functions the CLI calls.

Registered by :func:`register_views` with the permissions the registry
settings name; GET views never change anything.  Migrate and roll back run
in the background (:mod:`dbmigrator.web.background`) and redirect to the
run's page, which polls the run's JSON.
"""
import os
import re

from pyramid.csrf import get_csrf_token
from pyramid.httpexceptions import HTTPBadRequest, HTTPConflict, HTTPForbidden, HTTPNotFound
from pyramid.response import FileResponse

from .. import commands, reports
from ..discovery import migration_files, read_source
from ..errors import DBMigratorError
from ..redact import scrub
from ..targets import config as targets_config
from . import background, fanouts, overview
from .checks import has_security_policy
from .redirects import see_other

STYLESHEET = os.path.join(os.path.dirname(__file__), 'static', 'dbmigrator.css')
SCRIPT = os.path.join(os.path.dirname(__file__), 'static', 'run.js')


def migration_settings(request):
    return request.registry['dbmigrator.settings']


def can_change(request):
    return bool(request.has_permission(request.registry.settings['dbmigrator.permission']))


def origin(request):
    """Who starts a run from the page: the identity the security policy vouched for."""
    user = request.authenticated_userid or 'anonymous'
    return commands.Origin('%s from %s (web)' % (user, request.remote_addr or 'unknown'))


def _int_field(request, name, default=None, maximum=100000):
    """A small positive number from a form; ASCII digits only, as the CLI takes."""
    value = request.POST.get(name, '').strip()
    if not value:
        return default
    if not re.fullmatch(r'[0-9]{1,9}', value) or not 1 <= int(value) <= maximum:
        raise HTTPBadRequest('%s must be a whole number from 1 to %d' % (name, maximum))
    return int(value)


def run_json(request, state):
    """The run page's JSON: the recorded steps and, while it runs, live progress."""
    run = state.run
    live = state.live
    return {
        'run_id': run.run_id,
        'action': run.action,
        'who': run.who,
        'started': run.started.isoformat(),
        'finished': run.finished.isoformat() if run.finished else None,
        'state': state.state,
        'error': run.error,
        'current': live.current if live else None,
        'step': live.current_step if live and live.current else None,
        'steps_planned': live.steps if live else None,
        'elapsed': round(state.elapsed, 1) if state.elapsed is not None else None,
        'output': (live.output or '').splitlines() if live else [],
        'waiting_for': str(state.waiting_for) if state.waiting_for else None,
        'cancel_requested': bool(live and live.cancel_requested),
        'holding': str(state.holding) if state.holding else '',
        'steps': [reports.history_step_json(s) for s in run.steps],
        'url': request.dbm_path('dbmigrator.run', run_id=run.run_id),
    }


class MigrationViews:
    def __init__(self, context, request):
        if not has_security_policy(request):
            raise HTTPForbidden('dbmigrator: the host app has no security policy')
        self.request = request
        self.settings = migration_settings(request)
        self.database = request.registry['dbmigrator.database']
        self.diff = request.registry.settings['dbmigrator.schema_diff']
        self.target = None
        name = (request.matchdict or {}).get('target')
        if name is not None:
            try:
                self.target = targets_config.find(self.settings, name)
            except DBMigratorError as exc:
                raise HTTPNotFound(scrub(exc))
            if self.target is None:
                raise HTTPNotFound('no target is named %s' % name)
            self.settings = targets_config.settings_for(self.settings, self.target)
            self.database = '%s: %s%s' % (self.target.name, self.target.database, (
                ', schema ' + self.target.schema) if self.target.schema else '')

    def _page(self, **values):
        allowed = can_change(self.request)
        values.update(database=self.database, can_change=allowed,
                      csrf_token=get_csrf_token(self.request) if allowed else '')
        return values

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
            return commands.status(self.settings, run_code=False), None
        except DBMigratorError as exc:
            return None, scrub(exc)

    def page(self):
        if self.target is None and (self.settings.targets or self.settings.targets_query):
            return self.overview()
        status, error = self.status()
        return self._page(status=status, error=error,
                          warnings=reports.status_warnings(status) if status else [],
                          last_check=self.request.registry.get('dbmigrator.last_check'))

    def json(self):
        status, error = self.status()
        if error:
            self.request.response.status = 503
            return {'error': error}
        return reports.status_json(status)

    def overview(self):
        """With targets: a row per target (pending, newest applied, last run, drift),
        each linking to its own page, and the fan-out forms."""
        self.request.override_renderer = 'dbmigrator:web/templates/overview.jinja2'
        try:
            targets = targets_config.resolve(self.settings)
        except DBMigratorError as exc:
            return self._page(rows=[], error=scrub(exc), summary=None)
        rows = overview.rows(self.settings, targets)
        return self._page(rows=rows, error=None, fanouts=fanouts.recent(self.request.registry))

    def fanout(self):
        """Migrate the chosen targets (or all) from the overview: confirm, then start."""
        try:
            targets = targets_config.resolve(self.settings)
        except DBMigratorError as exc:
            raise HTTPBadRequest(scrub(exc))
        chosen = self.request.POST.getall('target')
        selected = [t for t in targets if not chosen or t.name in chosen]
        if chosen and len(selected) != len(set(chosen)):
            raise HTTPBadRequest('no such target: %s' % ', '.join(
                sorted(set(chosen) - {t.name for t in targets})))
        if self.request.POST.get('confirm') != 'yes':
            return self._confirm('confirm_fanout', targets=selected)
        fanout_id = fanouts.start(self.request.registry, self.settings, selected,
                                  origin(self.request).who)
        return see_other(self.request, 'dbmigrator.fanout_page', fanout_id=fanout_id)

    def fanout_page(self):
        run = fanouts.get(self.request.registry, self.request.matchdict['fanout_id'])
        if run is None:
            raise HTTPNotFound('no such run over targets')
        return self._page(run=run)

    def css(self):
        return FileResponse(STYLESHEET, request=self.request, content_type='text/css')

    def script(self):
        return FileResponse(SCRIPT, request=self.request, content_type='text/javascript')

    def _start(self, title, action, **kwargs):
        try:
            run_id = background.start(self.settings, action, origin(self.request), **kwargs)
        except DBMigratorError as exc:
            self.request.override_renderer = 'dbmigrator:web/templates/result.jinja2'
            return {'title': title, 'steps': [], 'error': scrub(exc), 'database': self.database}
        return see_other(self.request, 'dbmigrator.run', run_id=run_id)

    def _confirm(self, template, **values):
        """The confirmation step an action shows first: what it will do, where."""
        self.request.override_renderer = 'dbmigrator:web/templates/%s.jinja2' % template
        values.update(csrf_token=get_csrf_token(self.request), database=self.database)
        return values

    def migrate(self):
        version = self.request.POST.get('version', '').strip() or None
        run_deferred = self.request.POST.get('run_deferred') == 'on'
        last = self.request.registry.get('dbmigrator.last_check')
        if self.request.POST.get('confirm') != 'yes':
            try:
                plan, error = commands.migrate(self.settings, version=version,
                                               run_deferred=run_deferred,
                                               dry_run=True).steps, None
            except DBMigratorError as exc:
                plan, error = [], scrub(exc)
            return self._confirm('confirm_migrate', plan=plan, error=error, version=version,
                                 run_deferred=run_deferred,
                                 unsafe=last.errors if last is not None else [],
                                 last_check=last)
        if last is not None and last.errors and self.request.POST.get('confirm_unsafe') != 'yes':
            self.request.response.status = 409
            return {'title': 'Migrate', 'steps': [], 'database': self.database,
                    'error': 'the last safety check found %d error finding%s: read them, then '
                             'tick "migrate anyway" to go on, or check again once the '
                             'migrations are safe' % (len(last.errors),
                                                      '' if len(last.errors) == 1 else 's')}
        return self._start('Migrate', 'migrate', version=version, run_deferred=run_deferred,
                           diff=self.diff)

    def check(self):
        check_id = background.start_check(self.settings, self.request.registry)
        return see_other(self.request, 'dbmigrator.check_page', check_id=check_id)

    def check_page(self):
        check = self.request.registry.get('dbmigrator.checks', {}).get(
            self.request.matchdict['check_id'])
        if check is None:
            raise HTTPNotFound('no such safety check in this process (checks are kept in '
                               'memory by the process that ran them)')
        return self._page(check=check)

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
        return self._start('Roll back', 'rollback', steps=steps, diff=self.diff)

    def mark(self):
        versions = self.request.POST.getall('version')
        state = self.request.POST.get('state', '')
        if self.request.POST.get('confirm') != 'yes':
            return self._confirm('confirm_mark', versions=versions, state=state,
                                 what=commands.MARKS.get(state, state))

        def run():
            commands.mark(self.settings, versions, state, origin=origin(self.request))
            return commands.Result('mark', [])
        result = self._result('Mark %s as %s' % (', '.join(versions), state), run)
        result['marked'] = not result['error']
        return result

    def _state(self):
        run_id = self.request.matchdict['run_id']
        try:
            state = commands.run_state(self.settings, run_id)
        except DBMigratorError as exc:
            raise HTTPNotFound(scrub(exc))
        if state is None:
            raise HTTPNotFound('no run %s is recorded' % run_id)
        return state

    def run(self):
        state = self._state()
        return self._page(state=state, data=run_json(self.request, state))

    def run_data(self):
        return run_json(self.request, self._state())

    def cancel(self):
        run_id = self.request.matchdict['run_id']
        if self.request.POST.get('confirm') != 'yes':
            return self._confirm('confirm_cancel', state=self._state(), run_id=run_id)
        if not commands.cancel(self.settings, run_id):
            raise HTTPConflict('run %s is not running: there is nothing to cancel' % run_id)
        return see_other(self.request, 'dbmigrator.run', run_id=run_id)

    def history(self):
        version = self.request.GET.get('version', '').strip() or None
        try:
            if version:
                return self._page(runs=None, version=version, error=None,
                                  steps=commands.history(self.settings, 100, version))
            return self._page(runs=commands.runs(self.settings), version=None, steps=None,
                              error=None)
        except DBMigratorError as exc:
            return self._page(runs=[], version=version, steps=None, error=scrub(exc))

    def source(self):
        version = self.request.matchdict['version']
        try:
            found = [read_source(*entry)
                     for entry in migration_files(self.settings.require_directories())
                     if entry[0] == version]
        except DBMigratorError as exc:
            raise HTTPNotFound(scrub(exc))
        if not found:
            raise HTTPNotFound('no migration %s' % version)
        with open(found[0].path, encoding='utf-8', errors='replace') as handle:
            text = handle.read()
        return self._page(migration=found[0], text=text)


def register_views(config):
    """Add the views with the permissions the registry settings name."""
    settings = config.get_settings()
    view_perm = settings['dbmigrator.view_permission']
    change_perm = settings['dbmigrator.permission']
    add = config.add_view

    # Each page of one database, and the same under /targets/NAME (dbmigrator.t.*).
    for prefix in ('dbmigrator.', 'dbmigrator.t.'):
        for attr, route, template in (('page', 'status', 'status'), ('run', 'run', 'run'),
                                      ('history', 'history', 'history'),
                                      ('source', 'source', 'source'),
                                      ('check_page', 'check_page', 'check')):
            add(MigrationViews, attr=attr, route_name=prefix + route, request_method='GET',
                permission=view_perm, renderer='dbmigrator:web/templates/%s.jinja2' % template)
        for attr, route in (('json', 'status_json'), ('run_data', 'run_json')):
            add(MigrationViews, attr=attr, route_name=prefix + route, request_method='GET',
                permission=view_perm, renderer='json')
        for name in ('migrate', 'rollback', 'mark', 'cancel', 'check'):
            add(MigrationViews, attr=name, route_name=prefix + name, request_method='POST',
                permission=change_perm, require_csrf=True,
                renderer='dbmigrator:web/templates/result.jinja2')
    for attr, route in (('css', 'css'), ('script', 'script')):
        add(MigrationViews, attr=attr, route_name='dbmigrator.' + route, request_method='GET',
            permission=view_perm)
    add(MigrationViews, attr='fanout', route_name='dbmigrator.fanout', request_method='POST',
        permission=change_perm, require_csrf=True,
        renderer='dbmigrator:web/templates/confirm_fanout.jinja2')
    add(MigrationViews, attr='fanout_page', route_name='dbmigrator.fanout_page',
        request_method='GET', permission=view_perm,
        renderer='dbmigrator:web/templates/fanout.jinja2')

"""The page with targets: an overview, each target's own page, runs over targets."""
import time

import webtest

from tests.test_targets import ACCOUNTS, LOG, fleet  # noqa: F401 (the fixture)
from tests.test_web import ADMIN, finished, host_app


def targets_app(f):
    return webtest.TestApp(host_app({
        'db-connection-string': f.server.get_uri(f.main),
        'migrations-directory': str(f.migrations),
        'dbmigrator.targets': '\n'.join('db%d %s' % (i, f.server.get_uri(name))
                                        for i, name in enumerate(f.databases)),
        'dbmigrator.targets_query': 'SELECT name, schema FROM tenants'}))


def row_text(page, name):
    return ' '.join(page.html.find(id='target-' + name).get_text().split())


def test_overview_links_each_target_to_its_own_page(fleet):  # noqa: F811
    f = fleet(databases=2, schemas=2)
    f.add('20200101000000', 'log', LOG)
    f.add('20200102000000', 'accounts', ACCOUNTS)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    assert f.run('migrate', '--targets', 'db1,tenant_0').returncode == 0
    app = targets_app(f)
    page = app.get('/migrations', headers=ADMIN)
    assert page.html.find('h1').get_text() == 'Targets'
    assert [tr['id'] for tr in page.html.select('#targets tbody tr')] == [
        'target-db0', 'target-db1', 'target-tenant_0', 'target-tenant_1']
    assert row_text(page, 'db0').startswith('db0 ')
    assert ' 2 none init ok, ' in row_text(page, 'db0')
    assert ' 0 20200102000000 migrate ok' in row_text(page, 'db1')
    assert 'schema tenant_0 0 20200102000000' in row_text(page, 'tenant_0')

    assert page.html.select('#target-tenant_1 a')[0]['href'] == '/migrations/targets/tenant_1'
    own = app.get('/migrations/targets/tenant_1', headers=ADMIN)
    assert 'tenant_1:' in own.html.find(class_='database').get_text()
    assert 'schema tenant_1' in own.html.find(class_='database').get_text()
    assert own.html.find(id='count-pending').get_text() == '2'
    assert own.html.find(id='targets-link')['href'] == '/migrations'
    # The target's own page migrates that target only, and its run page is its own.
    form = next(form for form in own.forms.values()
                if form.action.endswith('/targets/tenant_1/migrate'))
    done = finished(app, form.submit(headers=ADMIN), headers=ADMIN)
    assert done.request.path.startswith('/migrations/targets/tenant_1/runs/')
    assert f.versions('tenant_1') == ['20200101000000', '20200102000000']
    assert f.versions('db0') == []
    assert app.get('/migrations/targets/nope', headers=ADMIN, status=404)


def test_migrate_chosen_targets_from_the_overview(fleet):  # noqa: F811
    f = fleet(databases=2, schemas=2)
    f.add('20200101000000', 'log', LOG)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    app = targets_app(f)
    page = app.get('/migrations', headers=ADMIN)
    form = page.forms['fanout-form']
    for box in form.fields['target']:
        if box._value in ('db0', 'tenant_1'):
            box.checked = True
    confirm = form.submit(headers=ADMIN)
    assert [li.get_text().split()[0] for li in confirm.html.select('#chosen li')] == [
        'db0', 'tenant_1']
    started = next(form for form in confirm.forms.values()
                   if 'confirm' in form.fields).submit(headers=ADMIN)
    assert started.status_int == 303
    deadline = time.monotonic() + 120
    run = started.follow(headers=ADMIN)
    while run.html.find(id='fanout-state').get_text() != 'done':
        assert time.monotonic() < deadline
        time.sleep(0.3)
        run = app.get(started.location, headers=ADMIN)
    rows = {tr['id']: ' '.join(tr.get_text().split())
            for tr in run.html.select('#fanout-targets tbody tr')}
    assert rows['fanout-db0'].startswith('db0 ok 1 migration in')
    assert rows['fanout-tenant_1'].startswith('tenant_1 ok 1 migration in')
    assert f.versions('db0') == f.versions('tenant_1') == ['20200101000000']
    assert f.versions('db1') == f.versions('tenant_0') == []
    # Each target's row links that target's own run page, which shows its step.
    link = run.html.select('#fanout-tenant_1 a')[0]['href']
    assert link.startswith('/migrations/targets/tenant_1/runs/')
    own = app.get(link, headers=ADMIN)
    assert 'log' in own.html.find('main').get_text()
    assert 'schema tenant_1' in own.html.find(class_='database').get_text()
    overview = app.get('/migrations', headers=ADMIN)
    assert overview.html.select('#fanouts li a')[0]['href'] == started.location.replace(
        'http://localhost', '')


def test_overview_and_runs_over_targets_need_the_permission(fleet):  # noqa: F811
    f = fleet(databases=1, schemas=0)
    app = targets_app(f)
    someone = {'X-User': 'someone'}
    app.get('/migrations', headers=someone, status=403)
    app.get('/migrations/targets/db0', headers=someone, status=403)
    app.post('/migrations/fanout', {'confirm': 'yes'}, headers=someone, status=403)
    # An admin without the CSRF token starts nothing either.
    app.post('/migrations/fanout', {'confirm': 'yes'}, headers=ADMIN, status=400)
    assert f.versions('db0') is None

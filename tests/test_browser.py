"""A real browser: log in to the standalone app, migrate, follow a long run, cancel one."""
import os
import shutil
import threading
import time

import pytest
import waitress
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

import dbmigrator
from dbmigrator.passwords import hash_password
from tests.test_targets import LOG, fleet  # noqa: F401 (the fixture)

PASSWORD = 'browser-test-password'
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMEDRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'


@pytest.fixture
def site(db, migrations):
    migrations.table('20200101000000', 'create_users', 'users')
    migrations.table('20200102000000', 'create_orders', 'orders')
    app = dbmigrator.main({'here': str(migrations.path)}, **{
        'db-connection-string': db.dsn,
        'migrations-directory': str(migrations.path),
        'dbmigrator.admin_password_hash': hash_password(PASSWORD),
    })
    srv = waitress.create_server(app, host='127.0.0.1', port=0, threads=2)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%s' % srv.effective_port
    srv.close()
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path):
    for path, package in ((CHROMIUM, 'chromium'), (CHROMEDRIVER, 'chromium-driver')):
        if not os.access(path, os.X_OK):
            pytest.fail('the page test drives a real Chromium, and %s is missing: apt-get '
                        'install chromium chromium-driver (bash .ci/run does)' % package,
                        pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run',
                 '--window-size=1200,900', '--user-data-dir=%s' % (tmp_path / 'profile')):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_login_migrate_and_see_it_applied(site, browser, db, tmp_path):
    wait = WebDriverWait(browser, 30)
    browser.get(site + '/')
    row = browser.find_element(By.ID, 'migration-20200102000000')
    assert 'state-pending' in row.get_attribute('class')
    assert browser.find_elements(By.ID, 'migrate-button') == []

    browser.find_element(By.ID, 'login-link').click()
    browser.find_element(By.ID, 'password').send_keys(PASSWORD)
    browser.find_element(By.ID, 'login-button').click()
    button = wait.until(expected_conditions.element_to_be_clickable((By.ID, 'migrate-button')))
    assert browser.find_element(By.ID, 'count-pending').text == '2'
    browser.save_screenshot(str(tmp_path / 'status-before.png'))

    button.click()
    # the confirmation step names the plan before anything runs
    confirm = wait.until(expected_conditions.element_to_be_clickable((By.ID, 'confirm-migrate')))
    assert '20200102000000 create_orders' in browser.find_element(By.ID, 'plan').text
    confirm.click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, 'run-result')))
    assert 'ok migrate 20200102000000 create_orders' in browser.find_element(
        By.TAG_NAME, 'main').text
    browser.save_screenshot(str(tmp_path / 'result.png'))
    assert db.versions() == ['20200101000000', '20200102000000']

    browser.find_element(By.LINK_TEXT, 'Back to migrations').click()
    row = wait.until(expected_conditions.presence_of_element_located(
        (By.ID, 'migration-20200102000000')))
    assert 'state-applied' in row.get_attribute('class')
    assert browser.find_element(By.ID, 'count-pending').text == '0'
    browser.save_screenshot(str(tmp_path / 'status-after.png'))
    assert (tmp_path / 'status-after.png').stat().st_size > 1000


TWENTY_SECONDS = '''\
from dbmigrator import logger


def up(cursor):
    cursor.execute('CREATE TABLE backfilled (id INT)')
    for second in range(1, 21):
        cursor.execute('SELECT pg_sleep(1)')
        logger.info('backfilled %d of 20', second)


def down(cursor):
    cursor.execute('DROP TABLE backfilled')
'''

FOREVER = '''\
def up(cursor):
    cursor.execute('CREATE TABLE never_kept (id INT)')
    cursor.execute('SELECT pg_sleep(600)')
'''


def log_in(browser, site, wait):
    browser.get(site + '/migrations/login')
    browser.find_element(By.ID, 'password').send_keys(PASSWORD)
    browser.find_element(By.ID, 'login-button').click()
    return wait.until(expected_conditions.element_to_be_clickable((By.ID, 'migrate-button')))


def elapsed(browser):
    text = browser.find_element(By.ID, 'elapsed').text
    return int(text.rstrip('s')) if text else 0


def test_long_run_progress_reload_finish_and_cancel(site, browser, db, migrations, tmp_path):
    (migrations.path / '20200103000000_backfill.py').write_text(TWENTY_SECONDS)
    (migrations.path / '20200104000000_forever.py').write_text(FOREVER)
    # The run page reloads itself when the run ends: an element read during
    # the reload is stale, and the wait simply tries again.
    wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])
    log_in(browser, site, wait)
    Select(browser.find_element(By.NAME, 'version')).select_by_value('20200103000000')
    started = time.monotonic()
    browser.find_element(By.ID, 'migrate-button').click()
    # The confirmation is a new page: wait for it before clicking.
    wait.until(expected_conditions.element_to_be_clickable((By.ID, 'confirm-migrate'))).click()
    wait.until(lambda b: '/migrations/runs/' in b.current_url)
    assert time.monotonic() - started < 10  # the request did not wait for the run
    wait.until(lambda b: b.find_element(By.ID, 'current').text == '20200103000000 backfill')
    wait.until(lambda b: elapsed(b) >= 2)
    first = elapsed(browser)
    wait.until(lambda b: elapsed(b) >= first + 2)  # growing, without a reload
    wait.until(lambda b: 'backfilled' in b.find_element(By.ID, 'output').text)
    live = browser.find_element(By.CSS_SELECTOR, 'section.live').text
    assert 'Now, step 3 of 3: 20200103000000 backfill' in live
    assert 'Steps done: 2 of 3.' in live
    # nothing waits and no strong lock is held: those lines take no room
    assert not browser.find_element(By.ID, 'waiting-for').is_displayed()
    assert not browser.find_element(By.ID, 'holding').is_displayed()
    browser.save_screenshot(str(tmp_path / 'run-progress.png'))
    browser.refresh()
    assert browser.find_element(By.ID, 'current').text == '20200103000000 backfill'
    assert 'Now, step 3 of 3:' in browser.find_element(By.CSS_SELECTOR, 'section.live').text
    assert elapsed(browser) >= first + 2
    result = wait.until(expected_conditions.presence_of_element_located((By.ID, 'run-result')))
    assert result.text == 'Done: 3 steps.'
    main = browser.find_element(By.TAG_NAME, 'main').text
    assert 'ok migrate 20200103000000 backfill' in main
    assert '+CREATE TABLE public.backfilled (' in main
    assert 'backfilled 20 of 20' in main
    browser.save_screenshot(str(tmp_path / 'run-finished.png'))
    assert db.table_exists('backfilled')

    # The run's end is recorded just before its lock is let go: until then the
    # status page (which refreshes itself) shows the run and keeps its forms off.
    browser.get(site + '/migrations')
    wait.until(expected_conditions.element_to_be_clickable((By.ID, 'migrate-button'))).click()
    wait.until(expected_conditions.element_to_be_clickable((By.ID, 'confirm-migrate'))).click()
    wait.until(lambda b: b.find_element(By.ID, 'current').text == '20200104000000 forever')
    browser.save_screenshot(str(tmp_path / 'run-cancelling.png'))
    browser.find_element(By.ID, 'cancel-button').click()
    wait.until(expected_conditions.element_to_be_clickable((By.ID, 'confirm-cancel'))).click()
    wait.until(lambda b: b.find_element(By.ID, 'run-state').text == 'interrupted')
    main = browser.find_element(By.TAG_NAME, 'main').text
    assert 'interrupted migrate 20200104000000 forever' in main
    assert 'cancelled and rolled back' in main
    browser.save_screenshot(str(tmp_path / 'run-cancelled.png'))
    assert not db.table_exists('never_kept')
    assert db.query("SELECT outcome FROM dbmigrator_history WHERE version = '20200104000000'") == [
        ('interrupted',)]
    browser.get(site + '/migrations/history')
    rows = browser.find_elements(By.CSS_SELECTOR, 'table.runs tbody tr')
    assert [r.find_elements(By.TAG_NAME, 'td')[2].text for r in rows[:2]] == ['interrupted', 'ok']
    browser.save_screenshot(str(tmp_path / 'history.png'))
    browser.set_window_size(390, 844)
    browser.get(site + '/migrations/history')
    browser.save_screenshot(str(tmp_path / 'history-narrow.png'))


def test_overview_of_targets_migrates_the_chosen_ones(browser, fleet, tmp_path):  # noqa: F811
    f = fleet(databases=2, schemas=2)
    f.add('20200101000000', 'log', LOG)
    assert f.run('init', '--targets', 'all', '--version=0').returncode == 0
    app = dbmigrator.main({'here': str(f.migrations)}, **{
        'db-connection-string': f.server.get_uri(f.main),
        'migrations-directory': str(f.migrations),
        'dbmigrator.targets': '\n'.join('db%d %s' % (i, f.server.get_uri(name))
                                        for i, name in enumerate(f.databases)),
        'dbmigrator.targets_query': 'SELECT name, schema FROM tenants',
        'dbmigrator.admin_password_hash': hash_password(PASSWORD),
    })
    srv = waitress.create_server(app, host='127.0.0.1', port=0, threads=2)
    threading.Thread(target=srv.run, daemon=True).start()
    try:
        url = 'http://127.0.0.1:%s' % srv.effective_port
        wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])
        browser.get(url + '/migrations/login')
        browser.find_element(By.ID, 'password').send_keys(PASSWORD)
        browser.find_element(By.ID, 'login-button').click()
        wait.until(expected_conditions.element_to_be_clickable((By.ID, 'migrate-chosen')))
        rows = browser.find_elements(By.CSS_SELECTOR, '#targets tbody tr')
        assert [r.get_attribute('id') for r in rows] == [
            'target-db0', 'target-db1', 'target-tenant_0', 'target-tenant_1']
        browser.save_screenshot(str(tmp_path / 'overview-wide.png'))
        browser.find_element(By.CSS_SELECTOR, 'input[value="tenant_0"]').click()
        browser.find_element(By.ID, 'migrate-chosen').click()
        wait.until(expected_conditions.element_to_be_clickable((By.ID, 'confirm-fanout'))).click()
        wait.until(lambda b: b.find_element(By.ID, 'fanout-state').text == 'done')
        row = browser.find_element(By.ID, 'fanout-tenant_0').text
        assert row.startswith('tenant_0 ok 1 migration in')
        browser.save_screenshot(str(tmp_path / 'fanout-done.png'))
        assert f.versions('tenant_0') == ['20200101000000'] and f.versions('db0') == []
        browser.set_window_size(390, 844)
        browser.get(url + '/migrations')
        browser.save_screenshot(str(tmp_path / 'overview-narrow.png'))
        assert (tmp_path / 'overview-narrow.png').stat().st_size > 1000
    finally:
        srv.close()

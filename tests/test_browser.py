"""A real browser: log in to the standalone app, migrate, see it applied."""
import shutil
import threading

import pytest
import waitress
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

import dbmigrator
from dbmigrator.passwords import hash_password

PASSWORD = 'browser-test-password'
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMEDRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'


@pytest.fixture
def server(db, migrations):
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


def test_login_migrate_and_see_it_applied(server, browser, db, tmp_path):
    wait = WebDriverWait(browser, 30)
    browser.get(server + '/')
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
    wait.until(expected_conditions.presence_of_element_located((By.CLASS_NAME, 'step')))
    assert 'Ran migration 20200102000000 create_orders' in browser.find_element(
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

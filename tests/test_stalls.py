"""A run whose connection stalls, or whose heartbeat cannot renew its lease,
ends on its own and says why; a second run names what it waits for."""
import signal
import socket
import subprocess
import threading
import time

import psycopg2

from dbmigrator import lock
from tests.conftest import dbmigrator_command, subprocess_env


class StallingProxy:
    """TCP in front of the server's socket that can stop forwarding, keeping its
    sockets open, as a stalled proxy or a network black hole does."""

    def __init__(self, socket_path, cut_after=None):
        self.socket_path = socket_path
        self.cut_after = cut_after
        self.stalled = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.kept = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            client, _ = self.listener.accept()
            self.kept.append(client)
            if self.stalled.is_set():
                continue
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.socket_path)
            self.kept.append(server)
            cut = self.cut_after if len(self.kept) == 2 else None
            for a, b, limit in ((client, server, cut), (server, client, None)):
                threading.Thread(target=self._pump, args=(a, b, limit), daemon=True).start()

    def _pump(self, source, target, limit=None):
        """Forward; with ``limit``, cut both sockets at that many client messages."""
        sent = 0
        while True:
            data = source.recv(65536)
            if not data:
                return
            sent += 1
            if limit is not None and sent > limit:
                for sock in (source, target):
                    sock.shutdown(socket.SHUT_RDWR)
                return
            if self.stalled.is_set():
                return  # holds the data, and both sockets open, for good
            target.sendall(data)


SLOW = """\
    def up(cursor):
        cursor.execute('SELECT pg_sleep(3600)')
    """


def start_slow_run(db, migrations, dsn):
    """A migrate whose migration sleeps, once its sleep has reached the server."""
    migrations.add('20200101000000', 'slow', SLOW)
    process = subprocess.Popen(dbmigrator_command(
        '--db-connection-string', dsn, '--migrations-directory', migrations.path,
        '--pooler', 'none', 'migrate', '--no-diff'), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=subprocess_env())
    deadline = time.monotonic() + 30
    while not db.query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                       "'SELECT pg_sleep(3600)%%'")[0][0]:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError('the migration did not start: %r' % (process.communicate(),))
        time.sleep(0.1)
    return process


def through_proxy(db, cut_after=None):
    port = db.query("SELECT setting FROM pg_settings WHERE name = 'port'")[0][0]
    proxy = StallingProxy('%s/.s.PGSQL.%s' % (db.socket_dir, port), cut_after)
    user = db.query('SELECT current_user')[0][0]
    return proxy, 'postgresql://%s@127.0.0.1:%d/%s' % (user, proxy.port, db.name)


def test_sigterm_ends_the_process_even_when_the_cancel_cannot_get_through(db, migrations):
    proxy, dsn = through_proxy(db)
    process = start_slow_run(db, migrations, dsn)
    proxy.stalled.set()
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - started < 20
    # 130 with a message, or SIGALRM when libpq's cancel request holds the
    # interpreter's lock.
    assert process.returncode in (130, -signal.SIGALRM), err
    if process.returncode == 130:
        assert 'does not answer the cancel request' in err


def test_a_stalled_run_stops_on_its_own_before_its_lease_expires(db, migrations):
    proxy, dsn = through_proxy(db)
    process = start_slow_run(db, migrations, dsn)
    proxy.stalled.set()
    started = time.monotonic()
    _, err = process.communicate(timeout=120)
    assert time.monotonic() - started < lock.LEASE_SECONDS
    assert process.returncode in (130, -signal.SIGALRM), err
    if process.returncode == 130:
        assert 'the migration lock could not be renewed for 15s' in err, err


def test_a_heartbeat_that_cannot_renew_cancels_the_migration_and_says_why(db, migrations):
    process = start_slow_run(db, migrations, db.dsn)
    blocker = psycopg2.connect(db.dsn)
    try:
        with blocker.cursor() as cursor:
            cursor.execute('SELECT * FROM dbmigrator_lock FOR UPDATE')
            assert cursor.rowcount == 1
        started = time.monotonic()
        _, err = process.communicate(timeout=120)
    finally:
        blocker.close()
    assert lock.RENEW_DEADLINE_SECONDS <= time.monotonic() - started < lock.LEASE_SECONDS
    assert process.returncode == 130, err
    assert ('error: the migration lock could not be renewed for 15s (the database did not '
            'answer the heartbeat), so the run stopped before its lease could expire: '
            'migration 20200101000000 slow was cancelled and rolled back') in err, err
    assert db.query('SELECT count(*) FROM schema_migrations') == [(0,)]
    assert db.query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                    "'SELECT pg_sleep(3600)%%'") == [(0,)]


def test_a_claim_that_waits_names_the_run_that_holds_the_lock(dbm, db, migrations):
    """The blocker watch samples during the claim too, not only inside up()."""
    migrations.add('20200101000000', 'quick')
    assert dbm('init', '--version', '0').code == 0
    holder = psycopg2.connect(db.dsn)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SET application_name = 'stuck-run'")
            cursor.execute('SELECT pg_advisory_xact_lock(%s), pg_backend_pid()', (lock.KEY,))
            pid = cursor.fetchone()[1]
        result = dbm('migrate', '--no-diff', '--lock-timeout', '1', '--lock-retries', '1')
    finally:
        holder.close()
    assert result.code == 1, result
    assert 'its holder had already gone' not in result.err
    assert ('gave up after 2 attempts waiting for the migration lock held by pid %d '
            '(application "stuck-run"' % pid) in result.err, result
    assert db.query('SELECT count(*) FROM schema_migrations') == [(0,)]


def test_a_connection_cut_at_any_point_of_a_run_is_one_line_and_applies_nothing_twice(
        run, db, migrations):
    db.query('CREATE TABLE ran (version TEXT)')
    for version in ('20200101000000', '20200102000000'):
        migrations.add(version, 'm' + version[-8:-6], """\
            def up(cursor):
                cursor.execute("INSERT INTO ran VALUES ('%s')")
            """ % version)
    assert run('--db-connection-string', db.dsn, '--migrations-directory', migrations.path,
               'init', '--version', '0').code == 0
    outcomes = set()
    for cut in range(1, 40):
        proxy, dsn = through_proxy(db, cut_after=cut)
        result = run('--db-connection-string', dsn, '--migrations-directory', migrations.path,
                     '--pooler', 'none', 'migrate', '--no-diff')
        assert 'unexpected error' not in result.err, (cut, result)
        assert 'Traceback' not in result.err, (cut, result)
        assert len(result.err.strip().splitlines()) <= 1, (cut, result)
        # No migration here ends its own transaction: a lost connection must not read so.
        assert 'ended its own transaction' not in result.err, (cut, result)
        outcomes.add(result.code)
        if result.code == 0:
            break
    assert 0 in outcomes, (outcomes, result)
    assert db.query('SELECT version, count(*) FROM ran GROUP BY version ORDER BY 1') == [
        ('20200101000000', 1), ('20200102000000', 1)]
    assert db.versions() == ['20200101000000', '20200102000000']

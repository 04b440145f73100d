"""Waiters behind a session-mode PgBouncer must not starve the holder's heartbeat.

With a pool of POOL_SIZE server connections and more runners than that, a
waiter that keeps its server connection while it polls leaves the holder's
heartbeat none, so its lease expires and every later runner waits it out.
"""
import time

import pytest

from dbmigrator import lock
from tests.test_pgbouncer import POOL_SIZE, Bouncer, run_many


@pytest.fixture(scope='module')
def session_pool(server):
    pool = Bouncer(server, 'session')
    yield pool
    pool.stop()


def test_more_runners_than_the_pool_finish_without_waiting_out_a_lease(
        session_pool, db, migrations):
    for i in range(5):
        migrations.add('2020010100000%d' % i, 'step_%d' % i, '''\
            import time


            def up(cursor):
                time.sleep(0.2)
            ''')
    runners = POOL_SIZE * 2 + 2
    started = time.monotonic()
    results = run_many(session_pool.dsn(db.name), migrations, runners, '--pooler', 'session',
                       'migrate', '--no-diff')
    elapsed = time.monotonic() - started
    for code, out, err in results:
        assert code == 0, err
        assert 'taken over' not in err, err
    assert sum(out.count('Running migration') for _, out, _ in results) == 5
    assert elapsed < lock.LEASE_SECONDS / 2, elapsed

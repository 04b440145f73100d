"""What lint costs next to migrate --dry-run and verify, on a target of many tables.

The target holds TABLES tables the way real projects write them (serial
keys, text columns, an index, a view and a trigger function on some), made
by applied migrations of 200 tables each; 20 pending migrations then add
columns, indexes, constraints and a backfill on tables spread over the schema.  In the same
run, interleaved, ``--repeat`` times each:

* ``migrate --dry-run`` (the baseline: plans, asks should_run, changes nothing);
* ``lint`` (schema-only dump of the target, restore on a scratch database,
  the 20 traced, the scratch dropped);
* ``verify`` (every migration up, down and up on a scratch database).

Figures are medians, as ratios to the dry run.  Deterministic counts: the
statements lint traced and the catalog reads it made for them (four each).
Usage: python bench/bench_lint.py [--tables 2000] [--repeat 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_migrate import ROOT, Server  # noqa: E402

BASE = '''def up(cursor):
    cursor.execute("""
        CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.updated := now(); RETURN NEW; END $$""")
    for i in range({first}, {last}):
        cursor.execute("CREATE TABLE t_%d (id SERIAL PRIMARY KEY, name TEXT NOT NULL,"
                       " ref INT, updated TIMESTAMPTZ)" % i)
        cursor.execute("CREATE INDEX t_%d_name ON t_%d (name)" % (i, i))
        if i % 10 == 0:
            cursor.execute("CREATE VIEW v_%d AS SELECT id, name FROM t_%d" % (i, i))
            cursor.execute("CREATE TRIGGER t_%d_touch BEFORE UPDATE ON t_%d"
                           " FOR EACH ROW EXECUTE FUNCTION touch()" % (i, i))


def down(cursor):
    for i in range({first}, {last}):
        cursor.execute("DROP TABLE t_%d CASCADE" % i)
'''
# Tables per base migration: one transaction may only lock so many objects
# (max_locks_per_transaction).
CHUNK = 200

PENDING = [
    ('ALTER TABLE t_{t} ADD COLUMN note TEXT', 'ALTER TABLE t_{t} DROP COLUMN note'),
    ('CREATE INDEX t_{t}_ref ON t_{t} (ref)', 'DROP INDEX t_{t}_ref'),
    ('ALTER TABLE t_{t} ADD CONSTRAINT t_{t}_name_len CHECK (length(name) < 200) NOT VALID',
     'ALTER TABLE t_{t} DROP CONSTRAINT t_{t}_name_len'),
    ('ALTER TABLE t_{t} ADD COLUMN flag BOOLEAN NOT NULL DEFAULT false',
     'ALTER TABLE t_{t} DROP COLUMN flag'),
    ("UPDATE t_{t} SET name = name || '' WHERE id < 100", None),
]


def make_migrations(folder, tables):
    os.makedirs(folder)
    for n, first in enumerate(range(0, tables, CHUNK)):
        with open(os.path.join(folder, '2020010100%04d_base_%d.py' % (n, n)), 'w') as handle:
            handle.write(BASE.format(first=first, last=min(first + CHUNK, tables)))
    for i in range(20):
        up, down = PENDING[i % len(PENDING)]
        table = (i * 97) % tables
        body = 'def up(cursor):\n    cursor.execute(%r)\n\n\ndef down(cursor):\n    %s\n' % (
            up.format(t=table), 'cursor.execute(%r)' % down.format(t=table) if down else 'pass')
        with open(os.path.join(folder, '2021%010d_change_%d.py' % (i, i)), 'w') as handle:
            handle.write(body)


def timed(dsn, folder, *argv, codes=(0, 1)):
    command = [sys.executable, '-m', 'dbmigrator', '-q', '--db-connection-string', dsn,
               '--migrations-directory', folder] + list(argv)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode not in codes:
        raise SystemExit('%s failed: %s' % (' '.join(argv), result.stderr))
    return time.perf_counter() - started, result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tables', type=int, default=2000)
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    server = Server()
    work = tempfile.mkdtemp(prefix='dbmigrator-bench-lint-')
    folder = os.path.join(work, 'migrations')
    make_migrations(folder, args.tables)
    dsn = server.fresh()
    timed(dsn, folder, 'init', '--version', '0', codes=(0,))
    last_base = '2020010100%04d' % ((args.tables - 1) // CHUNK)
    timed(dsn, folder, '--max-blocking', '0', 'migrate', '--no-diff', '--version', last_base,
          codes=(0,))
    times = {'migrate --dry-run': [], 'lint': [], 'verify': []}
    document = None
    for _ in range(args.repeat):
        times['migrate --dry-run'].append(timed(dsn, folder, 'migrate', '--dry-run')[0])
        seconds, out = timed(dsn, folder, '--format', 'json', 'lint')
        times['lint'].append(seconds)
        document = json.loads(out)
        times['verify'].append(timed(dsn, folder, 'verify')[0])
    base = statistics.median(times['migrate --dry-run'])
    print('target: %d tables (serial keys, indexes, %d views and triggers), 20 pending '
          'migrations' % (args.tables, args.tables // 10))
    for name, values in times.items():
        median = statistics.median(values)
        print('%-18s %7.2f s  %5.1fx the dry run' % (name, median, median / base))
    print('lint traced %d migrations, %d findings (%s)' % (
        len(document['migrations']), len(document['findings']),
        ', '.join(sorted({f['rule'] for f in document['findings']}))))
    print('catalog reads per traced statement: 4 (relations, columns, constraints, locks)')


if __name__ == '__main__':
    main()

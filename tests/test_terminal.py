"""At a terminal: coloured diffs and a closing summary; never in pipes, JSON or NO_COLOR."""
import os
import pty
import subprocess
import threading

import psycopg2

from tests.conftest import dbmigrator_command, subprocess_env


def at_terminal(db, migrations, *argv, **env):
    """Run dbmigrator with its stdout on a pseudo-terminal; what it printed there."""
    master, slave = pty.openpty()
    process = subprocess.Popen(dbmigrator_command(
        '--db-connection-string', db.dsn, '--migrations-directory', migrations.path, *argv),
        stdout=slave, stderr=subprocess.PIPE, env=subprocess_env(**env))
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(master)
    print(process.stderr.read().decode())  # shown when a test fails
    return process.returncode, b''.join(chunks).decode()


def test_a_terminal_gets_coloured_diffs_and_a_summary(db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')
    code, out = at_terminal(db, migrations, 'migrate')
    assert code == 0, out
    assert '\033[32m+CREATE TABLE public.ta (' in out
    assert '\033[36m@@' in out
    last = out.strip().splitlines()[-1]
    assert last.startswith('2 migrations applied in ') and '(slowest: 202001010' in last
    code, out = at_terminal(db, migrations, 'rollback')
    assert out.strip().splitlines()[-1].startswith('1 migration rolled back in ')


def test_no_colour_and_no_summary_with_no_color_in_pipes_or_json(db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    code, out = at_terminal(db, migrations, 'migrate', NO_COLOR='1')
    assert code == 0 and '\033[' not in out and 'applied in' not in out
    assert '+CREATE TABLE public.ta (' in out
    piped = subprocess.run(dbmigrator_command(
        '--db-connection-string', db.dsn, '--migrations-directory', migrations.path,
        'rollback'), capture_output=True, text=True, env=subprocess_env())
    assert '\033[' not in piped.stdout and 'rolled back in' not in piped.stdout
    code, out = at_terminal(db, migrations, '--format', 'json', 'migrate')
    assert '\033[' not in out and 'applied in' not in out


def test_a_terminal_shows_the_running_step_its_time_and_the_lock_it_waits_for(db, migrations):
    db.query('CREATE TABLE held (id INT)')
    migrations.add('20200101000000', 'slow', '''\
        def up(cursor):
            cursor.execute('SELECT pg_sleep(1.6)')


        def down(cursor):
            pass
        ''')
    migrations.add('20200102000000', 'locks', '''\
        def up(cursor):
            cursor.execute('LOCK TABLE held IN ACCESS EXCLUSIVE MODE')


        def down(cursor):
            pass
        ''')
    assert at_terminal(db, migrations, 'init', '--version=0')[0] == 0
    holder = psycopg2.connect(db.dsn, application_name='holding-app')
    holder.cursor().execute('LOCK TABLE held IN ACCESS SHARE MODE')
    pid = holder.info.backend_pid
    release = threading.Timer(4.0, holder.rollback)
    release.start()
    try:
        code, out = at_terminal(db, migrations, '--lock-timeout', '20', 'migrate', COLUMNS='200')
    finally:
        release.join()
        holder.close()
    assert code == 0, out
    assert '[1/2] Running 20200101000000 slow ... 1s' in out
    assert ('[2/2] Running 20200102000000 locks ... 2s, waiting for a lock on public.held '
            'held by pid %d (application "holding-app"' % pid) in out
    # the line is wiped before the next output, and the scrollback ends with the summary
    assert '\r\033[K' in out
    assert out.strip().splitlines()[-1].startswith("\033[K2 migrations applied in ")


def test_no_live_line_in_pipes_json_or_with_quiet(db, migrations):
    migrations.add('20200101000000', 'slow', '''\
        def up(cursor):
            cursor.execute('SELECT pg_sleep(1.6)')


        def down(cursor):
            pass
        ''')
    code, out = at_terminal(db, migrations, '-q', 'migrate')
    assert code == 0 and 'Running' not in out and '\r' not in out
    code, out = at_terminal(db, migrations, 'rollback', NO_COLOR='1')
    assert code == 0 and 'Rolling back migration 20200101000000 slow' in out
    assert '\r\033[K' not in out and ' ... ' not in out

"""At a terminal: coloured diffs and a closing summary; never in pipes, JSON or NO_COLOR."""
import os
import pty
import subprocess

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

"""One command over many targets: a child ``dbmigrator`` process per target.

Each target's run is a process of its own, so that its output stays whole
(it is printed under the target's name once the target is done), its
locks, prepared statements and interrupts are its own, and a schema target
can set the search path of every connection it makes.  The connection
string goes to the child in its environment, never on a command line.

At most ``jobs`` targets run at once, at most ``per_server`` of them on one
server (host and port).  ``canary`` targets run first, alone and one after
another; the rest only start when all of them succeeded.  ``on_error =
stop`` starts no target after a failure and lets the running ones finish.
"""
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

import psycopg2

from .. import store
from ..database import connect
from ..errors import EXIT_LOCK_TIMEOUT
from ..commands import RUN_ID_ENVIRONMENT, RUN_WHO_ENVIRONMENT
from ..settings import ENVIRONMENT_DSN

OK, FAILED, NOT_STARTED = 'ok', 'failed', 'not started'
# What a child's exit code means for the target: 4 and 5 are migrate
# --check's and list --strict's answers, not failures.
ANSWERS = (0, 4, 5)
# The fan-out options, which the children do not get.
OWN_OPTIONS = ('--targets', '--jobs', '--per-server', '--on-error', '--canary', '--format',
               '--db-connection-string', '--db-config-ini-key')


@dataclasses.dataclass
class Outcome:
    """What one target's run came to."""

    target: object
    outcome: str = NOT_STARTED
    exit_code: int = None
    document: dict = None
    output: str = ''
    seconds: float = 0.0
    error: str = None
    ran: bool = False  # a process of its own ran the command (and recorded its run)

    @property
    def changed(self):
        return bool(self.document and self.document.get('changed'))

    @property
    def steps(self):
        return [s for s in (self.document or {}).get('steps', []) if s.get('outcome') == 'ok']


def child_arguments(argv):
    """The command line without the fan-out's own options."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        name = word.split('=', 1)[0]
        if name in OWN_OPTIONS:
            skip = '=' not in word
            continue
        out.append(word)
    return out


def up_to_date(settings, target, migrations):
    """Whether plain ``migrate`` has nothing to do on ``target``: one connection, one
    read.  Anything uncertain (no schema_migrations yet, a repeat migration) says no."""
    from ..plan import for_migrate
    if any(m.is_repeat for m in migrations):
        return False
    try:
        conn = connect(target.dsn, settings.connect_timeout)
    except Exception:
        return False
    try:
        with conn.cursor() as cursor:
            if target.schema:
                cursor.execute("SELECT set_config('search_path', %s, false)",
                               ('"%s"' % target.schema,))
            if not store.table_exists(cursor):
                return False
            return not for_migrate(migrations, store.read(cursor)).steps
    except psycopg2.Error:
        return False
    finally:
        conn.close()


def runner(settings, argv, document=True, plain_migrate=False, runs=None):
    """``run_one(target) -> Outcome`` for :class:`Fanout`: the command line ``argv`` in
    a child process per target; with ``plain_migrate`` (a plain ``migrate``), a
    target with nothing pending is reported up to date after one read instead.
    ``runs`` (target name -> run id and who) names each target's run."""
    migrations = None
    if plain_migrate:
        from ..discovery import discover
        migrations = discover(settings.require_directories())

    def run_one(target):
        if plain_migrate and up_to_date(settings, target, migrations):
            return Outcome(target, OK, exit_code=0, document={'changed': False, 'steps': []})
        return run_child(target, argv, document=document, run=(runs or {}).get(target.name))
    return run_one


def run_child(target, argv, document=True, run=None):
    """Run the command on one target, in a child process: its :class:`Outcome`.

    With ``document`` the child prints its JSON document (read for the
    report) and its messages on stderr (its output); without, the child's
    text output is all there is, as a single run would print it.
    """
    command = [sys.executable, '-m', 'dbmigrator'] + argv + (
        ['--format', 'json'] if document else [])
    if target.schema:
        command += ['--schema', target.schema]
    env = dict(os.environ, **{ENVIRONMENT_DSN: target.dsn})
    if run is not None:
        env[RUN_ID_ENVIRONMENT], env[RUN_WHO_ENVIRONMENT] = run
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    outcome = Outcome(target, exit_code=done.returncode, ran=True,
                      output=done.stderr if document else done.stdout + done.stderr,
                      seconds=time.monotonic() - started)
    try:
        outcome.document = json.loads(done.stdout) if document and done.stdout.strip() else None
    except ValueError:
        outcome.document = None
    if done.returncode in ANSWERS:
        outcome.outcome = OK
    else:
        outcome.outcome = FAILED
        error = (outcome.document or {}).get('error') or {}
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        outcome.error = error.get('message') or (
            lines[-1].replace('dbmigrator: error: ', '') if lines else
            'exit %d' % done.returncode)
    return outcome


class Fanout:
    """Runs ``run_one(target) -> Outcome`` over the targets, as the options say;
    ``finished(outcome, done, total)`` hears each one as it ends (one at a time)."""

    def __init__(self, run_one, finished, jobs=4, per_server=2, on_error='stop', canary=0):
        self.run_one, self.finished = run_one, finished
        self.jobs, self.per_server = max(1, jobs), max(1, per_server)
        self.stop_on_error, self.canary = on_error == 'stop', max(0, canary)
        self._lock = threading.Condition()

    def run(self, targets):
        outcomes = {target.name: Outcome(target) for target in targets}
        self._done, self._total = 0, len(targets)
        first, rest = targets[:self.canary], targets[self.canary:]
        for target in first:
            self._one(target, outcomes)
            if outcomes[target.name].outcome != OK:
                return [outcomes[t.name] for t in targets]
        self._parallel(rest, outcomes)
        return [outcomes[t.name] for t in targets]

    def _one(self, target, outcomes):
        try:
            outcome = self.run_one(target)
        except Exception as exc:  # a target's trouble must not end the others' runs
            outcome = Outcome(target, FAILED, error='%s: %s' % (type(exc).__name__, exc))
        with self._lock:
            outcomes[target.name] = outcome
            self._done += 1
            self.finished(outcome, self._done, self._total)
        return outcome

    def _parallel(self, targets, outcomes):
        waiting = list(targets)
        busy = {}  # server -> targets running there
        running = []
        failed = False

        def work(target):
            outcome = self._one(target, outcomes)
            with self._lock:
                busy[target.server] -= 1
                running.remove(target.name)
                nonlocal failed
                failed = failed or outcome.outcome != OK
                self._lock.notify_all()

        with self._lock:
            while waiting or running:
                if failed and self.stop_on_error:
                    waiting = []
                startable = [t for t in waiting if busy.get(t.server, 0) < self.per_server]
                while startable and len(running) < self.jobs:
                    target = startable.pop(0)
                    waiting.remove(target)
                    busy[target.server] = busy.get(target.server, 0) + 1
                    running.append(target.name)
                    threading.Thread(target=work, args=(target,), daemon=True).start()
                    startable = [t for t in waiting
                                 if busy.get(t.server, 0) < self.per_server]
                if running:
                    self._lock.wait()
                elif waiting:  # nothing can start and nothing runs: cannot happen
                    break


def exit_code(outcomes):
    """0 when every target succeeded; 3 when the only failures were lock waits; 1
    otherwise; a child's 4 or 5 (a check's answer) when nothing failed."""
    failures = [o for o in outcomes if o.outcome == FAILED]
    if failures:
        return EXIT_LOCK_TIMEOUT if all(o.exit_code == EXIT_LOCK_TIMEOUT for o in failures) else 1
    answers = [o.exit_code for o in outcomes if o.exit_code in (4, 5)]
    return max(answers) if answers else 0

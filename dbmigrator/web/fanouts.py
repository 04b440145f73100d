"""Runs over many targets started from the page, in a thread of their own.

Each target runs in a ``dbmigrator migrate`` process of its own, as the
command line's ``--targets`` does (:mod:`dbmigrator.targets.fanout`); the
run keeps each target's outcome as it ends, for its page.  Each target's
own runs are recorded in its database, so its history page shows them.
"""
import dataclasses
import datetime
import threading
import uuid

from ..targets import fanout

# The newest runs over targets the process keeps for their pages.
KEPT = 20


@dataclasses.dataclass
class FanoutRun:
    fanout_id: str
    who: str
    started: datetime.datetime
    targets: list
    outcomes: dict = dataclasses.field(default_factory=dict)  # name -> Outcome, as they end
    finished: datetime.datetime = None
    run_ids: dict = dataclasses.field(default_factory=dict)  # name -> its target's run id

    @property
    def rows(self):
        return [self.outcomes.get(t.name) or fanout.Outcome(t, 'running' if not self.finished
                                                             else fanout.NOT_STARTED)
                for t in self.targets]


def _child_arguments(settings):
    """The command line a target's process gets: the page's settings, no config file."""
    argv = []
    for directory in settings.migrations_directories:
        argv += ['--migrations-directory', directory]
    argv += ['--super-user', settings.super_user, '--connect-timeout',
             str(settings.connect_timeout), '--lock-timeout', str(settings.lock_timeout),
             '--lock-retries', str(settings.lock_retries), '--max-blocking',
             str(settings.max_blocking), '--pooler', settings.pooler, '--diff-engine',
             settings.diff_engine]
    if settings.lock_wait is not None:
        argv += ['--lock-wait', str(settings.lock_wait)]
    return argv + ['migrate']


def start(registry, settings, targets, who):
    runs = registry.setdefault('dbmigrator.fanouts', {})
    run = FanoutRun(uuid.uuid4().hex, who, datetime.datetime.now(datetime.timezone.utc),
                    list(targets), run_ids={t.name: uuid.uuid4().hex for t in targets})
    runs[run.fanout_id] = run
    for old in sorted(runs.values(), key=lambda r: r.started)[:-KEPT]:
        del runs[old.fanout_id]
    argv = _child_arguments(settings)

    def finished(outcome, done, total):
        run.outcomes[outcome.target.name] = outcome

    def work():
        runs = {name: (run_id, who) for name, run_id in run.run_ids.items()}
        fanout.Fanout(fanout.runner(settings, argv, plain_migrate=True, runs=runs),
                      finished).run(run.targets)
        run.finished = datetime.datetime.now(datetime.timezone.utc)
    threading.Thread(target=work, name='dbmigrator-fanout-%s' % run.fanout_id[:8],
                     daemon=True).start()
    return run.fanout_id


def get(registry, fanout_id):
    return registry.get('dbmigrator.fanouts', {}).get(fanout_id)


def recent(registry):
    return sorted(registry.get('dbmigrator.fanouts', {}).values(), key=lambda r: r.started,
                  reverse=True)

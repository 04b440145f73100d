"""The plan: the one place that decides what ``migrate`` and ``rollback`` would do.

A plan is built from the discovered migrations and the ``schema_migrations``
records, before anything runs.  ``migrate``, its dry run and check, the JSON
output and the page's previews all read the same value.  Repeat migrations
are planned with reason ``repeat``: whether ``should_run`` says yes is only
known on the database, inside the migration's own transaction (or a rolled
back one for a dry run, see :func:`evaluate_should_run`).
"""
import dataclasses

UP, DOWN = 'migrate', 'rollback'

# Why a migration is in the plan.
PENDING = 'pending'
REPEAT = 'repeat'
REPEAT_UNDECIDED = 'repeat-undecided'
DEFERRED = 'deferred'
ROLLBACK = 'applied'

# Why it is not.
SKIP_DEFERRED = 'deferred'
SKIP_SHOULD_RUN = 'should_run returned false'
SKIP_AFTER_TARGET = 'newer than the target version'
SKIP_APPLIED = 'applied'

REASON_TEXT = {
    PENDING: 'pending',
    REPEAT: 'repeat',
    REPEAT_UNDECIDED: 'repeat; its should_run can only be asked once the migrations before '
                      'it have run',
    DEFERRED: 'deferred, included by --run-deferred',
    ROLLBACK: 'applied',
}


def is_deferred(migration, record):
    """Deferred as db-migrator 1.x has it.

    A ``deferred`` row defers any migration.  ``@deferred`` on ``up``
    defers a migration that has no row yet, and a repeat migration always,
    so that routine deploys never start a deferred backfill.
    """
    if record is not None and record.is_deferred:
        return True
    return migration.is_deferred and (record is None or migration.is_repeat)


@dataclasses.dataclass
class PlannedStep:
    migration: object
    action: str
    reason: str
    has_row: bool

    @property
    def version(self):
        return self.migration.version

    @property
    def name(self):
        return self.migration.name


@dataclasses.dataclass
class Skipped:
    version: str
    name: str
    reason: str


@dataclasses.dataclass
class OutOfOrder:
    version: str
    name: str
    newest_applied: str

    def __str__(self):
        return 'Warning: migration %s %s is older than the newest applied migration %s' % (
            self.version, self.name, self.newest_applied)


@dataclasses.dataclass
class Plan:
    action: str
    steps: list
    skipped: list = dataclasses.field(default_factory=list)
    out_of_order: list = dataclasses.field(default_factory=list)

    def __bool__(self):
        return bool(self.steps)


def newest_applied(records):
    """The applied version with the highest number, or None."""
    applied = [r.version for r in records.values() if not r.is_deferred]
    return max(applied, key=int) if applied else None


def for_migrate(migrations, records, version=None, run_deferred=False):
    """Pending migrations, due repeat ones, and deferred ones when asked, in order."""
    plan = Plan(UP, [])
    newest = newest_applied(records)
    for m in migrations:
        record = records.get(m.version)
        if version is not None and int(m.version) > int(version):
            plan.skipped.append(Skipped(m.version, m.name, SKIP_AFTER_TARGET))
            continue
        if is_deferred(m, record):
            if not run_deferred:
                plan.skipped.append(Skipped(m.version, m.name, SKIP_DEFERRED))
                continue
            reason = DEFERRED
        elif m.is_repeat:
            reason = REPEAT
        elif record is None:
            reason = PENDING
        else:
            plan.skipped.append(Skipped(m.version, m.name, SKIP_APPLIED))
            continue
        plan.steps.append(PlannedStep(m, UP, reason, record is not None))
        if reason == PENDING and newest is not None and int(m.version) < int(newest):
            plan.out_of_order.append(OutOfOrder(m.version, m.name, newest))
    return plan


def rollback_records(records, steps=None, version=None):
    """Records to roll back, newest applied first; deferred ones never."""
    applied = sorted((r for r in records.values() if not r.is_deferred),
                     key=lambda r: (r.applied, int(r.version)), reverse=True)
    if version is not None:
        return [r for r in applied if int(r.version) > int(version)]
    return applied[:steps]


def for_rollback(migrations, records, steps=None, version=None):
    """The newest applied migrations (or all applied after ``version``), newest first.

    As in db-migrator 1.x, only a row's NULL ``applied`` keeps it out: a
    deferred repeat migration that ``--run-deferred`` just ran is the newest
    applied step, and rolls back first.  Records whose file is gone are kept
    with ``migration`` None so that the caller can name them.
    """
    by_version = {m.version: m for m in migrations}
    plan = Plan(DOWN, [])
    for record in rollback_records(records, steps, version):
        plan.steps.append(PlannedStep(by_version.get(record.version), DOWN, ROLLBACK, True))
    for v in sorted((v for v, r in records.items() if r.is_deferred), key=int):
        m = by_version.get(v)
        plan.skipped.append(Skipped(v, m.name if m else '', SKIP_DEFERRED))
    return plan


def evaluate_should_run(plan, conn):
    """Drop the repeat steps whose ``should_run`` says no, for a dry run.

    Each ``should_run`` runs in a transaction that is rolled back, so a dry
    run changes nothing.  One that fails (it reads a table an earlier pending
    step creates, typically) is planned as due, as ``repeat-undecided``: the
    real run asks it once the steps before it have run.
    """
    kept = []
    for step in plan.steps:
        if step.migration.is_repeat:
            try:
                with conn.cursor() as cursor:
                    wanted = step.migration.should_run(cursor)
            except Exception:
                step.reason, wanted = REPEAT_UNDECIDED, True
            finally:
                conn.rollback()
            if not wanted:
                plan.skipped.append(Skipped(step.version, step.name, SKIP_SHOULD_RUN))
                continue
        kept.append(step)
    plan.steps = kept
    return plan

"""The commands, as plain functions over resolved :class:`~dbmigrator.settings.Settings`.

The CLI and the web views are thin shells over these.  Commands that write
hold the advisory lock (:mod:`dbmigrator.lock`) for their whole run and read
the database state only once they hold it.
"""
import contextlib
import dataclasses
import datetime
import logging
import os
import re
import uuid

from . import blockers, history as history_mod
from . import interrupts, lock, store
from . import plan as plan_mod
from .database import connect, describe, keeps_session, through_proxy
from .discovery import discover, read_sources
from .errors import DBMigratorError, Drift, Interrupted, NotInitialized, SettingsError
from .plan import DOWN, UP
from .runner import FAILED, INTERRUPTED, OK, Runner, Step
from .versions import MAX_DIGITS, is_version

log = logging.getLogger(__name__)

APPLIED, PENDING, DEFERRED = 'applied', 'pending', 'deferred'
RUN_ID_ENVIRONMENT, RUN_WHO_ENVIRONMENT = 'DBMIGRATOR_RUN_ID', 'DBMIGRATOR_RUN_WHO'
PLANNED = 'planned'
NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')

TEMPLATE = '''\
# Uncomment should_run if this is a repeat migration
# def should_run(cursor):
#     # TODO return True if migration should run


def up(cursor):
    # TODO migration code
    pass


def down(cursor):
    # TODO rollback code
    pass
'''

NON_ATOMIC_TEMPLATE = '''\
# atomic = False: up and down run in autocommit mode, each statement commits
# on its own (CREATE INDEX CONCURRENTLY, VACUUM...). The schema_migrations row
# is written only after up returns. If a statement fails, the ones before it
# stay applied and nothing is recorded, so write it to be re-runnable:
# IF NOT EXISTS, and drop an INVALID index left by a failed concurrent build.
atomic = False


def up(cursor):
    # TODO e.g. cursor.execute('DROP INDEX CONCURRENTLY IF EXISTS users_email_idx')
    #           cursor.execute('CREATE INDEX CONCURRENTLY users_email_idx ON users (email)')
    pass


def down(cursor):
    # TODO e.g. cursor.execute('DROP INDEX CONCURRENTLY IF EXISTS users_email_idx')
    pass
'''

NOT_INITIALIZED = ('schema_migrations table not found: run "dbmigrator init" to create it '
                   '(add --version=0 if no migration has been applied yet)')


@dataclasses.dataclass
class MigrationStatus:
    version: str
    name: str
    state: str
    repeat: bool = False
    applied_at: datetime.datetime = None
    changed: bool = False
    missing: bool = False
    out_of_order: str = None
    atomic: bool = True


@dataclasses.dataclass
class Status:
    database: str
    initialized: bool
    migrations: list
    invalid_rows: list = dataclasses.field(default_factory=list)
    running: lock.Holder = None

    def count(self, state):
        return sum(1 for m in self.migrations if m.state == state and not m.missing)

    @property
    def drift(self):
        """Applied migrations whose file changed since, or is gone."""
        return [m for m in self.migrations if m.changed or m.missing]


@dataclasses.dataclass
class Result:
    """What a command did (or, for a dry run, would do), for every report."""

    action: str
    steps: list
    plan: plan_mod.Plan = None
    dry_run: bool = False
    drift: int = 0

    @property
    def changed(self):
        return not self.dry_run and any(s.outcome == OK for s in self.steps)


@dataclasses.dataclass
class Origin:
    """Who starts a run and under which id: the CLI's user@host, the page's user."""

    who: str = None
    run_id: str = None

    def resolved(self):
        """Who and which run; a run over targets names both for each target's process
        (:mod:`dbmigrator.targets.fanout`), so that its page can link that run."""
        return Origin(self.who or os.environ.get(RUN_WHO_ENVIRONMENT) or lock.whoami(),
                      self.run_id or os.environ.get(RUN_ID_ENVIRONMENT) or uuid.uuid4().hex)


@contextlib.contextmanager
def open_database(settings, locked=True, action=None, origin=None):
    """A connection; when ``locked``, holding the migration lock and recording the run."""
    dsn = settings.require_database()
    if settings.schema:
        lock.scoped(settings.schema)
    conn = connect(dsn, settings.connect_timeout)
    interrupts.watch(conn)
    try:
        if not locked:
            yield conn
            return
        origin = (origin or Origin()).resolved()
        _require_writable(conn)
        lease = lock.Lease(conn, lambda: connect(dsn, settings.connect_timeout),
                           who=origin.who, run_id=origin.run_id,
                           keeps_session=lambda c: keeps_session(c, settings.pooler),
                           pooled=lambda c: not _direct(c, settings.pooler))
        conn = lease.acquire(settings.lock_wait)
        interrupts.watch(conn)
        conn.lease = lease
        try:
            conn.recorder = history_mod.Recorder(origin.run_id, action, origin.who,
                                                 history_mod.ensure(conn, lock.claim_key()))
            conn.recorder.start(conn)
            try:
                yield conn
            except Interrupted as exc:
                conn.recorder.finish(conn, INTERRUPTED, str(exc))
                raise
            except DBMigratorError as exc:
                conn.recorder.finish(conn, FAILED, str(exc))
                raise
            except BaseException as exc:
                conn.recorder.finish(conn, FAILED, 'unexpected error: %s' % type(exc).__name__)
                raise
            conn.recorder.finish(conn, OK)
        finally:
            conn.lease.release()
            conn.lease = conn.recorder = None
    finally:
        conn.close()


def _direct(conn, pooler):
    """True when nothing pools the connection, so a waiting run may keep it."""
    if pooler in ('session', 'transaction'):
        return False
    return pooler == 'none' or not through_proxy(conn)


def _version_arg(version, what='--version'):
    version = str(version).strip()
    if not is_version(version):
        raise SettingsError('%s must be a migration version (up to %d ASCII digits), not %r' % (
            what, MAX_DIGITS, version[:80]))
    return version


def _read_state(conn):
    with conn.cursor() as cursor:
        exists = store.table_exists(cursor)
        if exists:
            store.check_shape(cursor)
        records = store.read(cursor) if exists else store.Records()
    conn.rollback()
    return exists, records


def _prepare(conn):
    """State for a writing command: table present, readable and upgraded."""
    exists, records = _read_state(conn)
    if not exists:
        raise NotInitialized(NOT_INITIALIZED)
    records.require_valid()
    return store.upgrade(conn), records


def _require_writable(conn):
    with conn.cursor() as cursor:
        store.require_writable(cursor)
    conn.rollback()


def _statuses(migrations, records):
    out_of_order = {o.version: o.newest_applied
                    for o in plan_mod.for_migrate(migrations, records).out_of_order}
    rows = []
    for m in migrations:
        record = records.get(m.version)
        if plan_mod.is_deferred(m, record):
            state = DEFERRED
        else:
            state = PENDING if record is None else APPLIED
        changed = state == APPLIED and _edited(m, record)
        rows.append(MigrationStatus(m.version, m.name, state, m.is_repeat,
                                    record.applied if record else None, changed,
                                    out_of_order=out_of_order.get(m.version),
                                    atomic=m.is_atomic))
    known = {m.version for m in migrations}
    for version, record in records.items():
        if version not in known:
            rows.append(MigrationStatus(version, '', DEFERRED if record.is_deferred else APPLIED,
                                        applied_at=record.applied, missing=True))
    return rows


def _edited(migration, record):
    """An applied migration whose file no longer has the checksum it was applied with."""
    return bool(not migration.is_repeat and record.checksum
                and record.checksum != migration.checksum)


def _warn_drift(migrations, records):
    """Warn about applied migrations edited since, or whose file is gone.

    Works on the records directly: a table of 50000 old rows costs one
    pass, not a status object each.
    """
    known = {m.version for m in migrations}
    missing = sorted((v for v, r in records.items() if v not in known and not r.is_deferred),
                     key=int)
    if len(missing) > 3:
        log.warning('Warning: %d applied migrations have no file (%s, ...)', len(missing),
                    ', '.join(missing[:3]))
    else:
        for version in missing:
            log.warning('Warning: migration %s is applied but its file is missing', version)
    edited = 0
    for m in migrations:
        record = records.get(m.version)
        if record is not None and not plan_mod.is_deferred(m, record) and _edited(m, record):
            edited += 1
            log.warning('Warning: migration %s %s was changed after it was applied',
                        m.version, m.name)
    return len(missing) + edited


def require_no_drift(count):
    """``--strict``: drift fails a CI gate, as Flyway's validate does."""
    if count:
        raise Drift('%d applied migration%s changed since %s ran, or %s file is missing (see '
                    'the warnings above): restore the file%s, or accept an edit with '
                    '"dbmigrator mark -t VERSION"' % (
                        count, '' if count == 1 else 's', 'it' if count == 1 else 'they',
                        'its' if count == 1 else 'a', '' if count == 1 else 's'))


def _warn_out_of_order(plan, strict):
    for item in plan.out_of_order:
        log.warning('%s', item)
    if strict and plan.out_of_order:
        first = plan.out_of_order[0]
        raise SettingsError(
            'refusing to run migration %s %s out of order (--strict): it is older than the '
            'newest applied migration %s; rename it to a newer version, or run without --strict'
            % (first.version, first.name, first.newest_applied))


def _log_would_run(plan):
    """The lines a real run would print, in its order: a migrate's skips among its
    steps by version, as the run meets them."""
    lines = [(step.version, 1, '%s %s %s (%s)' % (
        'Would run migration' if step.action == UP else 'Would roll back migration',
        step.version, step.name, plan_mod.REASON_TEXT[step.reason])) for step in plan.steps]
    if plan.action == UP:
        for skipped in plan.skipped:
            if skipped.reason == plan_mod.SKIP_SHOULD_RUN:
                lines.append((skipped.version, 0, 'Skipping migration %s %s: should_run is '
                              'false' % (skipped.version, skipped.name)))
            elif skipped.reason == plan_mod.SKIP_DEFERRED:
                lines.append((skipped.version, 0, 'Skipping deferred migration %s %s' % (
                    skipped.version, skipped.name)))
        lines.sort(key=lambda line: (int(line[0]), line[1]))
    for _, _, line in lines:
        log.info('%s', line)


def _refuse_non_atomic_behind_pooler(conn, settings, plan):
    """A transaction pooler would scatter a non-atomic migration over server connections.

    Its statements, and the session-level timeouts they need, would land
    on whatever server connection is free, other clients' included.
    """
    non_atomic = [p for p in plan.steps if not p.migration.is_atomic]
    if not non_atomic or keeps_session(conn, settings.pooler):
        return
    first = non_atomic[0]
    why = ('pooler = transaction' if settings.pooler == 'transaction' else
           'the connection goes through a pooler or proxy: port %s, the server\'s is another'
           % conn.info.port)
    raise SettingsError(
        'migration %s %s is non-atomic (atomic = False) and cannot run through a transaction '
        'pooler (%s): connect to PostgreSQL directly or through a session-mode pool for this '
        'run, or set pooler = session if that is what this is; nothing was changed'
        % (first.version, first.name, why))


def _planned_steps(plan):
    return [Step(p.version, p.name, p.action, p.reason, outcome=PLANNED) for p in plan.steps]


SQL_TEMPLATE = '''\
-- dbmigrator: up{options}
-- The statements of the migration, sent as written (% needs no doubling).{explain}

-- dbmigrator: down
-- The statements that undo it; without this section the migration cannot be
-- rolled back.

-- An optional section above up makes it a repeat migration, run whenever one
-- query that returns one boolean says so:
-- -- dbmigrator: should_run
-- SELECT NOT EXISTS (SELECT 1 FROM settings WHERE name = 'x');
'''
SQL_NON_ATOMIC = '''
-- atomic=false: each statement commits on its own (CREATE INDEX CONCURRENTLY,
-- VACUUM...); the schema_migrations row is written after the last one. If one
-- fails, those before it stay applied and nothing is recorded, so write them to
-- be re-runnable (IF NOT EXISTS).'''


def generate(settings, name, non_atomic=False, as_sql=None):
    """Write a new migration skeleton (``.py``, or ``.sql`` with ``as_sql`` or the ini's
    ``generate-format = sql``); returns its path."""
    if not NAME.fullmatch(name or ''):
        raise SettingsError('migration name %r is not valid: use letters, digits and '
                            'underscores, starting with a letter (e.g. add_id_to_users)' % name)
    directory = settings.require_directories()[0]
    os.makedirs(directory, exist_ok=True)
    version = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d%H%M%S')
    if as_sql is None:
        as_sql = settings.generate_format == 'sql'
    path = os.path.join(directory, '%s_%s.%s' % (version, name, 'sql' if as_sql else 'py'))
    if as_sql:
        text = SQL_TEMPLATE.format(options=' atomic=false' if non_atomic else '',
                                   explain=SQL_NON_ATOMIC if non_atomic else '')
    else:
        text = NON_ATOMIC_TEMPLATE if non_atomic else TEMPLATE
    with open(path, 'x', encoding='utf-8') as handle:
        handle.write(text)
    log.info('Generated migration script "%s"', path)
    return path


def init(settings, version=None, origin=None):
    """Create schema_migrations and mark every migration up to ``version`` applied.

    Its steps are the migrations marked; none when the table already existed.
    """
    cutoff = _version_arg(version) if version is not None else (
        datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d%H%M%S'))
    migrations = discover(settings.require_directories())
    with open_database(settings, action='init', origin=origin) as conn:
        exists, _ = _read_state(conn)
        if exists:
            log.info('Schema migrations already initialized.')
            return Result('init', [])
        steps = []
        with conn.cursor() as cursor:
            started = datetime.datetime.now(datetime.timezone.utc)
            store.create(cursor)
            for m in migrations:
                if int(m.version) <= int(cutoff):
                    store.record_applied(cursor, m.version, m.checksum, exists=False)
                    steps.append(Step(m.version, m.name, 'init', 'applied'))
                    conn.recorder.step(cursor, steps[-1], started)
        conn.commit()
    log.info('Schema migrations initialized.')
    return Result('init', steps)


def status(settings, run_code=True):
    """What ``list`` and the status page show; never takes the lock or writes.

    With ``run_code=False`` the migration files are read, not imported, as the
    pages anyone may see need.
    """
    read = discover if run_code else read_sources
    migrations = read(settings.require_directories())
    with open_database(settings, locked=False) as conn:
        exists, records = _read_state(conn)
        running = _holder(conn)
    return Status(describe(settings.db_connection_string), exists,
                  _statuses(migrations, records), records.invalid, running)


def _holder(conn):
    with conn.cursor() as cursor:
        found = lock.holder(cursor)
    conn.rollback()
    return found


@dataclasses.dataclass
class RunState:
    """A run as its page shows it: the history rows, and live progress from the lease."""

    run: history_mod.RunRow
    live: lock.Holder = None
    waiting_for: lock.Holder = None
    now: datetime.datetime = None
    holding: blockers.Holding = None

    @property
    def state(self):
        """running, waiting, lost, or the recorded outcome (ok, failed, interrupted)."""
        if self.run.outcome != 'running':
            return self.run.outcome
        if self.live is not None:
            return 'running'
        if self.waiting_for is not None:
            return 'waiting'
        return 'lost' if (self.now - self.run.started).total_seconds() > 30 else 'running'

    @property
    def elapsed(self):
        start = self.live.current_started if self.live and self.live.current_started else None
        return (self.now - start).total_seconds() if start else None


def run_state(settings, run_id):
    """One run, from any process or host: what its page shows; None if unknown."""
    with open_database(settings, locked=False) as conn:
        with conn.cursor() as cursor:
            run = history_mod.run(cursor, run_id)
            holder = lock.holder(cursor)
            cursor.execute('SELECT now()')
            now = cursor.fetchone()[0]
            held = None
            if holder is not None and holder.run_id == run_id and holder.current_pid:
                held = blockers.holding(cursor, holder.current_pid, conn.server_version)
        conn.rollback()
    if run is None:
        return None
    mine = holder is not None and holder.run_id == run_id
    return RunState(run, holder if mine else None, None if mine else holder, now, held)


def runs(settings, limit=50):
    """The newest runs with their steps, for the History view."""
    with open_database(settings, locked=False) as conn:
        with conn.cursor() as cursor:
            found = history_mod.runs(cursor, limit)
        conn.rollback()
    return found


def start_run(settings, action, origin):
    """Record a run before it starts, so that its page exists at once (the page's runs)."""
    with open_database(settings, locked=False) as conn:
        recorder = history_mod.Recorder(origin.run_id, action, origin.who,
                                        history_mod.ensure(conn, lock.claim_key()))
        recorder.start(conn)
    return recorder.enabled


def end_run(settings, run_id, outcome, error):
    """Record how a run that never got the lock ended (e.g. --lock-wait expired)."""
    with open_database(settings, locked=False) as conn:
        history_mod.Recorder(run_id, None, None).finish(conn, outcome, error, only_running=True)


def cancel(settings, run_id):
    """Ask a running run (of any process) to stop; False if it is not running."""
    with open_database(settings, locked=False) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            return lock.request_cancel(cursor, run_id)


def history(settings, limit=50, version=None):
    """The newest recorded steps (of every run, from the CLI and the page); never writes."""
    if limit is None or int(limit) < 1:
        raise SettingsError('--limit must be 1 or more, not %s' % limit)
    if version is not None:
        version = _version_arg(version)
    with open_database(settings, locked=False) as conn:
        with conn.cursor() as cursor:
            rows = history_mod.steps(cursor, int(limit), version)
        conn.rollback()
    return rows


def _target(migrations, version):
    if version is None:
        return None
    version = _version_arg(version)
    if version not in {m.version for m in migrations}:
        raise SettingsError('unknown migration version %s: "dbmigrator list" shows the '
                            'versions' % version)
    return version


def migrate(settings, version=None, run_deferred=False, diff=True, dry_run=False,
            strict=False, origin=None, tracer=None, progress=None):
    """Run pending (and due repeat) migrations up to ``version``.

    With ``dry_run`` nothing changes and no lock is taken: the result holds
    the plan, with every ``should_run`` asked in a rolled-back transaction.
    ``tracer`` is lint's, which watches each statement on a scratch copy;
    ``progress`` is told which step runs (the terminal's live line).
    """
    migrations = discover(settings.require_directories())
    version = _target(migrations, version)
    if settings.lint != 'off' and not dry_run and tracer is None:
        from .lint.command import gate
        gate(settings, version, run_deferred)
    with open_database(settings, not dry_run, UP, origin) as conn:
        exists, records = _read_state(conn)
        if dry_run:
            if not exists and not _is_empty(conn):
                raise NotInitialized(NOT_INITIALIZED)
            records.require_valid()
            plan = plan_mod.for_migrate(migrations, records, version, run_deferred)
            _warn_out_of_order(plan, strict)
            drift = _warn_drift(migrations, records)
            plan_mod.evaluate_should_run(plan, conn)
            _log_would_run(plan)
            if not plan:
                log.info('No pending migrations.  Database is up to date.')
            return Result(UP, _planned_steps(plan), plan, dry_run=True, drift=drift)
        if not exists:
            if not _is_empty(conn):
                raise NotInitialized(NOT_INITIALIZED)
            with conn.cursor() as cursor:
                store.create(cursor)
            conn.commit()
            log.info('Created the schema_migrations table in the empty database.')
        records.require_valid()
        plan = plan_mod.for_migrate(migrations, records, version, run_deferred)
        _warn_out_of_order(plan, strict)
        _refuse_non_atomic_behind_pooler(conn, settings, plan)
        checksums = store.upgrade(conn) if plan else True
        _warn_drift(migrations, records)
        steps = Runner(conn, settings, diff=diff, checksums=checksums, tracer=tracer,
                       progress=progress).run(plan)
    if not steps:
        log.info('No pending migrations.  Database is up to date.')
    return Result(UP, steps, plan)


def _is_empty(conn):
    with conn.cursor() as cursor:
        empty = store.database_is_empty(cursor)
    conn.rollback()
    return empty


def _steps_arg(steps):
    if steps is None or int(steps) < 1:
        raise SettingsError('--steps must be 1 or more, not %s' % steps)
    return int(steps)


def rollback(settings, steps=1, version=None, diff=True, dry_run=False, origin=None,
             progress=None):
    """Roll back the last ``steps`` applied migrations, or all after ``version``.

    ``dry_run`` only plans, without the lock; the page's confirmation step
    shows that plan.
    """
    migrations = discover(settings.require_directories())
    if version is not None:
        version = _version_arg(version)
        if version != '0' and version not in {m.version for m in migrations}:
            raise SettingsError('unknown migration version %s: "dbmigrator list" shows the '
                                'versions' % version)
    else:
        steps = _steps_arg(steps)
    with open_database(settings, not dry_run, DOWN, origin) as conn:
        if dry_run:
            exists, records = _read_state(conn)
            if not exists:
                raise NotInitialized(NOT_INITIALIZED)
            records.require_valid()
            checksums = True
        else:
            checksums, records = _prepare(conn)
        plan = plan_mod.for_rollback(migrations, records, steps, version)
        missing = [p.version for p in plan.steps if p.migration is None]
        if missing:
            raise SettingsError('cannot roll back %s: the migration file is missing' %
                                ', '.join(missing))
        for p in plan.steps:
            p.migration.require_down()
        _refuse_non_atomic_behind_pooler(conn, settings, plan)
        if dry_run:
            _log_would_run(plan)
            if not plan:
                log.info('No migrations to roll back.')
            return Result(DOWN, _planned_steps(plan), plan, dry_run=True)
        done = Runner(conn, settings, diff=diff, checksums=checksums,
                      progress=progress).run(plan)
    if not done:
        log.info('No migrations to roll back.')
    return Result(DOWN, done, plan)


MARKS = {
    'completed': 'marked as completed',
    'not-completed': 'marked as not been run',
    'deferred': 'marked as deferred',
}


def mark(settings, versions, state, origin=None):
    """Record migrations as completed, not completed or deferred, all or none."""
    if state not in MARKS:
        raise SettingsError('unknown state %r: use one of %s' % (state, ', '.join(MARKS)))
    if not versions:
        raise SettingsError('mark needs at least one migration version')
    versions = [_version_arg(v, 'version') for v in versions]
    migrations = {m.version: m for m in discover(settings.require_directories())}
    with open_database(settings, action='mark', origin=origin) as conn:
        checksums, records = _prepare(conn)
        unknown = [v for v in versions if v not in migrations and v not in records]
        if unknown:
            raise SettingsError('unknown migration version %s: nothing was marked; '
                                '"dbmigrator list" shows the versions' % ', '.join(unknown))
        steps = []
        started = datetime.datetime.now(datetime.timezone.utc)
        with conn.cursor() as cursor:
            for v in versions:
                digest = migrations[v].checksum if checksums and v in migrations else None
                exists = v in records
                note = ''
                if state == 'completed' and exists and not records[v].is_deferred:
                    # Accepting the file as it is now: the migration ran when it ran.
                    store.accept(cursor, v, digest)
                    note = 'accepted the file as it is now; the date applied is kept'
                elif state == 'completed':
                    store.record_applied(cursor, v, digest, exists)
                elif state == 'deferred':
                    store.record_deferred(cursor, v, digest, exists)
                else:
                    store.remove(cursor, v, checksums)
                steps.append(Step(v, migrations[v].name if v in migrations else '', 'mark',
                                  state))
                conn.recorder.step(cursor, dataclasses.replace(
                    steps[-1], action='mark %s' % state), started, note)
        conn.commit()
    for v in versions:
        log.info('Migration %s %s', v, MARKS[state])
    return Result('mark', steps)

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

from . import lock, store
from .database import connect, describe
from .discovery import discover
from .errors import NotInitialized, SettingsError
from .runner import DOWN, UP, Runner

log = logging.getLogger(__name__)

APPLIED, PENDING, DEFERRED = 'applied', 'pending', 'deferred'
NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')

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


@dataclasses.dataclass
class Status:
    database: str
    initialized: bool
    migrations: list

    def count(self, state):
        return sum(1 for m in self.migrations if m.state == state and not m.missing)

    @property
    def drift(self):
        """Applied migrations whose file changed since, or is gone."""
        return [m for m in self.migrations if m.changed or m.missing]


@contextlib.contextmanager
def open_database(settings, locked=True):
    """A connection, holding the migration lock when ``locked``."""
    conn = connect(settings.require_database(), settings.connect_timeout)
    try:
        if not locked:
            yield conn
            return
        lock.acquire(conn, settings.lock_wait)
        try:
            yield conn
        finally:
            lock.release(conn)
    finally:
        conn.close()


def _version_arg(version, what='--version'):
    version = str(version).strip()
    if not version.isdigit():
        raise SettingsError('%s must be a migration version (digits), not %r' % (what, version))
    return version


def _read_state(conn):
    with conn.cursor() as cursor:
        exists = store.table_exists(cursor)
        records = store.read(cursor) if exists else {}
    conn.rollback()
    return exists, records


def _prepare(conn):
    """State for a writing command: table present and upgraded."""
    exists, records = _read_state(conn)
    if not exists:
        raise NotInitialized(NOT_INITIALIZED)
    return store.upgrade(conn), records


def _statuses(migrations, records):
    rows = []
    for m in migrations:
        record = records.get(m.version)
        if record is None:
            state = DEFERRED if m.is_deferred else PENDING
        else:
            state = DEFERRED if record.is_deferred else APPLIED
        changed = bool(state == APPLIED and not m.is_repeat and record.checksum
                       and record.checksum != m.checksum)
        rows.append(MigrationStatus(m.version, m.name, state, m.is_repeat,
                                    record.applied if record else None, changed))
    known = {m.version for m in migrations}
    for version, record in records.items():
        if version not in known:
            rows.append(MigrationStatus(version, '', DEFERRED if record.is_deferred else APPLIED,
                                        applied_at=record.applied, missing=True))
    return rows


def _warn_drift(rows):
    for row in rows:
        if row.missing and row.state == APPLIED:
            log.warning('Warning: migration %s is applied but its file is missing', row.version)
        elif row.changed:
            log.warning('Warning: migration %s %s was changed after it was applied',
                        row.version, row.name)


def generate(settings, name):
    """Write a new migration skeleton; returns its path."""
    if not NAME.match(name or ''):
        raise SettingsError('migration name %r is not valid: use letters, digits and '
                            'underscores, starting with a letter (e.g. add_id_to_users)' % name)
    directory = settings.require_directories()[0]
    os.makedirs(directory, exist_ok=True)
    version = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d%H%M%S')
    path = os.path.join(directory, '%s_%s.py' % (version, name))
    with open(path, 'x', encoding='utf-8') as handle:
        handle.write(TEMPLATE)
    log.info('Generated migration script "%s"', path)
    return path


def init(settings, version=None):
    """Create schema_migrations and mark every migration up to ``version`` applied.

    Returns the versions marked, or None when the table already existed.
    """
    cutoff = _version_arg(version) if version is not None else (
        datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d%H%M%S'))
    migrations = discover(settings.require_directories())
    with open_database(settings) as conn:
        exists, _ = _read_state(conn)
        if exists:
            log.info('Schema migrations already initialized.')
            return None
        marked = []
        with conn.cursor() as cursor:
            store.create(cursor)
            for m in migrations:
                if int(m.version) <= int(cutoff):
                    store.record_applied(cursor, m.version, m.checksum)
                    marked.append(m.version)
        conn.commit()
    log.info('Schema migrations initialized.')
    return marked


def status(settings):
    """What ``list`` and the status page show; never takes the lock or writes."""
    migrations = discover(settings.require_directories())
    with open_database(settings, locked=False) as conn:
        exists, records = _read_state(conn)
    return Status(describe(settings.db_connection_string), exists,
                  _statuses(migrations, records))


def migrate(settings, version=None, run_deferred=False, diff=True):
    """Run pending (and due repeat) migrations up to ``version``; returns the steps."""
    migrations = discover(settings.require_directories())
    if version is not None:
        version = _version_arg(version)
        if version not in {m.version for m in migrations}:
            raise SettingsError('unknown migration version %s: "dbmigrator list" shows the '
                                'versions' % version)
    with open_database(settings) as conn:
        exists, records = _read_state(conn)
        if not exists:
            with conn.cursor() as cursor:
                empty = store.database_is_empty(cursor)
                if not empty:
                    raise NotInitialized(NOT_INITIALIZED)
                store.create(cursor)
            conn.commit()
            log.info('Created the schema_migrations table in the empty database.')
        checksums = store.upgrade(conn)
        _warn_drift(_statuses(migrations, records))
        plan = []
        for m in migrations:
            if version is not None and int(m.version) > int(version):
                continue
            record = records.get(m.version)
            deferred = (record is not None and record.is_deferred) or (
                record is None and m.is_deferred)
            if deferred and not run_deferred:
                continue
            if m.is_repeat or record is None or record.is_deferred:
                plan.append(m)
        steps = Runner(conn, settings, diff=diff, checksums=checksums).run(plan, UP)
    if not steps:
        log.info('No pending migrations.  Database is up to date.')
    return steps


def _steps_arg(steps):
    if steps is None or int(steps) < 1:
        raise SettingsError('--steps must be 1 or more, not %s' % steps)
    return int(steps)


def _rollback_targets(records, steps, version):
    """Records to roll back, newest applied first; deferred ones never."""
    applied = sorted((r for r in records.values() if not r.is_deferred),
                     key=lambda r: (r.applied, int(r.version)), reverse=True)
    if version is not None:
        return [r for r in applied if int(r.version) > int(version)]
    return applied[:steps]


def rollback_preview(settings, steps=1):
    """What ``rollback --steps`` would roll back now; reads without the lock."""
    steps = _steps_arg(steps)
    current = status(settings)
    if not current.initialized:
        raise NotInitialized(NOT_INITIALIZED)
    by_version = {m.version: m for m in current.migrations}
    records = {m.version: store.Record(m.version, m.applied_at)
               for m in current.migrations if m.state != PENDING}
    return [by_version[r.version] for r in _rollback_targets(records, steps, None)]


def rollback(settings, steps=1, version=None, diff=True):
    """Roll back the last ``steps`` applied migrations, or all after ``version``."""
    migrations = {m.version: m for m in discover(settings.require_directories())}
    if version is not None:
        version = _version_arg(version)
        if version != '0' and version not in migrations:
            raise SettingsError('unknown migration version %s: "dbmigrator list" shows the '
                                'versions' % version)
    else:
        steps = _steps_arg(steps)
    with open_database(settings) as conn:
        checksums, records = _prepare(conn)
        applied = _rollback_targets(records, steps, version)
        missing = [r.version for r in applied if r.version not in migrations]
        if missing:
            raise SettingsError('cannot roll back %s: the migration file is missing' %
                                ', '.join(missing))
        plan = [migrations[r.version] for r in applied]
        for m in plan:
            m.require_down()
        done = Runner(conn, settings, diff=diff, checksums=checksums).run(plan, DOWN)
    if not done:
        log.info('No migrations to roll back.')
    return done


MARKS = {
    'completed': 'marked as completed',
    'not-completed': 'marked as not been run',
    'deferred': 'marked as deferred',
}


def mark(settings, versions, state):
    """Record migrations as completed, not completed or deferred, all or none."""
    if state not in MARKS:
        raise SettingsError('unknown state %r: use one of %s' % (state, ', '.join(MARKS)))
    if not versions:
        raise SettingsError('mark needs at least one migration version')
    versions = [_version_arg(v, 'version') for v in versions]
    migrations = {m.version: m for m in discover(settings.require_directories())}
    with open_database(settings) as conn:
        checksums, records = _prepare(conn)
        unknown = [v for v in versions if v not in migrations and v not in records]
        if unknown:
            raise SettingsError('unknown migration version %s: nothing was marked; '
                                '"dbmigrator list" shows the versions' % ', '.join(unknown))
        with conn.cursor() as cursor:
            for v in versions:
                digest = migrations[v].checksum if checksums and v in migrations else None
                if state == 'completed':
                    store.record_applied(cursor, v, digest)
                elif state == 'deferred':
                    store.record_deferred(cursor, v, digest)
                else:
                    store.remove(cursor, v)
        conn.commit()
    for v in versions:
        log.info('Migration %s %s', v, MARKS[state])
    return versions

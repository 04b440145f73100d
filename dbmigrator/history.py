"""Run history: who ran what, when, from where, and what it changed.

Two tables next to ``schema_migrations`` (which stays as db-migrator 1.x
expects it), created on first use: ``dbmigrator_runs``, one row per run,
and ``dbmigrator_history``, one row per step with its outcome, error,
schema diff and the log lines the migration wrote.  A successful step's row
is written in the migration's own transaction; a failed step's after the
rollback.  A role that may not create the tables gets one warning, and
everything else keeps working.  Passwords never get here: every text goes
through :func:`dbmigrator.redact.scrub`.
"""
import dataclasses
import datetime
import logging
import threading

import psycopg2

from . import own_tables
from .database import inline
from .redact import scrub

log = logging.getLogger(__name__)

OUTPUT_LINES = 500
OUTPUT_CHARS = 64 * 1024

CREATE = '''
CREATE TABLE IF NOT EXISTS dbmigrator_runs (
    run_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    started TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished TIMESTAMPTZ,
    outcome TEXT NOT NULL DEFAULT 'running',
    error TEXT,
    who TEXT,
    dbmigrator_version TEXT
);
CREATE TABLE IF NOT EXISTS dbmigrator_history (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    action TEXT NOT NULL,
    version TEXT,
    name TEXT,
    started TIMESTAMPTZ NOT NULL,
    finished TIMESTAMPTZ,
    outcome TEXT NOT NULL,
    error TEXT,
    diff TEXT,
    output TEXT,
    who TEXT,
    dbmigrator_version TEXT
);
CREATE INDEX IF NOT EXISTS dbmigrator_history_run_idx ON dbmigrator_history (run_id);
CREATE INDEX IF NOT EXISTS dbmigrator_history_version_idx ON dbmigrator_history (version)
'''


def _version():
    from . import __version__
    return __version__


_OWN = {
    'dbmigrator_runs': ('run_id', 'action', 'started', 'finished', 'outcome', 'error', 'who',
                        'dbmigrator_version'),
    'dbmigrator_history': ('id', 'run_id', 'action', 'version', 'name', 'started', 'finished',
                           'outcome', 'error', 'diff', 'output', 'who', 'dbmigrator_version'),
}


def exists(cursor):
    """Both tables are there; an error when a table of that name is someone else's."""
    found = [own_tables.found(cursor, table, columns, "dbmigrator's run history",
                              'rename that table (it may hold data); dbmigrator then makes '
                              'its own')
             for table, columns in _OWN.items()]
    return all(found)


def ensure(conn, key):
    """Create the tables once (serialised by the xact lock ``key``); False if not allowed."""
    try:
        with conn.cursor() as cursor:
            if not exists(cursor):
                cursor.execute('SELECT pg_advisory_xact_lock(%s)', (key,))
                cursor.execute(CREATE)
        conn.commit()
        return True
    except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ReadOnlySqlTransaction):
        conn.rollback()
        log.warning('Warning: cannot create dbmigrator_history (no CREATE privilege): '
                    'this run is not recorded in the history')
        return False


class Output(logging.Handler):
    """The log lines of one run's thread: what a migration wrote, for the history and the page."""

    def __init__(self, lease=None):
        super().__init__(logging.INFO)
        self.thread = threading.get_ident()
        self.lease = lease
        self.lines = []
        self.setFormatter(logging.Formatter('%(message)s'))

    def emit(self, record):
        if record.thread == self.thread:
            self.add(self.format(record))

    def add(self, line):
        if len(self.lines) >= OUTPUT_LINES:
            return
        line = scrub(line)[:OUTPUT_CHARS]
        self.lines.append(line)
        if self.lease is not None:
            self.lease.output.append(line)

    def hears_alone(self, logger):
        """True when this handler is all that ``logger``'s INFO records reach (``-q``):
        the run's own lines can then come straight here, without a log record each."""
        if not logger.isEnabledFor(logging.INFO):
            return False
        reached = False
        while logger is not None:
            if logger.filters or any(handler is not self and logging.INFO >= handler.level
                                     for handler in logger.handlers):
                return False
            reached = reached or self in logger.handlers
            logger = logger.parent if logger.propagate else None
        return reached

    def take(self):
        lines, self.lines = self.lines, []
        return lines

    def text(self):
        return '\n'.join(self.lines)[:OUTPUT_CHARS]


class Recorder:
    """Writes one run's rows; does nothing when the tables could not be made."""

    def __init__(self, run_id, action, who, enabled=True):
        self.run_id = run_id
        self.action = action
        self.who = who
        self.enabled = enabled
        self.version = _version()
        self._insert = None

    def start(self, conn):
        if not self.enabled:
            return
        with conn.cursor() as cursor:
            cursor.execute('INSERT INTO dbmigrator_runs (run_id, action, who, dbmigrator_version)'
                           ' VALUES (%s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING',
                           (self.run_id, self.action, self.who, self.version))
            # The run's own values go into the text: a step quotes only its own.
            self._insert = inline(
                cursor, 'INSERT INTO dbmigrator_history (run_id, who, dbmigrator_version, action,'
                ' version, name, started, finished, outcome, error, diff, output)'
                ' VALUES (%s, %s, %s, ', (self.run_id, self.who, self.version)
            ).replace('%', '%%') + '%s, %s, %s, %s, %s, %s, %s, %s, %s)'
        conn.commit()

    def step(self, cursor, step, started, output='', returning=True):
        """Insert a step's row with ``cursor`` (inside the migration's transaction, or after);
        its id when ``returning``."""
        if not self.enabled:
            return None
        cursor.execute(
            self._insert + (' RETURNING id' if returning else ''),
            (step.action, step.version, step.name, started,
             datetime.datetime.now(datetime.timezone.utc), step.outcome,
             scrub(step.error) if step.error else None, step.diff or None,
             scrub(output) or None))
        return cursor.fetchone()[0] if returning else None

    def set_diff(self, conn, row_id, diff):
        if not self.enabled or row_id is None or not diff:
            return
        with conn.cursor() as cursor:
            cursor.execute('UPDATE dbmigrator_history SET diff = %s WHERE id = %s', (diff, row_id))
        conn.commit()

    def failed(self, conn, step, started, output=''):
        """A failed or interrupted step's row, in its own transaction after the rollback."""
        if not self.enabled or conn.closed:
            return
        try:
            with conn.cursor() as cursor:
                self.step(cursor, step, started, output)
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            log.debug('cannot record the failed step: %s', exc)

    def finish(self, conn, outcome, error=None, only_running=False):
        if not self.enabled or conn.closed:
            return
        try:
            conn.rollback()
            with conn.cursor() as cursor:
                if not exists(cursor):
                    return
                cursor.execute('UPDATE dbmigrator_runs SET finished = clock_timestamp(),'
                               ' outcome = %%s, error = %%s WHERE run_id = %%s%s'
                               % (" AND outcome = 'running'" if only_running else ''),
                               (outcome, scrub(error) if error else None, self.run_id))
            conn.commit()
        except psycopg2.Error as exc:
            log.debug('cannot record the end of the run: %s', exc)


@dataclasses.dataclass
class StepRow:
    id: int
    run_id: str
    action: str
    version: str
    name: str
    started: datetime.datetime
    finished: datetime.datetime
    outcome: str
    error: str
    diff: str
    output: str
    who: str
    dbmigrator_version: str

    @property
    def duration(self):
        return (self.finished - self.started).total_seconds() if self.finished else None


@dataclasses.dataclass
class RunRow:
    run_id: str
    action: str
    started: datetime.datetime
    finished: datetime.datetime
    outcome: str
    error: str
    who: str
    dbmigrator_version: str
    steps: list = dataclasses.field(default_factory=list)

    @property
    def duration(self):
        return (self.finished - self.started).total_seconds() if self.finished else None


STEP_COLUMNS = ('id, run_id, action, version, name, started, finished, outcome, error, diff,'
                ' output, who, dbmigrator_version')
RUN_COLUMNS = 'run_id, action, started, finished, outcome, error, who, dbmigrator_version'


def steps(cursor, limit=50, version=None):
    """Step rows, newest first; none when there is no history yet."""
    if not exists(cursor):
        return []
    where, params = ('WHERE version = %s', [version]) if version else ('', [])
    cursor.execute('SELECT %s FROM dbmigrator_history %s ORDER BY id DESC LIMIT %%s'
                   % (STEP_COLUMNS, where), params + [limit])
    return [StepRow(*row) for row in cursor.fetchall()]


def runs(cursor, limit=50):
    """Runs, newest first, each with its steps."""
    if not exists(cursor):
        return []
    cursor.execute('SELECT %s FROM dbmigrator_runs ORDER BY started DESC LIMIT %%s'
                   % RUN_COLUMNS, (limit,))
    found = [RunRow(*row) for row in cursor.fetchall()]
    _attach_steps(cursor, found)
    return found


def run(cursor, run_id):
    """One run with its steps, or None."""
    if not exists(cursor):
        return None
    cursor.execute('SELECT %s FROM dbmigrator_runs WHERE run_id = %%s' % RUN_COLUMNS, (run_id,))
    row = cursor.fetchone()
    if row is None:
        return None
    found = RunRow(*row)
    _attach_steps(cursor, [found])
    return found


def _attach_steps(cursor, found):
    if not found:
        return
    cursor.execute('SELECT %s FROM dbmigrator_history WHERE run_id = ANY(%%s) ORDER BY id'
                   % STEP_COLUMNS, ([r.run_id for r in found],))
    by_run = {r.run_id: r for r in found}
    for row in cursor.fetchall():
        by_run[row[1]].steps.append(StepRow(*row))

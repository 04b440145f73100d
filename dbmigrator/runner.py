"""Running a plan: each ``up``/``down`` and its schema_migrations change
commit in one transaction, or not at all."""
import contextlib
import dataclasses
import datetime
import logging
import random
import time

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from . import blockers, fastdiff, history, interrupts, lock, store
from .database import (Batch, committed, connect, inline, keeps_session, local_timeouts,
                       timeout_settings)
from .discovery import error_line
from .discovery.sql import where as sql_where
from .errors import DBMigratorError, Interrupted, MigrationFailed
from .guard import ADVICE, TransactionControlRefused
from .migration_helpers import activate
from .plan import DOWN, SKIP_DEFERRED, UP
from .prepared import Statements
from .redact import scrub
from .schemadiff import SchemaDumper, unified, unified_objects

log = logging.getLogger(__name__)

OK, FAILED, INTERRUPTED = 'ok', 'failed', 'interrupted'
# Objects in the dump beyond twice as many as the prepared statements were
# planned for, before they are planned again.
REPLAN_AFTER = 64


@dataclasses.dataclass
class Step:
    """One migration that ran (or failed), for every report: text, JSON, pages."""

    version: str
    name: str
    action: str
    reason: str = ''
    outcome: str = OK
    duration: float = 0.0
    diff: str = ''
    error: str = None


def _reason(exc, migration):
    if _is_statement_timeout(exc):
        return ('a statement ran longer than --statement-timeout and was cancelled; '
                'the migration was rolled back and is not retried')
    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and (
            getattr(exc, 'pgcode', None) is None):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return 'lost the database connection: %s' % first
    if isinstance(exc, psycopg2.Error):
        diag = getattr(exc, 'diag', None)
        message = diag.message_primary if diag and diag.message_primary else str(exc).strip()
        message = message.splitlines()[0] if message else type(exc).__name__
        where = sql_where(migration, exc) if migration.is_sql else None
        return '%s: %s' % (where, message) if where else message
    if isinstance(exc, DBMigratorError):
        return str(exc)
    if isinstance(exc, SystemExit):
        return 'it called sys.exit(%s)' % (exc.code if exc.code is not None else '')
    line = error_line(exc, migration.path)
    where = ' (%s line %s)' % (migration.filename, line) if line else ''
    return '%s: %s%s' % (type(exc).__name__, exc, where)


def _safe_rollback(conn):
    try:
        conn.rollback()
    except psycopg2.Error:
        pass


@contextlib.contextmanager
def _capturing(handler):
    """Collect what this thread logs (the migrations' own logger.info lines too)."""
    logger = logging.getLogger('dbmigrator')
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _log_skips_before(say, skips, version):
    """Say 'Skipping deferred migration' in version order, between the runs, as 1.x did."""
    while skips and (version is None or int(skips[0].version) < int(version)):
        say('Skipping deferred migration %s %s', skips[0].version, skips[0].name)
        skips = skips[1:]
    return skips


def _backoff(attempt):
    """1s, 2s, 4s... with +-25% jitter, so that retrying hosts do not move in step."""
    return (2 ** (attempt - 1)) * random.uniform(0.75, 1.25)


def _is_lock_timeout(exc):
    return isinstance(exc, psycopg2.errors.LockNotAvailable)


def _is_statement_timeout(exc):
    return isinstance(exc, psycopg2.errors.QueryCanceled) and 'statement timeout' in str(exc)


def _render_or_why(render, reader, cursor, snapshot, *args):
    """``render``'s undo log (:func:`fastdiff.render` or
    :func:`fastdiff.render_committed`), or why pg_dump must show the change."""
    try:
        edit = render(reader, cursor, snapshot, *args)
    except psycopg2.Error as exc:
        if exc.pgcode is None or isinstance(exc, psycopg2.errors.QueryCanceled):
            raise
        return 'reading the catalogs failed: %s' % exc
    except Exception as exc:  # a defect of the diff must not fail the migration
        log.debug('the fast schema diff failed', exc_info=True)
        return 'the fast path failed: %s: %s' % (type(exc).__name__, exc)
    return (snapshot.why or 'the fast path gave up') if edit is None else edit


class Runner:
    """Executes a plan on one locked connection and reports each step."""

    def __init__(self, conn, settings, diff=True, checksums=True, tracer=None, progress=None):
        self.conn = conn
        self.tracer = tracer
        self.progress = progress
        self.position = (None, None)
        self.diff_path = None
        self.settings = settings
        self.checksums = checksums
        ours = keeps_session(conn, settings.pooler)
        self.dumper = SchemaDumper(conn, settings.db_connection_string, enabled=diff,
                                   schema=settings.schema,
                                   pooler=settings.pooler, session_is_ours=ours)
        self.steps = []
        self.active = None
        self.schema_changed = True
        self.fast = settings.diff_engine == 'auto'
        self.catalogs = None
        self.statements = Statements(ours)
        self._planned_for = 0
        self.rendered = None
        # (schema, why): the one schema a step left to pg_dump changed, and why it did
        self.confined_to = None
        self._snapshot = None
        self._in_step = False
        # super_user()'s edits of the step, each with its rows of ROW_COUNTS
        self._super_user_edits, self._super_user_why = [], None
        self.watch = blockers.Watch(self._monitor_connection, settings.max_blocking)
        self.recorder = conn.recorder
        self.output = history.Output(conn.lease)
        self.direct = False
        self.started_at = datetime.datetime.now(datetime.timezone.utc)
        self.row_id = None
        self.following = None
        self.ahead = None
        self.txid = None
        # txid_status(), which tells a COMMIT's error from the next claim's, is 10+.
        self.claims_ahead = conn.server_version >= 100000
        with conn.cursor() as cursor:
            self._begin_sql = inline(cursor, *local_timeouts(
                settings, conn.server_version, lock.xact_lock()))
            self._ahead_sql = inline(cursor, *local_timeouts(
                settings, conn.server_version, lock.xact_lock(wait=False)))
        self._before = None

    def _diff_ready(self):
        """Whether the step's diff was rendered before its commit."""
        return self.rendered is not None and self.rendered[1] is not None

    def _diff_after(self):
        """The diff of the migration that just committed: rendered before, finished
        with ``pg_dump --table``, or by a whole pg_dump."""
        if not self.dumper.enabled:
            return ''
        if self.rendered is not None:
            (undo_log, text), self.rendered = self.rendered, None
            if text is None:
                text = self._finish_with_tables(undo_log)
            if text is not None:
                self._before = None
                return text
        if self.confined_to is not None:
            text = self._finish_with_schema(*self.confined_to)
            if text is not None:
                return text
        if self._before is None and self._snapshot is not None:
            self._undo_super_user()
            self._before = self._snapshot.lines()
        after = self.dumper.dump()
        self._snapshot = self._snapshot_of(after)
        text = unified(self._before, after)
        self._before = after
        return text

    def _finish_with_tables(self, undo_log):
        """The diff of a step whose tables the fast path left to ``pg_dump --table``;
        None, with the snapshot as before the step, when a whole dump must show it."""
        snapshot = self._snapshot
        lines = self.dumper.dump(fastdiff.patterns(snapshot.pending))
        try:
            edit = fastdiff.fill(snapshot, snapshot.pending, lines) if lines else None
        except Exception as exc:  # a defect of the diff must not cost the step its diff
            log.debug('splicing pg_dump --table failed', exc_info=True)
            edit, snapshot.why = None, 'the fast path failed: %s: %s' % (type(exc).__name__, exc)
        if edit is None:
            snapshot.undo(undo_log)
            self.diff_path = 'pg_dump (%s)' % (snapshot.why if lines else 'pg_dump --table failed')
            return None
        text = self._rendered_diff()
        if text is None:
            snapshot.undo(edit)
            snapshot.undo(undo_log)
        return text

    def _confined(self, cursor, delta, why):
        """``(schema, why)``: the one schema of its own (not public) that a step the
        fast path refused (``why``) changed, for ``pg_dump --schema``; None when
        a whole dump must show it."""
        if self.settings.schema or self._super_user_edits or (
                cursor.connection.info.transaction_status !=
                psycopg2.extensions.TRANSACTION_STATUS_INTRANS):
            return None
        try:
            schema = fastdiff.confined(cursor, self._snapshot, delta)
            return None if schema is None else (schema, why)
        except psycopg2.Error as exc:
            if exc.pgcode is None or isinstance(exc, psycopg2.errors.QueryCanceled):
                raise
        except Exception:  # a defect of the diff must not fail the migration
            log.debug('finding the schema a migration changed failed', exc_info=True)
        return None

    def _finish_with_schema(self, schema, why):
        """The diff of a step that changed one schema alone, from ``pg_dump --schema``
        of it; None, with the snapshot as before the step, when a whole dump
        must show it."""
        snapshot = self._snapshot
        lines = self.dumper.dump(schemas=[fastdiff.pattern(schema)])
        edit = None
        if lines:
            try:
                with self.conn.cursor() as cursor:
                    now = fastdiff.relations(cursor, schema)
                edit = fastdiff.fill_schema(snapshot, schema, lines, now)
            except Exception as exc:  # a defect of the diff must not cost the step its diff
                log.debug('splicing pg_dump --schema failed', exc_info=True)
                snapshot.why = 'the fast path failed: %s: %s' % (type(exc).__name__, exc)
            finally:
                _safe_rollback(self.conn)
        if edit is None:
            self.diff_path = 'pg_dump (%s; pg_dump --schema %s: %s)' % (
                why, schema, snapshot.why if lines else 'it failed')
            return None
        self.diff_path = 'pg_dump --schema %s (%s)' % (schema, why)
        text = self._rendered_diff()
        if text is None:
            snapshot.undo(edit)
            return None
        snapshot.reindex(snapshot.relations.merged(schema, now))
        if not snapshot.editable:
            self._snapshot = self._snapshot_of(snapshot.lines())
        self._before = None
        return text

    def _snapshot_of(self, dump):
        """The fast path's view of a fresh dump, with the tables it names."""
        if not (self.fast and dump):
            return None
        with self.conn.cursor() as cursor:
            snapshot = fastdiff.Snapshot(dump, fastdiff.relations(cursor),
                                         only_schema=self.settings.schema)
        self.conn.rollback()
        return snapshot

    def _render(self, cursor, delta, read):
        """In the migration's transaction, after its code: ``(undo log, diff)`` of the
        snapshot edited to it from the catalogs (``super_user()``'s edits included),
        or None for pg_dump."""
        edit = []
        if delta:
            edit = _render_or_why(fastdiff.render, self.catalogs, cursor, self._snapshot, delta,
                                  read)
            if isinstance(edit, str):
                self.diff_path = 'pg_dump (%s)' % edit
                self.confined_to = self._confined(cursor, delta, edit)
                return None
            return self._rendered(edit, self._snapshot.pending)
        return self._rendered(edit, [])

    def _rendered(self, edit, pending, committed=False):
        """``(undo log, diff)`` of the snapshot's edit ``edit``: the diff, or None
        while the ``pending`` tables wait for ``pg_dump --table``; None when
        working the diff out failed, which leaves the step to pg_dump.
        ``committed``: a non-atomic migration's, read after it committed."""
        if pending:
            self.diff_path = 'pg_dump --table %s (%s%s)' % (
                ' '.join(fastdiff.patterns(pending)),
                'a non-atomic migration; ' if committed else '', self._snapshot.why)
            return edit, None
        self.diff_path = 'fast path (rendered from the catalogs%s)' % (
            ' after it committed' if committed else '')
        text = self._rendered_diff()
        if text is None:
            self._snapshot.undo(edit)
            return None
        return edit, text

    def _rendered_diff(self):
        """The step's diff, from the snapshot's edits; None when working it out failed
        (a defect of ours), which leaves the step to pg_dump."""
        snapshot = self._snapshot
        try:
            return unified_objects(snapshot.step_before, snapshot.objects(), snapshot.opcodes())
        except Exception as exc:  # a defect of the diff must not fail the migration
            log.debug('the fast schema diff failed', exc_info=True)
            self.diff_path = 'pg_dump (the fast path failed: %s: %s)' % (type(exc).__name__, exc)
            return None

    def super_user_opened(self, cursor):
        """A ``super_user()`` connection opens: its catalog write counts, for
        :meth:`super_user_closing`; None when the fast path does not follow it."""
        if not self._in_step or self._snapshot is None or self._super_user_why:
            return None
        reader = fastdiff.CatalogReader(cursor, Statements(False))
        counts = reader.counts(cursor)
        if counts is None:
            self._super_user_why = 'super_user(): ' + reader.why
            return None
        return reader, counts

    def super_user_closing(self, cursor, opened):
        """Before a ``super_user()`` connection commits: edit the snapshot to what it
        changed, on that connection (its own locks and transaction id tell); the
        undo log, or None."""
        if opened is None:
            self._super_user_why = self._super_user_why or 'super_user() wrote on another ' \
                'connection, which this path does not follow'
            return None
        reader, before = opened
        after = reader.counts(cursor)
        if after is None:
            self._super_user_why = 'super_user(): ' + reader.why
            return None
        delta = fastdiff.touched(before, after)
        if not delta:
            return None
        cursor.execute('SAVEPOINT dbmigrator_diff')
        reader.plan_with_indexes(cursor)
        edit = _render_or_why(fastdiff.render, reader, cursor, self._snapshot, delta)
        cursor.execute('ROLLBACK TO SAVEPOINT dbmigrator_diff')
        if not isinstance(edit, str) and self._snapshot.pending:
            self._snapshot.undo(edit)
            edit = self._snapshot.why
        if isinstance(edit, str):
            self._super_user_why = 'super_user(): %s' % edit
            return None
        self._super_user_edits.append((edit, {name: delta[name][0] for name in fastdiff.ROW_COUNTS
                                              if name in delta}))
        return edit

    def super_user_failed(self, edit):
        """The ``super_user()`` connection did not commit: its edit goes."""
        kept = [pair for pair in self._super_user_edits if pair[0] is not edit]
        if edit is not None and len(kept) < len(self._super_user_edits):
            self._super_user_edits = kept
            self._snapshot.undo(edit)

    def _undo_super_user(self):
        """pg_dump shows this step after all: the snapshot goes back to before it."""
        while self._super_user_edits:
            self._snapshot.undo(self._super_user_edits.pop()[0])

    def _begin_step(self):
        """A migration's code is about to run: edits count from here."""
        self._in_step = True
        self._super_user_edits, self._super_user_why = [], None
        if self._snapshot is not None:
            self._snapshot.begin_step()

    def _undo_render(self):
        """The migration did not commit: its edit of the snapshot goes too."""
        if self.rendered is not None:
            self._snapshot.undo(self.rendered[0])
            self.rendered = None

    def _call(self, migration, function, cursor, who):
        """Call the migration's code with its connection's transaction controls locked."""
        if migration.is_atomic:
            self.conn.lock(who)
        try:
            result = function(cursor)
        except Exception as exc:
            if migration.is_atomic and self._ended_own_transaction():
                raise DBMigratorError(
                    '%s, after it had ended its own transaction (COMMIT or ROLLBACK sent as '
                    'SQL): what ran before that, and each statement after it, stays committed, '
                    'and nothing was recorded; %s' % (_reason(exc, migration), ADVICE)) from exc
            raise
        finally:
            refused = self.conn.unlock()
        if refused:
            raise TransactionControlRefused(refused)
        return result

    def _ended_own_transaction(self):
        """True when the migration's transaction is no longer the one it began in."""
        return not self.conn.closed and self.conn.info.transaction_status not in (
            psycopg2.extensions.TRANSACTION_STATUS_INTRANS,
            psycopg2.extensions.TRANSACTION_STATUS_INERROR,
            psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN)

    def _should_run(self, migration, cursor):
        cursor.execute('SAVEPOINT dbmigrator_should_run')
        try:
            wanted = self._call(migration, migration.should_run, cursor, 'should_run')
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            raise DBMigratorError('should_run raised %s' % _reason(exc, migration))
        if not wanted:
            cursor.execute('ROLLBACK TO SAVEPOINT dbmigrator_should_run')
            self.conn.rollback()
            self._say('Skipping migration %s %s: should_run is false',
                      migration.version, migration.name)
            return False
        cursor.execute('RELEASE SAVEPOINT dbmigrator_should_run')
        return True

    def _record(self, cursor, planned):
        migration = planned.migration
        if planned.action == UP:
            store.record_applied(cursor, migration.version,
                                 migration.checksum if self.checksums else None,
                                 exists=planned.has_row)
        else:
            store.remove(cursor, migration.version, self.checksums)

    def _claim(self, cursor, planned, locked=False):
        """Take this step under the transaction lock; False if another run did it."""
        return self._claimed(planned, lock.claim(cursor, planned.version, locked))

    def _claimed(self, planned, claim):
        """Go on with the step, unless its row is no longer as the plan saw it."""
        self.txid = claim.txid
        migration = planned.migration
        if planned.action == DOWN:
            expected = 'applied'
        elif migration.is_repeat:
            expected = None
        else:
            expected = 'deferred' if planned.has_row else 'absent'
        if expected is None or claim.state == expected:
            return True
        self.conn.rollback()
        self._say('Skipping migration %s %s: another dbmigrator run has just done it',
                  migration.version, migration.name)
        return False

    def _begin(self, batch, planned):
        """Begin an atomic step with its timeouts and claim it, in one round trip;
        or none, when the last step's round trip claimed it already."""
        ahead, self.ahead = self.ahead, None
        if ahead is not None:
            if ahead.locked:
                return self._claimed(planned, ahead)
            self.conn.rollback()
        batch.execute(self._begin_sql, prepare=True)
        self._remember_counts(batch)
        return self._claim(batch, planned, locked=True)

    def _say(self, message, *args):
        """Log one of the run's INFO lines; with ``-q`` it only goes to the run's
        output, and building a log record per step would be most of its cost."""
        if self.direct:
            self.output.add(message % args)
        else:
            log.info(message, *args)

    def _announce(self, planned):
        migration = planned.migration
        if self.conn.lease is not None:
            self.conn.lease.running(migration.version, migration.name,
                                    self.conn.info.backend_pid, *self.position)
        self.output.take()
        if planned.action == UP:
            self._say('Running migration %s %s', migration.version, migration.name)
        else:
            self._say('Rolling back migration %s %s', migration.version, migration.name)

    def _atomic(self, planned):
        """One transaction: timeouts, should_run, the code and the record commit together."""
        migration = planned.migration
        with self.conn.cursor() as cursor:
            batch = Batch(cursor, self.statements)
            with self.watch.watching(self.conn.info.backend_pid):
                if not self._begin(batch, planned):
                    return False
            counted = self.dumper.enabled and self.catalogs is not None
            calls = self.active.super_user_calls
            if counted:
                self._begin_step()
            if planned.action == UP and migration.is_repeat:
                if not self._should_run(migration, cursor):
                    return False
            self._announce(planned)
            function = migration.up if planned.action == UP else migration.down
            with self.watch.watching(self.conn.info.backend_pid, guard=True):
                self._call(migration, function, self._traced(cursor, migration), 'an atomic '
                           'migration')
            if self.conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_INTRANS:
                raise DBMigratorError(
                    'it ended its own transaction (COMMIT or ROLLBACK): what ran before that '
                    'stays committed and nothing was recorded; ' + ADVICE)
            if counted:
                self._catalog_changes(batch, calls)
            self._bookkeeping(batch, planned)
        return True

    def _traced(self, cursor, migration):
        """The cursor the migration's code gets: lint's tracing one, or its own."""
        return cursor if self.tracer is None else self.tracer.begin(cursor, migration)

    def _bookkeeping(self, batch, planned):
        """The schema_migrations change, the history row and the COMMIT, in one
        round trip with what ``batch`` still holds back; and, when this step
        and the next are atomic, the next one's BEGIN and claim too.

        When a diff is still to come (from pg_dump, after the commit) the
        history row's id is needed for it, and the COMMIT goes on its own.
        So it does after the last step, which leaves the connection as
        psycopg2 expects it.
        """
        diff_to_come = self.dumper.enabled and self.schema_changed and not self._diff_ready()
        self._record(batch, planned)
        self._history_row(batch, planned, diff_to_come)
        following = self.following
        if following is None or diff_to_come:
            batch.send()
            self.conn.commit()
        elif self.claims_ahead and planned.migration.is_atomic and (
                following.migration.is_atomic):
            self._commit_and_claim(batch, following)
        else:
            batch.commit()

    def _commit_and_claim(self, batch, following):
        """COMMIT, then begin and claim ``following`` in the same round trip.

        The lock is only tried, so that nothing after the COMMIT can wait;
        when it was busy the step claims again, waiting, on its own.  After
        an error the committed step's ``txid`` tells whose the error was: a
        failure of the claim is left for the next step to meet again.
        """
        batch.execute('COMMIT')
        for statement in self._replans():
            batch.execute(statement)
        batch.execute('BEGIN')
        batch.execute(self._ahead_sql, prepare=True)
        self._remember_counts(batch)
        try:
            self.ahead = lock.claim(batch, following.version, tried=True)
        except psycopg2.Error as exc:
            self.statements.forget()
            if exc.pgcode is None:
                raise
            _safe_rollback(self.conn)
            if not committed(self.conn, self.txid):
                raise
            log.debug('claiming migration %s ahead failed: %s', following.version, exc)

    def _schema_size(self):
        return len(self._snapshot.sections) if self._snapshot is not None else 0

    def _replans(self):
        """Between two steps, when the schema has doubled since the prepared statements
        were planned: their DEALLOCATEs, to plan them again for its size.  A
        run that starts on an empty database would otherwise read the
        catalogs of thousands of tables with the plans of a few: at 1000
        tables the step's catalog read took 3.5 times as long."""
        size = self._schema_size()
        if self.catalogs is None or size < 2 * self._planned_for + REPLAN_AFTER:
            return []
        self._planned_for = size
        return self.statements.replan()

    def _remember_counts(self, batch):
        """What a step's catalog changes are counted from, kept in its transaction by
        the round trip that begins and claims it."""
        if self.catalogs is not None and self.dumper.enabled:
            self.catalogs.remember(batch)

    def _catalog_changes(self, batch, super_user_calls):
        """What the migration wrote to the catalogs, and its diff when the fast path can tell.

        No catalog write, and no super_user() call (another connection), mean
        the schema cannot have changed: no dump at all.  The end of the fast
        path's savepoint stays in ``batch`` for the bookkeeping's round trip.
        """
        fast = self._snapshot is not None
        if fast:
            batch.execute('SAVEPOINT dbmigrator_diff')
            # The fast path's settings, in the same round trip; the savepoint undoes them.
            fastdiff.CatalogReader.plan_with_indexes(batch)
            delta, read = self.catalogs.step(batch)
        else:
            delta = self.catalogs.changes(batch)
        self._in_step = False
        if delta:
            delta = self._net_of_super_user(delta)
        other_connection = self.active.super_user_calls != super_user_calls
        self.schema_changed = delta != {} or other_connection
        why = self._super_user_why if other_connection else None
        if delta is None:
            why = self.catalogs.why
        self.diff_path = ('no dump (the catalogs did not change)' if not self.schema_changed
                          else 'pg_dump (%s)' % why if why else self._no_fast_path())
        if fast:
            if self.schema_changed and not why:
                self.rendered = self._render(batch, delta, read)
            batch.execute('ROLLBACK TO SAVEPOINT dbmigrator_diff')

    def _net_of_super_user(self, delta):
        """The step's counts less the rows (domain constraints, what names an
        extension) that its ``super_user()`` connections committed: those
        counts are of the whole database, where the step sees their commits."""
        for _, rows in self._super_user_edits:
            for name, count in rows.items():
                left = delta.get(name, (0, 0, 0))[0] - count
                if left:
                    delta[name] = (left, 0, 0)
                else:
                    delta.pop(name, None)
        return delta

    def _no_fast_path(self):
        if self._snapshot is not None:
            return 'pg_dump'
        if not self.fast:
            return 'pg_dump (--diff-engine pg_dump)'
        return 'pg_dump (no fast path on this connection: behind a pooler, or no first dump)'

    def _non_atomic(self, planned):
        """Autocommit: each statement commits on its own; the record is written after."""
        migration = planned.migration
        with self.conn.cursor() as cursor:
            with self.watch.watching(self.conn.info.backend_pid):
                if not self._claim(Batch(cursor, self.statements), planned):
                    return False
            wanted = planned.action != UP or not migration.is_repeat or self._should_run(
                migration, cursor)
        self.conn.rollback()
        if not wanted:
            return False
        self._announce(planned)
        function = migration.up if planned.action == UP else migration.down
        counted = self.dumper.enabled and self.catalogs is not None
        calls = self.active.super_user_calls
        written = None
        self.conn.autocommit = True
        try:
            with self.conn.cursor() as cursor:
                values = timeout_settings(self.settings, self.conn.server_version)
                for name, value in values.items():
                    cursor.execute('SELECT set_config(%s, %s, false)', (name, value))
                before = self.catalogs.totals(cursor) if counted else None
                since = fastdiff.horizon(cursor) if counted and self._snapshot else None
                try:
                    with self.watch.watching(self.conn.info.backend_pid, guard=True):
                        function(self._traced(cursor, migration))
                    if counted:
                        written = self._non_atomic_changes(cursor, before, calls)
                finally:
                    if not self.conn.closed:
                        for name in values:
                            cursor.execute('RESET ' + name)
        finally:
            if not self.conn.closed:
                self.conn.autocommit = False
        if written and since is not None:
            self._render_committed(written, since)
        # Not prepared: the migration's code, which has committed, may have dropped them.
        with self.conn.cursor() as cursor:
            self._bookkeeping(Batch(cursor), planned)
        return True

    def _non_atomic_changes(self, cursor, before, super_user_calls):
        """What a non-atomic migration, now committed, wrote to the catalogs (name ->
        counts), from the server's write counts with this backend's pending
        ones before and after its code; None when it wrote nothing, or when
        the counts cannot tell.  Writes of other sessions meanwhile count
        too; a ``super_user()`` connection reports its own only as it
        closes, which may be later."""
        after = self.catalogs.totals(cursor)
        written = None
        if before is None or after is None:
            why = self.catalogs.why
        elif self.active.super_user_calls != super_user_calls:
            why = 'it used super_user(), whose connection reports its catalog writes as it closes'
        else:
            written = {name: counts for name, counts in fastdiff.touched(before, after).items()
                       if name not in fastdiff.UNSHOWN}
            if not written:
                self.schema_changed = False
                self.diff_path = 'no dump (the catalogs did not change)'
                return None
            why = 'the catalogs changed while it ran: %s' % ', '.join(sorted(written))
        self.diff_path = 'pg_dump (a non-atomic migration; %s)' % why
        return written

    def _render_committed(self, delta, since):
        """After a non-atomic migration that wrote ``delta`` to the catalogs: the
        tables it changed rendered, or left to ``pg_dump --table``; or why a
        whole dump shows it.  It has committed: nothing here may fail it."""
        snapshot = self._snapshot
        snapshot.begin_step()
        try:
            with self.conn.cursor() as cursor:
                fastdiff.CatalogReader.plan_with_indexes(cursor)
                edit = _render_or_why(fastdiff.render_committed, self.catalogs, cursor, snapshot,
                                      delta, since)
        except psycopg2.Error as exc:
            self.statements.forget()
            edit = 'reading the catalogs failed: %s' % exc
        finally:
            _safe_rollback(self.conn)
        if isinstance(edit, str):
            self.diff_path = 'pg_dump (a non-atomic migration; %s)' % edit
            return
        self.rendered = self._rendered(edit, snapshot.pending, committed=True)

    def _history_row(self, cursor, planned, diff_to_come):
        """The step's history row, committed with the migration; a diff from
        pg_dump follows, by the row's id."""
        if self.recorder is not None:
            diff = self.rendered[1] if self._diff_ready() else ''
            self.row_id = self.recorder.step(
                cursor, Step(planned.version, planned.name, planned.action, planned.reason,
                             diff=diff), self.started_at, self.output.text(), diff_to_come)

    def _monitor_connection(self):
        return connect(self.settings.db_connection_string, self.settings.connect_timeout)

    def _run_one(self, planned):
        """Run one migration; again, with no prepared statement, after an atomic one
        dropped them (``DEALLOCATE ALL``): it was rolled back whole."""
        try:
            return self._attempts(planned)
        except psycopg2.errors.InvalidSqlStatementName:
            if not (planned.migration.is_atomic and self.statements.enabled):
                raise
            _safe_rollback(self.conn)
            self.statements.enabled = False
            return self._attempts(planned)

    def _attempts(self, planned):
        """Run one migration, retrying an atomic one that hit the lock timeout."""
        migration = planned.migration
        attempts = 1 + (self.settings.lock_retries if migration.is_atomic else 0)
        self.started_at = datetime.datetime.now(datetime.timezone.utc)
        self.row_id = None
        for attempt in range(1, attempts + 1):
            self.watch.last = self.watch.blocked = None
            self.schema_changed = True
            self.rendered = self.diff_path = self.confined_to = None
            try:
                if migration.is_atomic:
                    return self._atomic(planned)
                return self._non_atomic(planned)
            except BaseException as exc:
                self._undo_render()
                self.statements.forget()
                if not _is_lock_timeout(exc):
                    raise
                _safe_rollback(self.conn)
                blocker = self.watch.last
                held = str(blocker) if blocker else (
                    'a lock (its holder was not seen: it let go before the wait could be sampled)')
                if attempt == attempts:
                    raise DBMigratorError(
                        'gave up after %d attempt%s waiting for %s: retry later, or raise '
                        '--lock-timeout' % (attempt, '' if attempt == 1 else 's', held))
                delay = _backoff(attempt)
                log.warning('Migration %s %s waited %gs for %s; rolled back, retrying in %.1fs '
                            '(attempt %d of %d)', migration.version, migration.name,
                            self.settings.lock_timeout, held, delay, attempt + 1, attempts)
                time.sleep(delay)

    def run(self, plan):
        """Run the plan's steps in order; stop at the first failure."""
        if plan.steps and self.dumper.enabled:
            # The first dump runs while the catalog reads are planned.
            dumped = self.dumper.started()
            try:
                with self.conn.cursor() as cursor:
                    self.catalogs = fastdiff.CatalogReader(cursor, self.statements)
                self.conn.rollback()
            finally:
                self._before = dumped()
            self._snapshot = self._snapshot_of(self._before)
            self._planned_for = self._schema_size()
        interrupts.reset()
        skips = [s for s in plan.skipped if s.reason == SKIP_DEFERRED] if plan.action == UP else []
        with activate(self.settings, self.tracer, schema=self) as self.active, \
                contextlib.closing(self.watch), _capturing(self.output):
            self.direct = self.output.hears_alone(log)
            for index, planned in enumerate(plan.steps, 1):
                self.following = plan.steps[index] if index < len(plan.steps) else None
                self.position = (index, len(plan.steps))
                skips = _log_skips_before(self._say, skips, planned.version)
                migration = planned.migration
                started = time.monotonic()
                try:
                    if self.cancelled or interrupts.requested():
                        raise KeyboardInterrupt
                    with self._shown(planned):
                        ran = self._run_one(planned)
                except KeyboardInterrupt:
                    _safe_rollback(self.conn)
                    self._fail(planned, started, INTERRUPTED, Interrupted(
                        '%s: migration %s %s was %s' % (
                            interrupts.reason() or 'interrupted',
                            migration.version, migration.name,
                            'rolled back' if migration.is_atomic else 'stopped')
                        + _left(migration)))
                except BaseException as exc:  # SystemExit, GeneratorExit: the migration's failure
                    _safe_rollback(self.conn)
                    if self.watch.blocked is not None and isinstance(
                            exc, psycopg2.errors.QueryCanceled):
                        self._fail(planned, started, FAILED, MigrationFailed(
                            'Migration %s %s was cancelled%s: %s%s' % (
                                migration.version, migration.name,
                                ' and rolled back' if migration.is_atomic else '',
                                self.watch.blocked, _left(migration))))
                    if interrupts.requested() or self._cancelled_by(exc):
                        self._fail(planned, started, INTERRUPTED, Interrupted(
                            '%s: migration %s %s was cancelled%s' % (
                                interrupts.reason() or 'interrupted',
                                migration.version, migration.name,
                                ' and rolled back' if migration.is_atomic else '')
                            + _left(migration)))
                    verb = 'Migration' if planned.action == UP else 'Rollback of migration'
                    self._fail(planned, started, FAILED, MigrationFailed('%s %s %s failed: %s%s' % (
                        verb, migration.version, migration.name,
                        scrub(_reason(exc, migration)), _left(migration))))
                if not ran:
                    continue
                duration = time.monotonic() - started
                recorded = self._diff_ready()
                diff = self._diff_after() if self.schema_changed else ''
                if self.dumper.enabled:
                    log.debug('schema diff of %s %s: %s', migration.version, migration.name,
                              self.diff_path or 'pg_dump (a non-atomic migration)')
                if self.recorder is not None and not recorded:
                    self.recorder.set_diff(self.conn, self.row_id, diff)
                if diff:
                    self._say('%s', diff)
                self.steps.append(Step(migration.version, migration.name, planned.action,
                                       planned.reason, OK, duration, diff))
        self.direct = False
        _log_skips_before(self._say, skips, None)
        return self.steps

    @contextlib.contextmanager
    def _shown(self, planned):
        """Tell the terminal's live line (if any) which step runs, and what it waits for."""
        if self.progress is None:
            yield
            return
        self.progress.begin(planned, self.position, lambda: self.watch.now)
        try:
            yield
        finally:
            self.progress.end()

    @property
    def cancelled(self):
        """Cancel was asked for from a page (of any process) through the lease."""
        return self.conn.lease is not None and self.conn.lease.cancelled

    def _cancelled_by(self, exc):
        if self.conn.lease is None:
            return False
        if isinstance(exc, psycopg2.errors.QueryCanceled):
            return self.conn.lease.check_cancelled()
        return self.conn.lease.cancelled

    def _fail(self, planned, started, outcome, error):
        step = Step(planned.version, planned.name, planned.action, planned.reason,
                    outcome, time.monotonic() - started, '', str(error))
        self.steps.append(step)
        if self.recorder is not None:
            self.recorder.failed(self.conn, step, self.started_at, self.output.text())
        error.steps = list(self.steps)
        raise error


def _left(migration):
    """What a failed non-atomic migration leaves behind, in words."""
    if migration.is_atomic:
        return ''
    return ('. It is non-atomic (atomic = False): the statements that had completed stay '
            'applied (a failed CREATE INDEX CONCURRENTLY leaves an INVALID index) and nothing '
            'was recorded; make it re-runnable (IF NOT EXISTS, drop an invalid index first) '
            'and run it again')

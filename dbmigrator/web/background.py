"""Runs started from the page go on in a thread of their own, not in the request.

The request records the run and returns a redirect to its page at once;
closing the browser does not stop it.  Everything the page later shows
comes from the database (the lease and the history rows), so any worker
process or host can show it, and so can the CLI's ``history``.
"""
import dataclasses
import datetime
import logging
import threading
import uuid

from .. import commands
from ..errors import DBMigratorError, Interrupted

log = logging.getLogger(__name__)


def start(settings, action, origin, **kwargs):
    """Start ``commands.<action>`` for the page; returns the run id.

    Raises :class:`DBMigratorError` when the run cannot even be recorded
    (the database is down, say), so the request can say so.
    """
    origin = origin.resolved()
    commands.start_run(settings, action, origin)
    function = commands.migrate if action == 'migrate' else commands.rollback
    thread = threading.Thread(target=_run, args=(settings, function, origin, kwargs),
                              name='dbmigrator-run-%s' % origin.run_id[:8], daemon=True)
    thread.start()
    return origin.run_id


def _run(settings, function, origin, kwargs):
    try:
        function(settings, origin=origin, **kwargs)
    except DBMigratorError as exc:
        outcome = 'interrupted' if isinstance(exc, Interrupted) else 'failed'
        _end(settings, origin.run_id, outcome, str(exc))
    except Exception as exc:  # a thread has nobody to raise to: record it
        log.exception('dbmigrator run %s failed', origin.run_id)
        _end(settings, origin.run_id, 'failed', 'unexpected error: %s: %s' % (
            type(exc).__name__, exc))


def _end(settings, run_id, outcome, error):
    """Runs that ended before holding the lock have only their run row to say so."""
    try:
        commands.end_run(settings, run_id, outcome, error)
    except DBMigratorError as exc:
        log.warning('cannot record the end of run %s: %s', run_id, exc)


@dataclasses.dataclass
class SafetyCheck:
    """One "Check safety" of the page: ``lint`` of the pending migrations, in a thread."""

    check_id: str
    started: datetime.datetime
    state: str = 'running'
    result: object = None
    error: str = None

    @property
    def errors(self):
        """The unaccepted error findings: migrating past them needs a confirmation."""
        if self.result is None:
            return []
        return [f for f in self.result.findings if f.severity == 'error' and not f.accepted]


def start_check(settings, registry):
    """Lint the pending migrations for the page; the check is kept in the registry,
    the newest as ``dbmigrator.last_check`` (so a check is seen by its own process)."""
    check = SafetyCheck(uuid.uuid4().hex, datetime.datetime.now(datetime.timezone.utc))
    with _checks_lock:
        checks = registry.setdefault('dbmigrator.checks', {})
        checks[check.check_id] = check
        for old in sorted(checks.values(), key=lambda c: c.started)[:-CHECKS_KEPT]:
            del checks[old.check_id]
        registry['dbmigrator.last_check'] = check
    threading.Thread(target=_check, args=(settings, check), daemon=True,
                     name='dbmigrator-check-%s' % check.check_id[:8]).start()
    return check.check_id


CHECKS_KEPT = 20
_checks_lock = threading.Lock()


def _check(settings, check):
    from ..lint import lint
    try:
        check.result = lint(settings, scratch=settings.lint_scratch,
                            big_table_rows=settings.big_table_rows)
        check.state = 'done'
    except DBMigratorError as exc:
        check.error, check.state = str(exc), 'failed'
    except Exception as exc:  # a thread has nobody to raise to: show it on the page
        log.exception('dbmigrator safety check %s failed', check.check_id)
        check.error, check.state = 'unexpected error: %s: %s' % (type(exc).__name__, exc), 'failed'

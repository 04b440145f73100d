"""Runs started from the page go on in a thread of their own, not in the request.

The request records the run and returns a redirect to its page at once;
closing the browser does not stop it.  Everything the page later shows
comes from the database (the lease and the history rows), so any worker
process or host can show it, and so can the CLI's ``history``.
"""
import logging
import threading

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

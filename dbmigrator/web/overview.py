"""The page's overview of many targets: one row per target, read side by side."""
import concurrent.futures
import dataclasses

from .. import commands, reports
from ..errors import DBMigratorError
from ..redact import scrub
from ..targets import config, fanout, report

# Targets read at once for the overview: each is a connection and two reads.
READERS = 8


@dataclasses.dataclass
class Row:
    target: object
    pending: int = None
    newest_applied: str = None
    last_run: object = None
    drift: list = dataclasses.field(default_factory=list)
    error: str = None


def _read(settings, target):
    try:
        own = config.settings_for(settings, target)
        status = commands.status(own, run_code=False)
        runs = commands.runs(own, limit=1)
    except DBMigratorError as exc:
        return fanout.Outcome(target, fanout.FAILED, error=scrub(exc)), None
    document = reports.status_json(status)
    return fanout.Outcome(target, fanout.OK, document=document), runs[0] if runs else None


def rows(settings, targets):
    with concurrent.futures.ThreadPoolExecutor(READERS) as pool:
        read = list(pool.map(lambda t: _read(settings, t), targets))
    outcomes = [outcome for outcome, _ in read]
    drift = report.drift(outcomes)
    found = []
    for outcome, last_run in read:
        row = Row(outcome.target, last_run=last_run, error=outcome.error,
                  drift=drift.get(outcome.target.name, []))
        if outcome.outcome == fanout.OK:
            row.pending = outcome.document['pending']
            row.newest_applied = report.newest_applied(outcome.document)
        found.append(row)
    return found

"""The ``lint`` command: plan as ``migrate`` would, trace on a scratch copy, report."""
import dataclasses
import logging

from .. import commands, scratch as scratch_mod
from ..database import connect, describe
from ..discovery import discover
from ..errors import MigrationFailed
from . import copy, sizes as sizes_mod
from .rules import ERROR
from .trace import Tracer

log = logging.getLogger(__name__)

DEFAULT_BIG_TABLE_ROWS = 100000


@dataclasses.dataclass
class LintResult:
    target: str
    server_version: int
    scratch: str
    scratch_version: int
    findings: list
    steps: list
    failure: str = None
    strict: bool = False

    @property
    def ok(self):
        failing = [f for f in self.findings if not f.accepted
                   and (f.severity == ERROR or self.strict)]
        return not failing and self.failure is None


def lint(settings, version=None, run_deferred=False, everything=False, scratch='database',
         big_table_rows=DEFAULT_BIG_TABLE_ROWS, strict=False):
    """Trace the migrations ``migrate`` would run (``everything``: all of them, from an
    empty database) on a scratch copy; never writes to the target."""
    discover(settings.require_directories())
    target_dsn = settings.require_database()
    target = connect(target_dsn, settings.connect_timeout)
    try:
        server_version = target.server_version
        sizes = {} if everything else sizes_mod.read(target)
        with scratch_mod.place(settings, scratch, 'lint') as (dsn, where):
            if not everything:
                copy.copy_schema(target, target_dsn, dsn, settings.connect_timeout)
            target.close()
            scratch_settings = dataclasses.replace(settings, db_connection_string=dsn,
                                                   lock_wait=0, max_blocking=0, lint='off')
            probe = connect(dsn, settings.connect_timeout)
            scratch_version = probe.server_version
            probe.close()
            if everything:
                with scratch_mod.quiet():
                    commands.init(scratch_settings, version='0')
            tracer = Tracer(sizes, big_table_rows)
            failure = None
            with scratch_mod.quiet():
                try:
                    result = commands.migrate(scratch_settings, version=version,
                                              run_deferred=run_deferred, diff=True,
                                              tracer=tracer)
                    steps = result.steps
                except MigrationFailed as exc:
                    steps, failure = exc.steps, str(exc)
    finally:
        target.close()
    return LintResult(describe(target_dsn), server_version, where, scratch_version,
                      tracer.findings, steps, failure, strict)


def gate(settings, version=None, run_deferred=False):
    """``migrate``'s own lint (ini ``lint = warn|refuse``): warn of each finding, and with
    ``refuse`` stop before anything changes when one is an unaccepted error."""
    result = lint(settings, version=version, run_deferred=run_deferred,
                  scratch=settings.lint_scratch, big_table_rows=settings.big_table_rows)
    for finding in result.findings:
        log.warning('Warning: lint: %s; instead: %s', finding, finding.advice)
    if result.failure:
        log.warning('Warning: lint: the scratch copy stopped: %s', result.failure)
    errors = [f for f in result.findings if f.severity == ERROR and not f.accepted]
    if errors and settings.lint == 'refuse':
        raise MigrationFailed(
            'lint found %d unaccepted error%s (above), so nothing was changed (lint = refuse): '
            'make the migration safe, accept the rule with lint_accept, or set lint = warn'
            % (len(errors), '' if len(errors) == 1 else 's'))

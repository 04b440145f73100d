"""``lint``: what the pending migrations will lock, rewrite or scan, before they run.

The migrations are applied, exactly as ``migrate`` would, to a scratch copy of
the target's schema (:mod:`.copy`); after each statement the tracer
(:mod:`.trace`) reads what it did to relations that existed before the
migration began, and the rules (:mod:`.rules`) weigh it with the target's
own sizes (:mod:`.sizes`).  The target is only read.
"""
from .command import LintResult, lint
from .rules import RULES, Finding

__all__ = ('Finding', 'LintResult', 'RULES', 'lint')

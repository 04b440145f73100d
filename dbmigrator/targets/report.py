"""The one report of a run over many targets: a line per target, a summary,
the JSON document, and ``list``'s drift matrix."""
import collections

from ..redact import scrub
from .fanout import FAILED, NOT_STARTED, OK


def _count(n, noun):
    return '%d %s%s' % (n, noun, '' if n == 1 else 's')


def newest_applied(document):
    applied = [m['version'] for m in (document or {}).get('migrations', [])
               if m.get('state') == 'applied']
    return max(applied, key=int) if applied else None


def _pending(document):
    return (document or {}).get('pending')


def line(command, outcome):
    """``eu: 3 migrations in 2.1s``, ``us: up to date``, ``ap: FAILED ...``."""
    name = outcome.target.name
    if outcome.outcome == NOT_STARTED:
        return '%s: not started' % name
    if outcome.outcome == FAILED:
        return '%s: FAILED %s' % (name, scrub(outcome.error))
    if command == 'list':
        newest = newest_applied(outcome.document)
        return '%s: %s pending, newest applied %s' % (
            name, _pending(outcome.document), newest or 'none')
    if command in ('migrate', 'rollback'):
        steps = outcome.steps
        if (outcome.document or {}).get('dry_run') or (outcome.document or {}).get('check'):
            planned = len((outcome.document or {}).get('steps', []))
            return '%s: %s' % (name, 'would run ' + _count(planned, 'migration') if planned
                               else 'up to date')
        if not steps:
            return '%s: %s' % (name, 'up to date' if command == 'migrate'
                               else 'nothing rolled back')
        return '%s: %s in %.1fs' % (name, _count(len(steps), 'migration'), outcome.seconds)
    return '%s: done' % name


def summary(outcomes):
    ok = sum(1 for o in outcomes if o.outcome == OK)
    failed = sum(1 for o in outcomes if o.outcome == FAILED)
    changed = sum(1 for o in outcomes if o.outcome == OK and o.changed)
    return {'ok': ok, 'failed': failed, 'changed': changed,
            'not_started': sum(1 for o in outcomes if o.outcome == NOT_STARTED)}


def summary_line(outcomes):
    counts = summary(outcomes)
    return '%s: %d ok (%d changed), %d failed, %d not started' % (
        _count(len(outcomes), 'target'), counts['ok'], counts['changed'], counts['failed'],
        counts['not_started'])


def drift(outcomes):
    """name -> what sets a target apart from the others: its applied set differs
    from the one most targets have, or an applied migration's file was edited
    or is gone since it ran there."""
    applied = {}
    for o in outcomes:
        if o.outcome == OK and o.document:
            applied[o.target.name] = frozenset(
                m['version'] for m in o.document.get('migrations', [])
                if m.get('state') == 'applied')
    common = collections.Counter(applied.values()).most_common(1)
    usual = common[0][0] if common else frozenset()
    found = {}
    for o in outcomes:
        notes = []
        if o.target.name in applied and applied[o.target.name] != usual:
            notes.append('applied set differs')
        if any(m.get('changed') or m.get('missing')
               for m in (o.document or {}).get('migrations', []) if m.get('state') == 'applied'):
            notes.append('checksums differ')
        found[o.target.name] = notes
    return found


def matrix(outcomes):
    """``list --targets``: a row per target, pending count, newest applied, drift."""
    notes = drift(outcomes)
    rows = [('TARGET', 'PENDING', 'NEWEST APPLIED', 'DRIFT')]
    for o in outcomes:
        if o.outcome != OK:
            rows.append((o.target.name, '-', '-', 'FAILED ' + scrub(o.error or '')))
            continue
        rows.append((o.target.name, str(_pending(o.document)),
                     newest_applied(o.document) or 'none',
                     ', '.join(notes[o.target.name]) or '-'))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return '\n'.join('%-*s  %*s  %-*s  %s' % (widths[0], row[0], widths[1], row[1], widths[2],
                                              row[2], row[3]) for row in rows)


def document(command, outcomes):
    """``--format json`` of a run over targets."""
    notes = drift(outcomes) if command == 'list' else {}
    targets = []
    for o in outcomes:
        entry = {'target': o.target.name, 'database': o.target.database,
                 'schema': o.target.schema, 'outcome': o.outcome, 'changed': o.changed,
                 'steps': (o.document or {}).get('steps', []),
                 'error': scrub(o.error) if o.error else None}
        if command == 'list' and o.outcome == OK:
            entry.update(pending=_pending(o.document),
                         newest_applied=newest_applied(o.document),
                         drift=notes.get(o.target.name, []))
        targets.append(entry)
    return {'command': command, 'targets': targets, 'summary': summary(outcomes)}

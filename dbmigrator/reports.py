"""The JSON documents: ``--format json`` on the console and ``status.json`` on the page.

One function builds each shape, so the CLI and the web views cannot drift
apart.  The README documents every document these return.
"""
from .plan import OutOfOrder
from .redact import scrub
from .store import describe_invalid

SCHEMA_VERSION = 1


def _when(value):
    return value.isoformat() if value else None


def migration_json(m):
    """One migration, as ``list`` and ``status.json`` show it."""
    return {
        'version': m.version,
        'name': m.name,
        'state': m.state,
        'repeat': m.repeat,
        'applied_at': _when(m.applied_at),
        'changed': m.changed,
        'missing': m.missing,
        'out_of_order': m.out_of_order is not None,
        'atomic': m.atomic,
    }


def status_json(status):
    return {
        'database': status.database,
        'initialized': status.initialized,
        'pending': sum(1 for m in status.migrations if m.state == 'pending'),
        'migrations': [migration_json(m) for m in status.migrations],
        'warnings': status_warnings(status),
    }


def status_warnings(status):
    """The warnings ``list`` prints and the page shows, in words."""
    warnings = ['schema_migrations has a row whose version is %s: it is ignored; delete or '
                'fix it' % describe_invalid(version) for version in status.invalid_rows]
    warnings += [str(OutOfOrder(m.version, m.name, m.out_of_order))
                 for m in status.migrations if m.out_of_order and m.state == 'pending']
    return warnings


def step_json(step):
    return {
        'version': step.version,
        'name': step.name,
        'action': step.action,
        'reason': step.reason,
        'outcome': step.outcome,
        'duration': round(step.duration, 6),
        'diff': step.diff,
        'error': scrub(step.error) if step.error else None,
    }


def result_json(result, check=False):
    """A command that can change things: what it did, or would do."""
    document = {
        'command': result.action,
        'dry_run': result.dry_run,
        'changed': result.changed,
        'steps': [step_json(s) for s in result.steps],
    }
    if check:
        document['check'] = True
    if result.plan is not None:
        document['skipped'] = [{'version': s.version, 'name': s.name, 'reason': s.reason}
                               for s in result.plan.skipped]
        document['warnings'] = [str(o) for o in result.plan.out_of_order]
    return document


def error_json(message, exit_code, steps=()):
    """A failure: the same one line the human output prints, and what had run."""
    return {
        'error': {'message': scrub(message), 'exit_code': exit_code},
        'changed': any(s.outcome == 'ok' for s in steps),
        'steps': [step_json(s) for s in steps],
    }


def verification_json(result):
    return {
        'command': 'verify',
        'ok': result.ok,
        'scratch': result.scratch,
        'migrations': [{'version': c.version, 'name': c.name, 'outcome': c.outcome,
                        'problem': c.problem, 'diff': c.diff} for c in result.checks],
    }


def history_step_json(row):
    """One recorded step, for ``history --format json`` and the page's run JSON."""
    return {
        'run_id': row.run_id,
        'action': row.action,
        'state': row.action[len('mark '):] if row.action.startswith('mark ') else None,
        'version': row.version,
        'name': row.name,
        'started': _when(row.started),
        'finished': _when(row.finished),
        'duration': row.duration,
        'outcome': row.outcome,
        'error': row.error,
        'diff': row.diff,
        'output': row.output,
        'who': row.who,
        'dbmigrator_version': row.dbmigrator_version,
    }


def lint_text(result):
    """Each finding in a few lines, then one summary line."""
    lines = []
    if result.scratch_version // 10000 != result.server_version // 10000:
        lines.append('Note: the scratch server is PostgreSQL %d and the target %d; lock '
                     'behaviour differs between versions' % (result.scratch_version // 10000,
                                                            result.server_version // 10000))
    for f in result.findings:
        lines.append(str(f))
        lines.append('        %s' % f.statement)
        lines.append('        instead: %s' % f.advice)
    if result.failure:
        lines.append('The copy stopped: %s' % result.failure)
    errors = sum(1 for f in result.findings if f.severity == 'error' and not f.accepted)
    warnings = sum(1 for f in result.findings if f.severity == 'warning' and not f.accepted)
    accepted = sum(1 for f in result.findings if f.accepted)
    traced = len({(s.version) for s in result.steps})
    lines.append('lint: %d error%s, %d warning%s%s in %d migration%s traced on %s' % (
        errors, '' if errors == 1 else 's', warnings, '' if warnings == 1 else 's',
        ', %d accepted' % accepted if accepted else '', traced, '' if traced == 1 else 's',
        result.scratch))
    return '\n'.join(lines)


def lint_json(result):
    return {
        'command': 'lint',
        'ok': result.ok,
        'target': {'database': result.target, 'server_version': result.server_version},
        'scratch': {'where': result.scratch, 'server_version': result.scratch_version},
        'failure': result.failure,
        'findings': [{'version': f.version, 'name': f.name, 'rule': f.rule,
                      'severity': f.severity, 'relation': f.relation, 'lock': f.lock,
                      'blocks': f.blocks, 'rewrite': f.rewrite, 'scan': f.scan,
                      'rows': f.rows, 'bytes': f.bytes, 'statement': f.statement,
                      'line': f.line, 'advice': f.advice, 'accepted': f.accepted}
                     for f in result.findings],
        'migrations': [{'version': s.version, 'name': s.name, 'outcome': s.outcome,
                        'duration': s.duration, 'diff': s.diff} for s in result.steps],
    }

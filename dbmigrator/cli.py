"""The ``dbmigrator`` console script: parses arguments, calls :mod:`dbmigrator.commands`.

Like ``pserve``, it accepts the config URI as its first positional argument
(``dbmigrator development.ini#api migrate``).  It never imports Pyramid.
"""
import argparse
import logging
import os
import sys

from . import __version__
from .errors import (EXIT_CHECK_PENDING, EXIT_MIGRATION_FAILED, EXIT_USAGE, DBMigratorError,
                     SettingsError)

COMMANDS = ('generate', 'init', 'list', 'migrate', 'rollback', 'mark', 'verify', 'lint',
            'history', 'hash-password')
VALUE_OPTIONS = ('--config', '--db-connection-string', '--db-config-ini-key',
                 '--migrations-directory', '--context', '--super-user',
                 '--connect-timeout', '--lock-wait', '--format', '--lock-timeout',
                 '--lock-retries', '--statement-timeout', '--max-blocking', '--pooler',
                 '--diff-engine', '--schema', '--targets', '--jobs', '--per-server',
                 '--on-error', '--canary')
# The commands that run over --targets.
FANOUT_COMMANDS = ('list', 'migrate', 'rollback', 'mark', 'init', 'history', 'verify', 'lint')

DESCRIPTION = '''\
PostgreSQL schema migrations. Settings come from the command line, from the
[app:NAME] section of a PasteDeploy ini file, and from the "dbmigrator" entry
point of --context packages.

CONFIG_URI is an ini file, optionally FILE#NAME for [app:NAME] (default:
main), as pserve takes it; the same as --config CONFIG_URI.'''

EPILOG = '''\
exit codes: 0 success, 1 a migration failed (it was rolled back), verify found problems or
lint found an error,
2 bad arguments, settings or migration files, or no database connection,
3 --lock-wait expired, 4 migrate --check found migrations that would run,
5 list --strict or migrate --check --strict found applied migrations edited or missing,
130 interrupted (Ctrl-C or SIGTERM; the running migration was rolled back).'''


def unknown_command(word):
    """The error for a word that is no command, naming the closest one."""
    import difflib
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    hint = ': did you mean %s?' % close[0] if close else ''
    return 'unknown command %r%s' % (word, hint)


class ArgumentParser(argparse.ArgumentParser):
    """Reports bad arguments on one line and exits 2."""

    def error(self, message):
        if message.startswith('argument COMMAND: invalid choice:'):
            message = unknown_command(message.split("'")[1])
        elif message.startswith('unrecognized arguments: '):
            message += self._closest_options(message[len('unrecognized arguments: '):].split())
        self.exit(EXIT_USAGE, '%s: error: %s (see %s --help)\n' % (
            self.prog, message, self.prog))


    def _closest_options(self, words):
        import difflib
        parsers = [self] + [choice for action in self._actions
                            if isinstance(action, argparse._SubParsersAction)
                            for choice in action.choices.values()]
        known = sorted({o for p in parsers for o in p._option_string_actions
                        if o.startswith('--')})
        hints = ['did you mean %s?' % close[0] for word in words
                 if word.startswith('--')
                 for close in [difflib.get_close_matches(word.split('=')[0], known, n=1,
                                                         cutoff=0.6)] if close]
        return ': %s' % '; '.join(hints) if hints else ''


def _global_options(parser, suppress):
    """Options accepted before and after the command name."""
    default = {'default': argparse.SUPPRESS} if suppress else {}
    listdefault = {'default': argparse.SUPPRESS} if suppress else {'default': []}
    group = parser.add_argument_group('settings')

    def add(*names, **options):
        # A command's own help lists its own options; dbmigrator --help lists these.
        if suppress:
            options['help'] = argparse.SUPPRESS
        return group.add_argument(*names, **options)
    add('--config', metavar='FILE[#NAME]', **default,
                       help='PasteDeploy ini file; settings come from its [app:NAME] '
                            'section (default NAME: main)')
    add('--db-connection-string', metavar='DSN', **default,
                       help='libpq URI or key=value string, SQLAlchemy URL, or '
                            'embedded:PATH for a local server kept in PATH')
    add('--db-config-ini-key', metavar='KEY', **default,
                       help='read the connection string from this key of the ini '
                            'section (e.g. sqlalchemy.url)')
    add('--migrations-directory', action='append', metavar='DIR', **listdefault,
                       help='directory of migration files (repeatable)')
    add('--context', action='append', metavar='PACKAGE', **listdefault,
                       help='installed package whose "dbmigrator" entry point '
                            '"migrations_directory" names its migrations (repeatable)')
    add('--super-user', metavar='ROLE', **default,
                       help='role used by super_user() in migrations (default: postgres)')
    add('--connect-timeout', type=int, metavar='SECONDS', **default,
                       help='give up connecting after SECONDS (default: 10)')
    add('--lock-wait', type=float, metavar='SECONDS', **default,
                       help='wait at most SECONDS for another dbmigrator run on the same '
                            'database (default: forever; 0: fail at once, exit 3)')
    add('--lock-timeout', type=float, metavar='SECONDS', **default,
                       help="PostgreSQL's lock_timeout for each migration's statements: a "
                            'migration waiting longer for a table lock is rolled back and '
                            'retried, so that queries queued behind it go on '
                            '(default: 5; 0: wait forever, as db-migrator 1.x did)')
    add('--lock-retries', type=int, metavar='N', **default,
                       help='retry a migration that hit --lock-timeout N more times, after '
                            '1s, 2s, 4s... with jitter (default: 3)')
    add('--statement-timeout', type=float, metavar='SECONDS', **default,
                       help='cancel and roll back a migration whose statement runs longer '
                            '(default: 0, no limit); never retried')
    add('--max-blocking', type=float, metavar='SECONDS', **default,
                       help='cancel and roll back a migration once another session has waited '
                            'longer than SECONDS for a lock it holds (a rewrite or scan of a '
                            'busy table); never retried (default: 10; 0: off, as in '
                            'db-migrator 1.x)')
    add('--pooler', choices=('auto', 'none', 'session', 'transaction'),
                       **default,
                       help='what sits between dbmigrator and PostgreSQL; behind a '
                            'transaction pooler non-atomic migrations are refused and '
                            'nothing is prepared (default: '
                            'auto, which assumes one when the port differs from the '
                            "server's)")
    add('--diff-engine', choices=('auto', 'pg_dump'), **default,
                       help='auto (default): one pg_dump per run, then what a migration '
                            'changed is rendered from the catalogs (a non-atomic one\'s after '
                            'it committed), or dumped with pg_dump --table or --schema when '
                            'only some tables or one schema need it, falling back to a full '
                            'pg_dump for anything else (-v says which, and why); pg_dump: a '
                            'full dump after every migration')
    add('--schema', metavar='NAME', **default,
                       help='work on schema NAME of the database as a dbmigrator state of '
                            'its own (a schema tenant): its schema_migrations, history and '
                            'lock live in it, migrations run with search_path NAME, and its '
                            'lock is its own')
    add('--format', choices=('text', 'json'), **(
                           default if suppress else {'default': 'text'}),
                       help='json: print one JSON document on stdout (errors too) and '
                            'every message on stderr (default: text)')
    add('-v', '--verbose', action='store_true', **default,
                       help='debug output, and tracebacks on errors')
    add('-q', '--quiet', action='store_true', **default,
                       help='print errors only')


FANOUT_DEFAULTS = {'targets': None, 'jobs': 4, 'per_server': 2, 'on_error': 'stop', 'canary': 0}


def _fanout_options(parser, suppress):
    """Accepted before the command (the main parser's) and after it (the command's:
    there they default to nothing, so that they do not undo the ones before)."""
    group = parser.add_argument_group('many targets (targets and targets-query in the ini file)')

    def add(*names, **options):
        dest = names[0].lstrip('-').replace('-', '_')
        options['default'] = argparse.SUPPRESS if suppress else FANOUT_DEFAULTS[dest]
        group.add_argument(*names, **options)
    add('--targets', metavar='SPEC',
        help='run on these targets instead of db-connection-string: all, or names and globs '
             'separated by commas (eu,us-*); with %s' % ', '.join(FANOUT_COMMANDS))
    add('--jobs', type=int, metavar='N', help='targets run at once (default: 4)')
    add('--per-server', type=int, metavar='N',
        help='targets run at once on one server, host and port (default: 2)')
    add('--on-error', choices=('stop', 'continue'),
        help='stop (default): start no target after one failed, let the running ones finish, '
             'report the rest as not started; continue: run them all')
    add('--canary', type=int, metavar='N',
        help='run the first N selected targets alone, one after another, and the rest only '
             'if all of them succeeded')


def build_parser():
    parser = ArgumentParser(
        prog='dbmigrator', description=DESCRIPTION, epilog=EPILOG,
        usage='%(prog)s [options] [CONFIG_URI] COMMAND [command options]',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-V', '--version', action='version', version=__version__)
    _global_options(parser, suppress=False)
    _fanout_options(parser, suppress=False)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', parser_class=ArgumentParser)

    def command(name, help):
        p = sub.add_parser(name, help=help, description=help, prog='dbmigrator %s' % name,
                           usage='dbmigrator [options] [CONFIG_URI] %s [%s options]' % (
                               name, name),
                           epilog='The settings options (--config, --db-connection-string, '
                                  '-v, --format and the others) are listed by dbmigrator '
                                  '--help; they go before or after the command.')
        _global_options(p, suppress=True)
        if name in FANOUT_COMMANDS:
            _fanout_options(p, suppress=True)
        return p

    p = command('generate', 'write a new migration file <UTC timestamp>_NAME.py')
    p.add_argument('name', metavar='NAME', help='letters, digits and underscores')
    p.add_argument('--sql', action='store_true', default=None,
                   help='write a .sql migration with its -- dbmigrator: markers (ini: '
                        'generate-format = sql)')
    p.add_argument('--non-atomic', action='store_true',
                   help='write atomic = False: up and down run in autocommit mode, for '
                        'CREATE INDEX CONCURRENTLY and the like')

    p = command('init', 'create schema_migrations and mark migrations up to --version '
                        'as applied')
    p.add_argument('--version', metavar='V',
                   help='mark migrations with version <= V as applied (default: now; '
                        '0 marks none)')

    p = command('list', 'list migrations and whether they are applied')
    p.add_argument('--wide', action='store_true', help='show full migration names')
    p.add_argument('--sort', choices=('version', 'applied'), default='version',
                   help='order by version (default) or by date applied')
    p.add_argument('--strict', action='store_true', dest='strict_drift',
                   help='exit 5 when an applied migration was edited since or its file is '
                        'missing (ini: strict = true)')

    p = command('migrate', 'run pending migrations')
    p.add_argument('--version', metavar='V', help='run migrations up to version V only')
    p.add_argument('target', nargs='?', metavar='version=V', help='same as --version V')
    p.add_argument('--run-deferred', action='store_true', help='run deferred migrations too')
    p.add_argument('--no-diff', action='store_true', help='do not print schema diffs')
    p.add_argument('--dry-run', action='store_true',
                   help='print what would run (should_run is asked in a rolled-back '
                        'transaction) and change nothing')
    p.add_argument('--check', action='store_true',
                   help='like --dry-run, and exit 4 when something would run, 0 when not')
    p.add_argument('--strict', action='store_true', default=None,
                   help='refuse (exit 2) to run a pending migration older than the newest '
                        'applied one; with --check, also exit 5 when an applied migration '
                        'was edited since or its file is missing (ini: strict = true)')

    p = command('rollback', 'roll back the last applied migrations')
    p.add_argument('--steps', type=int, default=1, metavar='N',
                   help='how many migrations to roll back, newest applied first (default: 1)')
    p.add_argument('--version', metavar='V',
                   help='roll back every applied migration newer than V instead')
    p.add_argument('--no-diff', action='store_true', help='do not print schema diffs')
    p.add_argument('--dry-run', action='store_true',
                   help='print what would be rolled back and change nothing')

    p = command('mark', 'mark migrations as completed, not completed or deferred')
    state = p.add_mutually_exclusive_group(required=True)
    state.add_argument('-t', dest='state', action='store_const', const='completed',
                       help='completed')
    state.add_argument('-f', dest='state', action='store_const', const='not-completed',
                       help='not completed')
    state.add_argument('-d', dest='state', action='store_const', const='deferred',
                       help='deferred: plain migrate skips it, migrate --run-deferred runs '
                            'it, rollback leaves it alone')
    p.add_argument('versions', nargs='+', metavar='VERSION')

    p = command('history', 'show the recorded runs: when, action, version, name, outcome, '
                           'duration, who')
    p.add_argument('--limit', type=int, default=50, metavar='N',
                   help='show the newest N steps (default: 50)')
    p.add_argument('--version', metavar='V', help="only this migration's steps")

    p = command('verify', "check that every migration's down undoes its up, on a scratch "
                          'database (never the configured one)')
    p.add_argument('--scratch', choices=('database', 'embedded'), default='database',
                   help='database: a scratch database beside the configured one (needs '
                        'CREATEDB); embedded: a throwaway embedded server')

    p = command('lint', 'trace the pending migrations on a scratch copy of the schema, and '
                        'say what they would lock, rewrite or scan in production')
    p.add_argument('--version', metavar='V', help='trace migrations up to version V only')
    p.add_argument('--run-deferred', action='store_true', help='trace deferred migrations too')
    p.add_argument('--all', action='store_true', dest='everything',
                   help='trace every migration from an empty database (for CI with no '
                        'production database at hand; sizes are unknown, so no errors)')
    p.add_argument('--scratch', choices=('database', 'embedded'), default='database',
                   help='database: a scratch database beside the configured one (needs '
                        'CREATEDB); embedded: a throwaway embedded server')
    p.add_argument('--big-table-rows', type=int, metavar='N', default=None,
                   help='a finding on a table of at least N rows in the target is an error '
                        '(ini lint-big-table-rows; default: 100000)')
    p.add_argument('--strict', action='store_true', dest='fail_on_warnings',
                   help='exit 1 on warnings too')

    command('hash-password', 'print a salted hash for dbmigrator.admin_password_hash '
                             '(reads the password from the terminal or stdin)')
    return parser


def _split_config_uri(argv):
    """Let the first positional argument be a config URI, as pserve does."""
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == '--':
            return argv
        if arg.startswith('-'):
            if arg in VALUE_OPTIONS:
                i += 1
            i += 1
            continue
        if arg in COMMANDS:
            return argv
        return argv[:i] + ['--config', arg] + argv[i + 1:]
    return argv


class _StdoutFilter(logging.Filter):
    def filter(self, record):
        return record.levelno < logging.WARNING


def setup_logging(config_file, level, stdout=True):
    """Plain messages on stdout (warnings and errors on stderr), or the ini's logging.

    With ``stdout`` False (``--format json``) every message goes to stderr,
    leaving stdout to the one JSON document.
    """
    from .redact import ScrubFilter
    logger = logging.getLogger('dbmigrator')
    for handler in [h for h in logger.handlers if getattr(h, 'dbmigrator_cli', False)]:
        logger.removeHandler(handler)
    logger.propagate = True
    scrubber = ScrubFilter()
    if config_file and _has_logging_sections(config_file):
        import plaster
        plaster.setup_logging(config_file)
        for handler in logging.getLogger().handlers + logger.handlers:
            handler.addFilter(scrubber)
            if not stdout and getattr(handler, 'stream', None) is sys.stdout:
                handler.setStream(sys.stderr)
    else:
        from . import terminal
        formatter = logging.Formatter('%(message)s')
        err = logging.StreamHandler(sys.stderr)
        handlers = [err]
        if stdout:
            out = logging.StreamHandler(sys.stdout)
            out.addFilter(_StdoutFilter())
            if terminal.wanted(sys.stdout):
                out.setFormatter(terminal.DiffColours('%(message)s'))
            err.setLevel(logging.WARNING)
            handlers.append(out)
        for handler in handlers:
            if handler.formatter is None:
                handler.setFormatter(formatter)
            handler.addFilter(scrubber)
            handler.dbmigrator_cli = True
            if level is not None and level > logging.INFO:
                # -q quiets the terminal, not the run history's record of the output.
                handler.setLevel(level)
            logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(min(level or logging.INFO, logging.INFO))
        return logger
    if level is not None:
        logger.setLevel(level)
    elif logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger


def _has_logging_sections(config_file):
    import configparser
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(config_file, encoding='utf-8')
    except (configparser.Error, UnicodeDecodeError):
        return False
    return parser.has_section('loggers')


def _render_list(status, wide, sort):
    rows = list(status.migrations)
    if sort == 'applied':
        rows.sort(key=lambda r: (r.applied_at is None,
                                 r.applied_at.timestamp() if r.applied_at else 0,
                                 int(r.version)))
    else:
        rows.sort(key=lambda r: int(r.version))
    names = [r.name if wide else r.name[:15] for r in rows]
    name_width = max([len('name')] + [len(n) for n in names])
    version_width = max([len('version')] + [len(r.version) for r in rows])
    header = '%s | %s | %s | %s' % ('version'.ljust(version_width), 'name'.ljust(name_width),
                                    'is applied', 'date applied')
    lines = [header, '-' * max(70, len(header))]
    for row, name in zip(rows, names):
        applied = 'deferred' if row.state == 'deferred' else str(row.state == 'applied')
        applied += '*' if row.repeat else ''
        note = '' if row.atomic else '  (non-atomic)'
        if row.missing:
            note = '  (file missing)'
        elif row.changed:
            note = '  (changed since applied)'
        date = str(row.applied_at) if row.applied_at else ''
        lines.append(('%s   %s   %s   %s%s' % (
            row.version.ljust(version_width), (name or '?').ljust(name_width),
            applied.ljust(10), date, note)).rstrip())
    return '\n'.join(lines)


def _render_history(rows):
    table = [('when', 'action', 'version', 'name', 'outcome', 'duration', 'who')]
    for row in rows:
        table.append((row.started.strftime('%Y-%m-%d %H:%M:%S%z'), row.action,
                      row.version or '', row.name or '', row.outcome,
                      '%.2fs' % row.duration if row.duration is not None else '',
                      row.who or ''))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [' | '.join(c.ljust(w) for c, w in zip(table[0], widths)).rstrip(),
             '-' * max(70, sum(widths) + 3 * (len(widths) - 1))]
    lines += ['   '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table[1:]]
    if len(table) == 1:
        lines.append('No runs recorded yet.')
    return '\n'.join(lines)


def _render_verification(result):
    lines = []
    for check in result.checks:
        if check.outcome == 'ok':
            lines.append('ok      %s %s' % (check.version, check.name))
        elif check.outcome == 'not checked':
            lines.append('--      %s %s: not checked: %s' % (check.version, check.name,
                                                         check.problem))
        else:
            lines.append('FAILED  %s %s: %s' % (check.version, check.name, check.problem))
            if check.diff:
                lines.append(check.diff)
    failed = sum(1 for c in result.checks if c.outcome == 'failed')
    if failed:
        lines.append('%d of %d migrations failed verification.' % (failed, len(result.checks)))
    else:
        lines.append('All %d migrations roll back and re-apply cleanly.' % len(result.checks))
    return '\n'.join(lines)


def _target_version(args):
    if args.target:
        value = args.target.split('=', 1)[1] if args.target.startswith('version=') else args.target
        if args.version and args.version != value:
            raise DBMigratorError('give the version once: --version %s and %s disagree' % (
                args.version, args.target))
        return value
    return args.version


def _hash_password():
    import getpass
    from .passwords import hash_password
    if sys.stdin.isatty():
        first = getpass.getpass('Password: ')
        if first != getpass.getpass('Again: '):
            raise DBMigratorError('the passwords do not match; nothing was printed')
    else:
        # Piped, it is checked the same way: two lines that must match.
        first = sys.stdin.readline().rstrip('\n')
        second = sys.stdin.readline()
        if not second:
            raise DBMigratorError('hash-password reads the password twice, one line each, '
                                  "and stdin gave one line: printf '%s\\n%s\\n' PW PW | "
                                  'dbmigrator hash-password; nothing was printed')
        if first != second.rstrip('\n'):
            raise DBMigratorError('the passwords do not match; nothing was printed')
    if not first:
        raise DBMigratorError('the password is empty; nothing was printed')
    print(hash_password(first))
    return 0


def _dispatch(args, log):
    """Run the command; returns (exit code, JSON document or None)."""
    from . import commands, reports, settings as settings_mod
    if args.command == 'hash-password':
        return _hash_password(), None
    settings = settings_mod.resolve(
        config=args.config,
        db_connection_string=args.db_connection_string or os.environ.get(
            settings_mod.ENVIRONMENT_DSN),
        migrations_directories=args.migrations_directory, contexts=args.context,
        super_user=args.super_user, db_config_ini_key=args.db_config_ini_key,
        connect_timeout=args.connect_timeout, lock_wait=args.lock_wait,
        strict=getattr(args, 'strict', None), lock_timeout=args.lock_timeout,
        lock_retries=args.lock_retries, statement_timeout=args.statement_timeout,
        pooler=args.pooler, diff_engine=args.diff_engine, max_blocking=args.max_blocking,
        big_table_rows=getattr(args, 'big_table_rows', None), schema=args.schema)
    if args.targets:
        if args.command not in FANOUT_COMMANDS:
            raise SettingsError('--targets works with %s, not %s' % (
                ', '.join(FANOUT_COMMANDS), args.command))
        return _fanout(args, settings)
    if settings.schema:
        from .targets import schema
        schema.enter(settings.schema)
    if args.command == 'generate':
        path = commands.generate(settings, args.name, args.non_atomic, args.sql)
        return 0, {'command': 'generate', 'changed': True, 'path': path}
    if args.command == 'init':
        return 0, reports.result_json(commands.init(settings, args.version))
    if args.command == 'list':
        status = commands.status(settings)
        if not status.initialized:
            log.warning('Warning: %s', commands.NOT_INITIALIZED)
        for warning in reports.status_warnings(status):
            log.warning('%s', warning)
        from .discovery import unmarked_sql
        for path in unmarked_sql(settings.migrations_directories):
            log.warning('Notice: %s is named like a migration but does not start with a '
                        '"-- dbmigrator: up" (or should_run) marker, so it is not one', path)
        if args.format == 'text':
            print(_render_list(status, args.wide, args.sort))
        if settings.strict or args.strict_drift:
            commands.require_no_drift(len(status.drift))
        return 0, reports.status_json(status)
    if args.command == 'mark':
        return 0, reports.result_json(commands.mark(settings, args.versions, args.state))
    if args.command == 'history':
        rows = commands.history(settings, limit=args.limit, version=args.version)
        if args.format == 'text':
            print(_render_history(rows))
        return 0, {'command': 'history', 'steps': [reports.history_step_json(r) for r in rows]}
    if args.command == 'verify':
        from .verify import verify
        result = verify(settings, args.scratch)
        if args.format == 'text':
            print(_render_verification(result))
        return (0 if result.ok else EXIT_MIGRATION_FAILED), reports.verification_json(result)
    if args.command == 'lint':
        from .lint import lint
        result = lint(settings, version=args.version, run_deferred=args.run_deferred,
                      everything=args.everything, scratch=args.scratch,
                      big_table_rows=settings.big_table_rows, strict=args.fail_on_warnings)
        if args.format == 'text':
            print(reports.lint_text(result))
        return (0 if result.ok else EXIT_MIGRATION_FAILED), reports.lint_json(result)
    from . import interrupts
    interrupts.install()
    dry_run = args.dry_run or getattr(args, 'check', False)
    live = _live_line(args, dry_run)
    try:
        if args.command == 'migrate':
            result = commands.migrate(settings, version=_target_version(args),
                                      run_deferred=args.run_deferred, diff=not args.no_diff,
                                      dry_run=dry_run, strict=settings.strict, progress=live)
            if args.check and settings.strict:
                commands.require_no_drift(result.drift)
            code = EXIT_CHECK_PENDING if args.check and result.steps else 0
            _summary(args, result)
            return code, reports.result_json(result, check=args.check)
        result = commands.rollback(settings, steps=args.steps, version=args.version,
                                   diff=not args.no_diff, dry_run=args.dry_run, progress=live)
        _summary(args, result)
        return 0, reports.result_json(result)
    finally:
        if live is not None:
            live.close()
        interrupts.reset()  # the signal's exit deadline ends with the run


def _fanout(args, settings):
    """The command on each selected target, in child processes; one report."""
    from .targets import config, fanout, report
    from . import terminal
    if args.schema:
        raise SettingsError('--schema and --targets do not go together: a schema target is '
                            'named in targets-query')
    for option in ('jobs', 'per_server'):
        if getattr(args, option) < 1:
            raise SettingsError('--%s must be 1 or more' % option.replace('_', '-'))
    selected = config.select(config.resolve(settings), args.targets)
    # The report reads each target's JSON document where it needs one (a JSON
    # report, the steps of migrate and rollback, list's matrix); otherwise
    # each target's own text output is shown as it is.
    run_one = fanout.runner(
        settings, fanout.child_arguments(args.argv),
        document=args.format == 'json' or args.command in ('migrate', 'rollback', 'list'),
        plain_migrate=args.command == 'migrate' and not (
            args.version or args.target or args.run_deferred or args.dry_run or args.check))
    counting = args.format == 'text' and terminal.wanted(sys.stdout)
    matrix = args.command == 'list' and args.format == 'text'

    def finished(outcome, done, total):
        if args.format != 'text' or matrix:
            return
        print(('[%d/%d] ' % (done, total) if counting else '') + report.line(args.command, outcome))
        if outcome.output.strip() and not args.quiet:
            print('\n'.join('    ' + line for line in outcome.output.rstrip().splitlines()))
        sys.stdout.flush()

    outcomes = fanout.Fanout(run_one, finished, jobs=args.jobs, per_server=args.per_server,
                             on_error=args.on_error, canary=args.canary).run(selected)
    if args.format == 'text':
        if matrix:
            print(report.matrix(outcomes))
        else:
            for outcome in outcomes:
                if outcome.outcome == fanout.NOT_STARTED:
                    print(report.line(args.command, outcome))
        print(report.summary_line(outcomes))
    return fanout.exit_code(outcomes), report.document(args.command, outcomes)


def _live_line(args, dry_run):
    """The running migration's line on a terminal, wiped before each log line."""
    from . import terminal
    handlers = [h for h in logging.getLogger('dbmigrator').handlers
                if getattr(h, 'dbmigrator_cli', False)]
    if (args.format != 'text' or args.quiet or dry_run or not handlers
            or not terminal.wanted(sys.stdout)):
        return None
    live = terminal.LiveLine(sys.stdout)
    for handler in handlers:
        live.guard(handler)
    return live


def main(argv=None, once=False):
    """Run the console script; returns the exit code.  ``once``: nothing else
    will run in this process (see :func:`dbmigrator.discovery.loaded_for_good`)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(_split_config_uri(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.argv = _split_config_uri(argv)
    if not args.command:
        parser.print_usage(sys.stderr)
        word = args.config or ''
        mistyped = word and not os.path.exists(word.partition('#')[0]) and '.' not in word
        sys.stderr.write('dbmigrator: error: %s (see dbmigrator --help)\n' % (
            unknown_command(word) if mistyped else 'no command given'))
        return EXIT_USAGE
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else None
    config_file = args.config.partition('#')[0] if args.config else None
    try:
        log = setup_logging(config_file if config_file and os.path.isfile(config_file)
                            else None, level, stdout=args.format == 'text')
    except Exception as exc:  # logging.config names no file and no section
        setup_logging(None, level, stdout=args.format == 'text')
        return _report(args, SettingsError(
            'the logging sections ([loggers], [handlers], [formatters]) of %s are broken: '
            '%s %s; fix them, or remove them to log to the terminal' % (
                config_file, type(exc).__name__, ' '.join(str(exc).split()))), EXIT_USAGE)
    if once:
        from .discovery import loaded_for_good
        loaded_for_good()
    try:
        code, document = _dispatch(args, log)
    except DBMigratorError as exc:
        return _report(args, exc, exc.exit_code)
    except KeyboardInterrupt:
        return _report(args, DBMigratorError('interrupted'), 130)
    except Exception as exc:
        if _statement_timeout(exc):
            return _report(args, SettingsError(
                "a statement of dbmigrator's own was cancelled by statement_timeout: the "
                "role's or database's is too short for its bookkeeping; raise it (ALTER ROLE "
                "... SET statement_timeout = '1min') or set it to 0; --statement-timeout sets "
                "the migrations' own"), EXIT_USAGE)
        if _connection_lost(exc):
            return _report(args, DBMigratorError(
                'lost the database connection (%s): what this run reported done stays '
                'applied, nothing else was; "dbmigrator list" shows the state, then run it '
                'again' % (str(exc).strip().splitlines() or ['no reason given'])[0]),
                EXIT_MIGRATION_FAILED)
        return _report(args, DBMigratorError('unexpected error: %s: %s' % (
            type(exc).__name__, ' '.join(str(exc).split()))), EXIT_MIGRATION_FAILED)
    if args.format == 'json' and document is not None:
        _print_json(document)
    return code


def _summary(args, result):
    """The closing line a person at a terminal gets after a run."""
    from . import terminal
    if (args.format == 'text' and not args.quiet and not result.dry_run
            and terminal.wanted(sys.stdout)):
        line = terminal.summary(result.steps, result.action)
        if line:
            print(line)


def _statement_timeout(exc):
    """A setup statement cancelled by the session's statement_timeout (a
    migration's own cancellation is reported as that migration's failure)."""
    errors = sys.modules.get('psycopg2.errors')
    return (errors is not None and isinstance(exc, errors.QueryCanceled)
            and 'statement timeout' in str(exc))


def _connection_lost(exc):
    """The connection dropped outside a migration's step (which reports its own)."""
    psycopg2 = sys.modules.get('psycopg2')
    return psycopg2 is not None and (
        isinstance(exc, psycopg2.InterfaceError) or isinstance(exc, psycopg2.OperationalError)
        and getattr(exc, 'pgcode', None) is None)


def _print_json(document):
    import json
    from .redact import scrub_document
    sys.stdout.write(json.dumps(scrub_document(document), indent=2, sort_keys=True) + '\n')
    sys.stdout.flush()


def _report(args, exc, code):
    """The one error line (JSON document with --format json); returns the exit code."""
    import traceback
    from .redact import scrub
    if args.verbose:
        sys.stderr.write(scrub(traceback.format_exc()))
    sys.stderr.write('dbmigrator: error: %s\n' % scrub(exc))
    if args.format == 'json':
        from .reports import error_json
        _print_json(error_json(str(exc), code, getattr(exc, 'steps', ())))
    return code


def run():
    """Console-script entry point: one command per process."""
    sys.exit(main(once=True))

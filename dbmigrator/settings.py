"""One resolver for every command: command line, then ini file, then contexts.

The ini file is read the way ``pyramid.paster.get_appsettings`` reads it,
through plaster, so ``%(here)s``, ``[DEFAULT]`` and ``use = config:...``
inheritance behave as in the host application.  The host app itself is
never loaded.
"""
import dataclasses
import logging
import math
import os

from .database import normalize
from .errors import SettingsError

log = logging.getLogger(__name__)

DEFAULT_SUPER_USER = 'postgres'
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_SECTION = 'main'
DEFAULT_LOCK_TIMEOUT = 5
DEFAULT_LOCK_RETRIES = 3
# A migration that keeps another session waiting longer than this is cancelled.
DEFAULT_MAX_BLOCKING = 10
# lint: a finding on a table of at least this many rows in the target is an error.
DEFAULT_BIG_TABLE_ROWS = 100000
POOLERS = ('auto', 'none', 'session', 'transaction')
DIFF_ENGINES = ('auto', 'pg_dump')
LINT_MODES = ('off', 'warn', 'refuse')
SCRATCH_KINDS = ('database', 'embedded')
ENTRY_POINT_GROUP = 'dbmigrator'
ENTRY_POINT_NAME = 'migrations_directory'
# Where a run over many targets hands each child its target's connection string.
ENVIRONMENT_DSN = 'DBMIGRATOR_DB_CONNECTION_STRING'


@dataclasses.dataclass
class Settings:
    """What every command needs, fully resolved."""

    db_connection_string: str = None
    migrations_directories: list = dataclasses.field(default_factory=list)
    super_user: str = DEFAULT_SUPER_USER
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    lock_wait: float = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    lock_retries: int = DEFAULT_LOCK_RETRIES
    statement_timeout: float = 0
    max_blocking: float = DEFAULT_MAX_BLOCKING
    big_table_rows: int = DEFAULT_BIG_TABLE_ROWS
    lint: str = 'off'
    lint_scratch: str = 'database'
    generate_format: str = 'py'
    pooler: str = 'auto'
    diff_engine: str = 'auto'
    strict: bool = False
    config_file: str = None
    # A schema target: the schema of the database that holds this state.
    schema: str = None
    # name -> connection string, and the query that lists more (issue 23).
    targets: dict = dataclasses.field(default_factory=dict)
    targets_query: str = None

    def require_database(self):
        if not self.db_connection_string:
            raise SettingsError(
                'no database given: set db-connection-string in the ini file '
                'or pass --db-connection-string')
        return self.db_connection_string

    def require_directories(self):
        if not self.migrations_directories:
            raise SettingsError(
                'no migrations directory given: set migrations-directory in the ini file, '
                'pass --migrations-directory, or --context a package with a dbmigrator entry point')
        return self.migrations_directories


def split_config_uri(uri):
    """``file.ini#name`` -> (file.ini, name); the name defaults to ``main``."""
    path, _, name = uri.partition('#')
    return path, name or DEFAULT_SECTION


def read_ini(uri):
    """The ``[app:NAME]`` settings of a PasteDeploy ini file, plus its folder."""
    import plaster
    path, name = split_config_uri(uri)
    if not os.path.isfile(path):
        raise SettingsError('config file %s not found: check the path given to --config' % path)
    if not os.access(path, os.R_OK):
        raise SettingsError('config file %s is not readable: check its permissions' % path)
    try:
        loader = plaster.get_loader(path, protocols=['wsgi'])
        sections = loader.get_sections()
    except plaster.PlasterError as exc:
        raise SettingsError('cannot read config file %s: %s' % (path, exc))
    except Exception as exc:
        raise SettingsError('cannot read config file %s: %s' % (
            path, ' '.join(str(exc).split())))
    section = 'app:' + name
    if section not in sections and '#' not in uri and sections:
        return _read_1x_ini(path), os.path.dirname(os.path.abspath(path))
    if section not in sections:
        raise SettingsError('config file %s has no [%s] section (it has: %s): use %s#NAME' % (
            path, section, ', '.join('[%s]' % s for s in sections) or 'none', path))
    try:
        settings = loader.get_wsgi_app_settings(name)
    except LookupError as exc:
        if 'No loader given' not in str(exc):
            raise SettingsError('cannot read [%s] of %s: %s' % (section, path, exc))
        settings = dict(loader.get_settings('DEFAULT'))
        settings.update(loader.get_settings(section))
    except Exception as exc:
        raise SettingsError('cannot read [%s] of %s: %s' % (
            section, path, ' '.join(str(exc).split())))
    return dict(settings), os.path.dirname(os.path.abspath(path))


def _read_1x_ini(path):
    """An ini written for db-migrator 1.x, which has no [app:main].

    1.x took each setting from the first section that had it; so does this.
    """
    import configparser
    parser = configparser.ConfigParser(defaults={'here': os.path.dirname(os.path.abspath(path))})
    try:
        parser.read(path, encoding='utf-8')
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise SettingsError('cannot read config file %s: %s' % (path, ' '.join(str(exc).split())))
    settings = {}
    for section in parser.sections():
        for key, value in parser.items(section):
            if key != 'here':
                settings.setdefault(key, value)
    return settings


def _choice(given, ini, key, choices):
    """One of ``choices`` (the first is the default) from the arguments or the ini."""
    value = given or _lookup(ini, key) or choices[0]
    if value not in choices:
        raise SettingsError('%s = %s is not known: use one of %s' % (key, value, ', '.join(choices)))
    return value


#: PostgreSQL's timeouts are milliseconds in an int.
MAX_SECONDS = 2147483647 / 1000


def _number(given, ini, key, default, kind, maximum=MAX_SECONDS):
    """A number of seconds or times from the arguments or the ini: finite, 0 or more,
    and no more than PostgreSQL takes."""
    value = given if given is not None else _lookup(ini, key)
    if value is None:
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise SettingsError('%s = %s is not a number: give a whole or decimal number%s' % (
            key, value, '' if kind is float else ' without a fraction'))
    if not math.isfinite(number) or number < 0 or number > maximum:
        raise SettingsError('--%s must be 0 or more (at most %d), not %s' % (
            key, maximum, value))
    return number


def _lookup(settings, key):
    """Accept ``db-connection-string`` as well as ``db_connection_string``."""
    for candidate in (key, key.replace('-', '_'), 'dbmigrator.' + key,
                      'dbmigrator.' + key.replace('-', '_')):
        value = settings.get(candidate)
        if value not in (None, ''):
            return value
    return None


def as_bool(value, key):
    """An ini boolean, as pyramid.settings.asbool reads it; a typo is an error."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ('true', 'yes', 'on', 'y', 't', '1'):
        return True
    if text in ('false', 'no', 'off', 'n', 'f', '0', ''):
        return False
    raise SettingsError('%s = %s is not a boolean: use true or false' % (key, value))


def split_list(value):
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            items.extend(split_list(item))
        return items
    return [item for item in str(value).split() if item]


def context_directories(context):
    """Migration directories from a package's ``dbmigrator`` entry point."""
    from importlib import metadata
    try:
        dist = metadata.distribution(context)
    except metadata.PackageNotFoundError:
        # 1.x also took the import name of the package (cnxarchive for cnx-archive).
        names = metadata.packages_distributions().get(context, [])
        if not names:
            raise SettingsError(
                'context %r is not an installed package: install it (pip install -e .) '
                'or pass --migrations-directory' % context)
        dist = metadata.distribution(names[0])
    points = [ep for ep in dist.entry_points
              if ep.group == ENTRY_POINT_GROUP and ep.name == ENTRY_POINT_NAME]
    if not points:
        raise SettingsError(
            'package %r has no %r entry point in group %r: add one to its setup.py '
            'or pass --migrations-directory' % (context, ENTRY_POINT_NAME, ENTRY_POINT_GROUP))
    directories = []
    for point in points:
        try:
            value = point.load()
            if callable(value):
                value = value()
        except Exception as exc:
            raise SettingsError('cannot load the %s entry point of %r: %s' % (
                ENTRY_POINT_NAME, context, exc))
        directories.extend(split_list(value))
    return directories


def resolve(config=None, db_connection_string=None, migrations_directories=None,
            contexts=None, super_user=None, db_config_ini_key=None,
            connect_timeout=None, lock_wait=None, strict=None, lock_timeout=None,
            lock_retries=None, statement_timeout=None, pooler=None, diff_engine=None,
            ini_settings=None, base_dir=None, max_blocking=None, big_table_rows=None,
            schema=None):
    """Merge the sources, highest first: arguments, ini settings, contexts.

    ``ini_settings``/``base_dir`` let a Pyramid app pass its own settings
    instead of a file.
    """
    ini = {}
    here = base_dir or os.getcwd()
    if config:
        ini, here = read_ini(config)
    elif ini_settings is not None:
        ini = dict(ini_settings)

    ini_key = db_config_ini_key or _lookup(ini, 'db-config-ini-key')
    dsn = db_connection_string
    if not dsn:
        if ini_key:
            dsn = ini.get(ini_key)
            if not dsn:
                raise SettingsError('the ini key %r given by --db-config-ini-key is not set in %s' % (
                    ini_key, config or 'the settings'))
        else:
            dsn = _lookup(ini, 'db-connection-string')
    if dsn and dsn.strip().startswith('embedded:') and config and not db_connection_string:
        path = dsn.strip()[len('embedded:'):]
        dsn = 'embedded:' + os.path.join(here, os.path.expanduser(path))

    if migrations_directories:
        directories = [os.path.abspath(d) for d in split_list(migrations_directories)]
    elif _lookup(ini, 'migrations-directory'):
        directories = [os.path.normpath(os.path.join(here, d))
                       for d in split_list(_lookup(ini, 'migrations-directory'))]
    else:
        names = split_list(contexts or _lookup(ini, 'context') or [])
        if not names:
            names = [os.path.basename(os.getcwd())]
            log.warning('no --context or --migrations-directory given: '
                        'using context %r, the current directory\'s name', names[0])
        directories = []
        for name in names:
            directories.extend(os.path.abspath(d) for d in context_directories(name))

    timeout = _number(connect_timeout, ini, 'connect-timeout', DEFAULT_CONNECT_TIMEOUT, int)
    lock_wait = _number(lock_wait, {}, 'lock-wait', None, float, maximum=1e9)
    return Settings(
        db_connection_string=normalize(dsn) if dsn else None,
        migrations_directories=directories,
        super_user=super_user or _lookup(ini, 'super-user') or DEFAULT_SUPER_USER,
        connect_timeout=timeout,
        lock_wait=lock_wait,
        lock_timeout=_number(lock_timeout, ini, 'lock-timeout', DEFAULT_LOCK_TIMEOUT, float),
        lock_retries=_number(lock_retries, ini, 'lock-retries', DEFAULT_LOCK_RETRIES, int),
        statement_timeout=_number(statement_timeout, ini, 'statement-timeout', 0, float),
        max_blocking=_number(max_blocking, ini, 'max-blocking', DEFAULT_MAX_BLOCKING, float),
        big_table_rows=_number(big_table_rows, ini, 'lint-big-table-rows',
                               DEFAULT_BIG_TABLE_ROWS, int, maximum=1e15),
        lint=_choice(None, ini, 'lint', LINT_MODES),
        lint_scratch=_choice(None, ini, 'lint-scratch', SCRATCH_KINDS),
        generate_format=_choice(None, ini, 'generate-format', ('py', 'sql')),
        pooler=_choice(pooler, ini, 'pooler', POOLERS),
        diff_engine=_choice(diff_engine, ini, 'diff-engine', DIFF_ENGINES),
        strict=strict if strict is not None else as_bool(_lookup(ini, 'strict'), 'strict'),
        config_file=split_config_uri(config)[0] if config else None,
        schema=schema,
        targets=parse_targets(_lookup(ini, 'targets'), here),
        targets_query=_lookup(ini, 'targets-query'),
    )


def parse_targets(value, here):
    """``targets``: one ``NAME CONNECTION-STRING`` pair per line."""
    targets = {}
    for number, line in enumerate(str(value or '').splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        name, _, dsn = line.partition(' ')
        dsn = dsn.strip()
        if not dsn:
            raise SettingsError('targets, line %d: %r names no connection string: write '
                                'one "NAME CONNECTION-STRING" pair per line' % (number, name))
        if name in targets:
            raise SettingsError('targets: %r is named twice; give each target its own name'
                                % name)
        if dsn.startswith('embedded:'):
            dsn = 'embedded:' + os.path.join(here, os.path.expanduser(dsn[len('embedded:'):]))
        targets[name] = normalize(dsn)
    return targets

"""The targets of the settings (``targets``, ``targets-query``) and a selection of them."""
import dataclasses
import fnmatch
import os

import psycopg2
import psycopg2.extensions

from .. import embedded
from ..database import connect, describe, normalize
from ..errors import SettingsError
from . import schema as schema_mod


@dataclasses.dataclass
class Target:
    """A database, or a schema of one, that holds a dbmigrator state of its own."""

    name: str
    dsn: str
    schema: str = None

    @property
    def database(self):
        return describe(self.dsn)

    @property
    def server(self):
        """What ``--per-server`` counts by: host and port (an embedded server's folder)."""
        if embedded.is_embedded(self.dsn):
            return embedded.data_path(self.dsn)
        try:
            params = psycopg2.extensions.parse_dsn(self.dsn)
        except psycopg2.ProgrammingError:
            return self.dsn
        return '%s:%s' % (params.get('host') or os.environ.get('PGHOST') or 'localhost',
                          params.get('port') or os.environ.get('PGPORT') or '5432')


def resolve(settings):
    """The targets of ``targets`` and of ``targets-query``, in that order."""
    targets = [Target(name, dsn) for name, dsn in settings.targets.items()]
    if settings.targets_query:
        targets += _queried(settings)
    seen = set()
    for target in targets:
        if target.name in seen:
            raise SettingsError('target %r is named twice (targets and targets-query); '
                                'give each target its own name' % target.name)
        seen.add(target.name)
    if not targets:
        raise SettingsError('--targets needs targets: set targets (one "NAME '
                            'CONNECTION-STRING" per line) or targets-query in the ini file')
    return targets


def _queried(settings):
    """``targets-query``, run on db-connection-string: columns name and dsn, or name and
    schema (schemas of that database)."""
    dsn = settings.require_database()
    conn = connect(dsn, settings.connect_timeout)
    try:
        with conn.cursor() as cursor:
            try:
                cursor.execute(settings.targets_query)
            except psycopg2.Error as exc:
                raise SettingsError('targets-query failed: %s; fix the query in the ini file'
                                    % ' '.join(str(exc).split())) from None
            if cursor.description is None:
                raise SettingsError('targets-query returned no rows to read: it must be a '
                                    'SELECT of columns name and dsn, or name and schema')
            columns = [column.name for column in cursor.description]
            rows = cursor.fetchall()
    finally:
        conn.close()
    if 'name' not in columns or ('dsn' in columns) == ('schema' in columns):
        raise SettingsError('targets-query returned the columns %s: it must return name and '
                            'dsn (a database per target) or name and schema (a schema of '
                            'db-connection-string per target)' % ', '.join(columns))
    name = columns.index('name')
    if 'dsn' in columns:
        where = columns.index('dsn')
        return [Target(str(row[name]), normalize(str(row[where]))) for row in rows]
    where = columns.index('schema')
    return [Target(str(row[name]), dsn, schema_mod.check(str(row[where]))) for row in rows]


def select(targets, spec):
    """``all``, or comma-separated names and globs (``eu,us-*``), in the targets' order."""
    words = [word.strip() for word in spec.split(',') if word.strip()]
    if not words:
        raise SettingsError('--targets needs all, or names and globs separated by commas')
    if words == ['all']:
        return list(targets)
    names = [target.name for target in targets]
    for word in words:
        if not fnmatch.filter(names, word):
            raise SettingsError('--targets %s: no target is named %s; the targets are %s' % (
                spec, word, ', '.join(names)))
    return [target for target in targets
            if any(fnmatch.fnmatchcase(target.name, word) for word in words)]


def settings_for(settings, target):
    """The settings of one target, for work done in this process (the page): its
    connection string, and for a schema target its search path and lock keys."""
    dsn = target.dsn
    if target.schema:
        if embedded.is_embedded(dsn):
            raise SettingsError('schema target %s: an embedded: database cannot carry a '
                                'search path; name the server by its socket instead'
                                % target.name)
        dsn = psycopg2.extensions.make_dsn(dsn, options='-c search_path="%s"' % target.schema)
    return dataclasses.replace(settings, db_connection_string=dsn, schema=target.schema,
                                targets={}, targets_query=None)


def find(settings, name):
    """The target called ``name``, or None."""
    return next((t for t in resolve(settings) if t.name == name), None)

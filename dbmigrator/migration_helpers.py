"""Helpers that migration files import: ``from dbmigrator import deferred, super_user``."""
import contextlib

_active = {}


def deferred(up):
    """Mark a migration's ``up`` so that it only runs with ``--run-deferred``."""
    up.dbmigrator_deferred = True
    return up


def is_deferred(up):
    return bool(getattr(up, 'dbmigrator_deferred', False))


@contextlib.contextmanager
def activate(dsn, role, connect_timeout):
    """Let super_user() know which database the running migration uses."""
    previous = dict(_active)
    _active.update(dsn=dsn, role=role, connect_timeout=connect_timeout)
    try:
        yield
    finally:
        _active.clear()
        _active.update(previous)


@contextlib.contextmanager
def super_user():
    """A cursor connected as the ``super-user`` role (default ``postgres``).

    It is a separate connection: its work commits when the block ends
    without error, independently of the migration's own transaction.
    """
    from .database import connect
    if not _active:
        raise RuntimeError('super_user() is only available while dbmigrator runs a migration')
    conn = connect(_active['dsn'], _active['connect_timeout'], user=_active['role'])
    try:
        with conn.cursor() as cursor:
            yield cursor
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()

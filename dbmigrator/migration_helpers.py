"""Helpers that migration files import: ``from dbmigrator import deferred, super_user``.

Which database ``super_user()`` reaches is per run, in a context variable:
two runs in two threads of one process (the admin page) never see each
other's.
"""
import contextlib
import contextvars
import dataclasses

_active = contextvars.ContextVar('dbmigrator_active_run', default=None)


def deferred(up):
    """Mark a migration's ``up`` so that it only runs with ``--run-deferred``."""
    up.dbmigrator_deferred = True
    return up


def is_deferred(up):
    return bool(getattr(up, 'dbmigrator_deferred', False))


@dataclasses.dataclass
class ActiveRun:
    settings: object
    super_user_calls: int = 0
    tracer: object = None
    schema: object = None  # follows what a super_user() connection changes (the runner)


@contextlib.contextmanager
def activate(settings, tracer=None, schema=None):
    """Let super_user() know which database and timeouts the running migration uses.

    Yields the run's state; ``super_user_calls`` tells the schema diff that
    another connection may have changed the schema, and ``schema`` (with
    ``super_user_opened``, ``super_user_closing`` and ``super_user_failed``)
    reads what it changed, on that connection, before it commits.
    """
    run = ActiveRun(settings, tracer=tracer, schema=schema)
    token = _active.set(run)
    try:
        yield run
    finally:
        _active.reset(token)


@contextlib.contextmanager
def super_user():
    """A cursor connected as the ``super-user`` role (default ``postgres``).

    It is a separate connection: its work commits when the block ends
    without error, independently of the migration's own transaction.  The
    run's lock and statement timeouts apply to it too.
    """
    from . import interrupts
    from .database import connect, set_local_timeouts
    run = _active.get()
    if run is None:
        raise RuntimeError('super_user() is only available while dbmigrator runs a migration')
    run.super_user_calls += 1
    settings = run.settings
    conn = connect(settings.db_connection_string, settings.connect_timeout,
                   user=settings.super_user)
    interrupts.watch(conn)
    edit = None
    try:
        with conn.cursor() as cursor:
            set_local_timeouts(cursor, settings)
            opened = run.schema.super_user_opened(cursor) if run.schema else None
            yield cursor if run.tracer is None else run.tracer.also(cursor)
            if run.schema:
                edit = run.schema.super_user_closing(cursor, opened)
        conn.commit()
    except BaseException:
        if run.schema:
            run.schema.super_user_failed(edit)
        conn.rollback()
        raise
    finally:
        conn.close()

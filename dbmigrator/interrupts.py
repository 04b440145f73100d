"""Ctrl-C (and SIGTERM) that reaches the server.

By default libpq blocks in C while a statement runs and Python only sees
SIGINT once the statement is over.  This wait callback lets psycopg2 poll
instead, and on Ctrl-C asks the server to cancel the statement.  SIGTERM,
which playbooks and service managers send on timeouts, is handled the same way.
"""
import re
import select
import signal
import time

import psycopg2.extensions

_state = {'requested': False}


def _connect_deadline(conn):
    """When a connection is being set up: the time its connect_timeout ends, else None.

    libpq enforces connect_timeout only in blocking mode, and with this
    callback installed psycopg2 connects without blocking; so the callback
    enforces it itself.
    """
    if conn.status != psycopg2.extensions.STATUS_SETUP:
        return None
    match = re.search(r'connect_timeout=(\d+)', conn.dsn or '')
    return time.monotonic() + int(match.group(1)) if match and int(match.group(1)) else None


def _wait(conn):
    deadline = _connect_deadline(conn)
    while True:
        try:
            state = conn.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            timeout = None if deadline is None else max(0, deadline - time.monotonic())
            if state == psycopg2.extensions.POLL_READ:
                ready = select.select([conn.fileno()], [], [], timeout)[0]
            elif state == psycopg2.extensions.POLL_WRITE:
                ready = select.select([], [conn.fileno()], [], timeout)[1]
            else:
                continue
            if not ready and deadline is not None and time.monotonic() >= deadline:
                raise psycopg2.OperationalError('timeout expired')
        except KeyboardInterrupt:
            _state['requested'] = True
            conn.cancel()


def terminate_as_interrupt(signum, frame):
    """A SIGTERM handler: end the way Ctrl-C does, exit handlers included."""
    raise KeyboardInterrupt


def install():
    """Route every psycopg2 wait of this process through the cancelling callback."""
    psycopg2.extensions.set_wait_callback(_wait)
    signal.signal(signal.SIGTERM, terminate_as_interrupt)


def requested():
    return _state['requested']


def reset():
    _state['requested'] = False

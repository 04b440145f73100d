"""Ctrl-C (and SIGTERM) that reaches the server.

By default libpq blocks in C while a statement runs and Python only sees
SIGINT once the statement is over.  This wait callback lets psycopg2 poll
instead, and on Ctrl-C asks the server to cancel the statement.  SIGTERM,
which playbooks and service managers send on timeouts, is handled the same way.
"""
import select
import signal

import psycopg2.extensions

_state = {'requested': False}


def _wait(conn):
    while True:
        try:
            state = conn.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            if state == psycopg2.extensions.POLL_READ:
                select.select([conn.fileno()], [], [])
            elif state == psycopg2.extensions.POLL_WRITE:
                select.select([], [conn.fileno()], [])
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

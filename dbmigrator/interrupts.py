"""Ctrl-C (and SIGTERM) that reaches the server.

While a statement runs, libpq blocks in C and Python would only see SIGINT
once the statement is over.  So the signal also wakes a thread (through
``signal.set_wakeup_fd``) that asks the server to cancel the statement of
each connection the run waits on (:func:`watch`); the statement then ends with
``QueryCanceled``, and the handler lets that error tell the story.  A signal
that finds no statement running raises ``KeyboardInterrupt``, as Python's
own handler does.  Each statement still waits in libpq, not in a Python
polling loop.  SIGTERM, which playbooks and service managers send on
timeouts, is handled the same way.

When the cancel cannot get through (a stalled network or proxy that keeps
its sockets open), nothing would ever end the statement: so the process
exits on its own (130) ``GRACE_SECONDS`` after the signal.  libpq's cancel
request can hold the interpreter's lock while it waits, so SIGALRM, whose
default action needs no Python code, ends the process a little later if
even that cannot run.  :func:`stop` ends a run the same way from another
thread (the lease's, when it cannot be renewed).  The server rolls the
transaction back once it sees the connection gone (keepalives,
``client_connection_check_interval``).
"""
import os
import signal
import threading
import weakref

import psycopg2.extensions

GRACE_SECONDS = 10.0

_state = {'requested': False, 'cancelled': False, 'deadline': None, 'reason': None}
_connections = weakref.WeakSet()
_installed = []


def watch(conn):
    """Cancel ``conn``'s running statement on Ctrl-C or SIGTERM.

    Only connections whose statements the run waits for (the migration's,
    ``super_user()``'s): a helper thread's short query cancelled instead
    would let the signal pass unnoticed while a migration runs Python code.
    """
    _connections.add(conn)


def _busy(conn):
    try:
        return (not conn.closed and conn.info.transaction_status
                == psycopg2.extensions.TRANSACTION_STATUS_ACTIVE)
    except psycopg2.Error:
        return False


def _cancel_statements(read_end):
    """The wakeup thread: on each signal, cancel every statement in progress."""
    while True:
        signals = os.read(read_end, 64)
        if not {signal.SIGINT, signal.SIGTERM} & set(signals):
            continue
        _state['requested'] = True
        _exit_unless_done(GRACE_SECONDS, 'interrupted')
        _cancel_busy(signalled=True)


def _cancel_busy(signalled):
    for conn in list(_connections):
        if _busy(conn):
            # Set first: the statement can only end once the cancel is sent.
            _state['cancelled'] = signalled
            try:
                conn.cancel()
            except psycopg2.Error:
                pass


def _exit_unless_done(grace, why):
    """Exit ``grace`` seconds from now unless :func:`reset` comes first; only in
    the console script, never in a web server that runs migrations in a thread."""
    if _installed and _state['deadline'] is None:
        _state['deadline'] = threading.Timer(grace, _give_up, args=(why,))
        _state['deadline'].daemon = True
        _state['deadline'].start()
        signal.alarm(int(grace) + 5)


def _give_up(why):
    """The run did not end after the signal: its connection does not answer."""
    os.write(2, ('dbmigrator: error: %s, and the database connection does not answer the '
                 'cancel request: exiting; the server rolls back the running migration when '
                 'it notices the connection is gone\n' % why).encode())
    os._exit(130)


def stop(why, grace=GRACE_SECONDS / 2):
    """End the run from another thread as a signal would, saying ``why``."""
    _state['requested'] = True
    _state['reason'] = why
    _exit_unless_done(grace, why)
    _cancel_busy(signalled=False)


def reason():
    """Why :func:`stop` ended the run; None after a signal or when nothing did."""
    return _state['reason']


def _interrupt(signum, frame):
    """Raise KeyboardInterrupt, unless the signal cancelled a statement: its
    ``QueryCanceled`` is already on its way."""
    if _state['cancelled']:
        _state['cancelled'] = False
        return
    raise KeyboardInterrupt


def terminate_as_interrupt(signum, frame):
    """A SIGTERM handler: end the way Ctrl-C does, exit handlers included."""
    raise KeyboardInterrupt


def install():
    """Route SIGINT and SIGTERM of this process through the cancelling thread."""
    if not _installed:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        threading.Thread(target=_cancel_statements, args=(read_end,),
                         name='dbmigrator-interrupts', daemon=True).start()
        _installed.append(write_end)
    signal.set_wakeup_fd(_installed[0], warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def requested():
    return _state['requested']


def reset():
    _state['requested'] = _state['cancelled'] = False
    _state['reason'] = None
    if _state['deadline'] is not None:
        _state['deadline'].cancel()
        _state['deadline'] = None
        signal.alarm(0)

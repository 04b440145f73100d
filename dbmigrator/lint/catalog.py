"""What a statement did, as the catalogs of its own connection show it.

A :class:`State` is read after every statement a migration sends: the
relations with their files, the columns, the constraints, and the locks its
transaction holds.  Two states side by side tell which relations were
rewritten, which indexes and constraints came or went, and which columns
were dropped, renamed or made NOT NULL.
"""
import dataclasses

_USER = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"
# dbmigrator's own bookkeeping is never a finding.
_OWN = ("NOT IN ('schema_migrations', 'dbmigrator_checksums', 'dbmigrator_lock',"
        " 'dbmigrator_history', 'dbmigrator_runs')")

# With %(tables)s (the tables that existed when the migration began), each
# read is bounded by them, not by the size of the whole catalog.
RELATIONS = '''
SELECT c.oid, c.relfilenode, format('%%I.%%I', n.nspname, c.relname), c.relkind,
       COALESCE(i.indrelid, 0)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_index i ON i.indexrelid = c.oid
  LEFT JOIN pg_class t ON t.oid = i.indrelid
 WHERE c.relkind IN ('r', 'p', 'm', 'i', 'I') AND {user}
   AND COALESCE(t.relname, c.relname) {own}
   AND (%(tables)s IS NULL OR c.oid = ANY(%(tables)s) OR i.indrelid = ANY(%(tables)s))
'''.format(user=_USER, own=_OWN)

COLUMNS = '''
SELECT a.attrelid, a.attnum, a.attname, a.attnotnull, a.attisdropped
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE a.attnum > 0 AND c.relkind IN ('r', 'p') AND {user} AND c.relname {own}
   AND (%(tables)s IS NULL OR a.attrelid = ANY(%(tables)s))
'''.format(user=_USER, own=_OWN)

CONSTRAINTS = '''
SELECT co.oid, co.conrelid, co.contype, co.convalidated, co.conindid,
       pg_get_constraintdef(co.oid)
  FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {user} AND c.relname {own}
   AND (%(tables)s IS NULL OR co.conrelid = ANY(%(tables)s))
'''.format(user=_USER, own=_OWN)

LOCKS = ("SELECT relation, mode FROM pg_locks WHERE pid = pg_backend_pid()"
         " AND locktype = 'relation' AND granted AND relation IS NOT NULL")

ORDER = ('AccessExclusiveLock', 'ExclusiveLock', 'ShareRowExclusiveLock', 'ShareLock',
         'ShareUpdateExclusiveLock', 'RowExclusiveLock', 'RowShareLock', 'AccessShareLock')


@dataclasses.dataclass
class Relation:
    node: int
    name: str
    kind: str
    table: int  # an index's table; 0 otherwise

    @property
    def is_table(self):
        return self.kind in ('r', 'p', 'm')


@dataclasses.dataclass
class State:
    relations: dict
    columns: dict
    constraints: dict
    locks: dict

    def strongest_lock(self, oid):
        modes = self.locks.get(oid, ())
        return min(modes, key=ORDER.index) if modes else None


def read(conn, tables=None):
    """The state as ``conn``'s transaction sees it (one cursor, four reads), of
    ``tables`` (oids) and their indexes and constraints, or of every table."""
    bound = {'tables': sorted(tables) if tables is not None else None}
    with conn.cursor() as cursor:
        cursor.execute(RELATIONS, bound)
        relations = {oid: Relation(node, name, kind, table)
                     for oid, node, name, kind, table in cursor.fetchall()}
        cursor.execute(COLUMNS, bound)
        columns = {(rel, num): (name, notnull, dropped)
                   for rel, num, name, notnull, dropped in cursor.fetchall()}
        cursor.execute(CONSTRAINTS, bound)
        constraints = {oid: (rel, kind, valid, index, definition)
                       for oid, rel, kind, valid, index, definition in cursor.fetchall()}
        cursor.execute(LOCKS)
        locks = {}
        for relation, mode in cursor.fetchall():
            if mode in ORDER:
                locks.setdefault(relation, set()).add(mode)
    return State(relations, columns, constraints, locks)

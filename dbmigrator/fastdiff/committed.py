"""What a non-atomic migration changed, read after it committed.

It commits as it goes: no transaction is left whose locks and ``xmin`` tell
what it wrote.  The catalog rows written since the oldest transaction that
was running before it lead to the tables it changed instead (CREATE, REINDEX
or DROP INDEX CONCURRENTLY, VALIDATE CONSTRAINT), and an index it dropped is
found by the snapshot's record of it.  Those tables are rendered again, as
after an atomic step; anything else is pg_dump's to show.  What another
session changed in those catalogs meanwhile is found, and shown, as well.
"""
from .catalogs import UNSHOWN, gone
from .tables import _render_table


# What those statements write, and what they delete with an index.
WRITES = {'pg_class', 'pg_index', 'pg_attribute', 'pg_depend', 'pg_constraint', 'pg_trigger'}
DELETES = {'pg_class', 'pg_index', 'pg_attribute', 'pg_depend'}

# The oldest transaction that may still commit: whatever commits from here
# on has a transaction id from it on.
HORIZON = 'SELECT txid_snapshot_xmin(txid_current_snapshot())'

# The relation each of those catalogs' rows written since the horizon belongs
# to (NULL when it belongs to none: a domain's constraint, a function's
# dependency), and the table that relation is or belongs to, with its kind
# and persistence.
NEWER = '''
WITH since AS (SELECT age((%s::bigint %% 4294967296)::text::xid) AS age),
     touched (rel) AS (
       SELECT oid FROM pg_class WHERE age(xmin) <= (SELECT age FROM since)
       UNION SELECT indexrelid FROM pg_index WHERE age(xmin) <= (SELECT age FROM since)
       UNION SELECT attrelid FROM pg_attribute WHERE age(xmin) <= (SELECT age FROM since)
       UNION SELECT nullif(conrelid, 0) FROM pg_constraint
              WHERE age(xmin) <= (SELECT age FROM since)
       UNION SELECT tgrelid FROM pg_trigger WHERE age(xmin) <= (SELECT age FROM since)
       UNION SELECT CASE d.classid
                    WHEN 'pg_class'::regclass THEN d.objid
                    WHEN 'pg_constraint'::regclass THEN (
                         SELECT nullif(conrelid, 0) FROM pg_constraint WHERE oid = d.objid)
                    WHEN 'pg_trigger'::regclass THEN (
                         SELECT tgrelid FROM pg_trigger WHERE oid = d.objid) END
               FROM pg_depend d WHERE age(d.xmin) <= (SELECT age FROM since)),
     owners (rel, owner) AS (
       SELECT t.rel, CASE WHEN c.relkind IN ('r', 'p') THEN c.oid
                          WHEN c.relkind IN ('i', 'I') THEN (
                               SELECT indrelid FROM pg_index WHERE indexrelid = c.oid)
                          WHEN c.relkind = 't' THEN (
                               SELECT oid FROM pg_class WHERE reltoastrelid = c.oid) END
         FROM touched t LEFT JOIN pg_class c ON c.oid = t.rel)
SELECT o.rel, o.owner, c.relkind, c.relpersistence
  FROM owners o LEFT JOIN pg_class c ON c.oid = o.owner
'''


def horizon(cursor):
    """The transaction id the catalog rows a non-atomic migration writes will have
    at least: read before its code runs."""
    cursor.execute(HORIZON)
    return cursor.fetchone()[0]


def render_committed(reader, cursor, snapshot, delta, since):
    """Edit the snapshot to the tables a non-atomic migration changed, whose
    catalog writes since ``since`` (:func:`horizon`) are ``delta``: the undo log
    of :meth:`Snapshot.edit`, or None with ``snapshot.why``.  The tables it
    left to ``pg_dump --table`` are in ``snapshot.pending``.  Runs after it
    committed, after :meth:`CatalogReader.plan_with_indexes`."""
    if not snapshot.begin_render():
        return None
    why = _unsupported(delta)
    if why:
        snapshot.why = why
        return None
    tables = {}
    for _, owner, kind, persistence in reader.execute(cursor, NEWER, since):
        if persistence == 't':
            continue  # a temporary table's, which no dump has
        if owner is None or kind not in ('r', 'p'):
            snapshot.why = 'it changed more than tables and their indexes'
            return None
        tables[owner] = kind
    dropped = delta.get('pg_class', (0, 0, 0))[2]
    if dropped:
        indexes = {oid: table for table, pairs in snapshot.relations.indexes.items()
                   for oid, _ in pairs}
        went = gone(reader, cursor, 'pg_class', indexes)
        if len(went) != dropped:
            snapshot.why = 'it dropped more than indexes the dump has'
            return None
        tables.update((indexes[oid], 'r') for oid in went)
    rendered, pending = [], []
    for oid in sorted(tables):
        table = _render_table(reader, cursor, oid)
        if table is None or snapshot.relations.tables.get(oid, (table.schema, table.name)) != (
                table.schema, table.name):
            snapshot.why = 'it renamed or changed a table this path does not render'
            return None
        (rendered if table.sections is not None else pending).append(table)
    log = snapshot.edit(rendered, [], [], [], [])
    if log is None:
        return None
    if pending:
        snapshot.leave_pending(pending)
    return log


def _unsupported(delta):
    """Why writes like these are pg_dump's to show after a non-atomic migration."""
    others = sorted(set(delta) - WRITES - UNSHOWN)
    if others:
        return 'it wrote to %s' % ', '.join(others)
    deleted = sorted(name for name, (_, _, dele) in delta.items()
                     if dele and name not in DELETES | UNSHOWN)
    if deleted:
        return 'it deleted rows of %s' % ', '.join(deleted)
    if delta.get('pg_attribute', (0, 0, 0))[1]:
        # A column renamed or altered: what reads it elsewhere cannot be told.
        return 'it altered a column'
    return None

"""A migration that changed one schema of its own alone (not public), shown from
``pg_dump --schema`` after it committed, not from a dump of the whole
database: which schema, read inside its transaction, and that schema's
sections put in place of the ones the snapshot had.

It is for what the fast path does not render (a range type of an enum, an ordered-set
aggregate...) in a schema of its own.  Nothing outside the schema may have
changed, and nothing that changed may depend on, or be depended on by,
anything in another schema: pg_dump's sort could then move sections across
schemas, which a dump of one schema does not show.
"""
from .snapshot import Snapshot


# Where each catalog's rows (``x``, those this transaction wrote: {ours}) lead:
# the object they are or belong to, as (classid, objid).
LEADS = {'pg_class': ('pg_class', 'oid'), 'pg_type': ('pg_type', 'oid'),
         'pg_proc': ('pg_proc', 'oid'), 'pg_constraint': ('pg_constraint', 'oid'),
         'pg_statistic_ext': ('pg_statistic_ext', 'oid'), 'pg_operator': ('pg_operator', 'oid'),
         'pg_collation': ('pg_collation', 'oid'), 'pg_attrdef': ('pg_class', 'adrelid'),
         'pg_attribute': ('pg_class', 'attrelid'), 'pg_index': ('pg_class', 'indrelid'),
         'pg_rewrite': ('pg_class', 'ev_class'), 'pg_policy': ('pg_class', 'polrelid'),
         'pg_sequence': ('pg_class', 'seqrelid'), 'pg_inherits': ('pg_class', 'inhrelid'),
         'pg_partitioned_table': ('pg_class', 'partrelid'),
         'pg_aggregate': ('pg_proc', 'aggfnoid'), 'pg_range': ('pg_type', 'rngtypid'),
         'pg_enum': ('pg_type', 'enumtypid'),
         'pg_statistic_ext_data': ('pg_statistic_ext', 'stxoid')}
WRITTEN = dict({catalog: "SELECT '%s'::regclass, x.%s FROM %s x WHERE {ours}" % (
    leads, column, catalog) for catalog, (leads, column) in LEADS.items()}, **{
    'pg_description': 'SELECT x.classoid, x.objoid FROM pg_description x WHERE {ours}',
    # A foreign key's triggers on the table it references are not dumped.
    'pg_trigger': "SELECT 'pg_class'::regclass, x.tgrelid FROM pg_trigger x"
                  ' WHERE NOT x.tgisinternal AND {ours}',
    # A cast made with a type (a range's to its multirange) is that type's.
    'pg_cast': "SELECT coalesce(d.refclassid, 'pg_cast'::regclass), coalesce(d.refobjid, x.oid)"
               " FROM pg_cast x LEFT JOIN pg_depend d ON d.classid = 'pg_cast'::regclass"
               " AND d.objid = x.oid AND d.deptype = 'i' WHERE {ours}"})
# Catalogs written with the rest, that name no object of a schema.
IGNORED = {'pg_depend', 'pg_shdepend', 'pg_statistic', 'domain constraints'}


# What the transaction holds a lock on: every DDL locks what it alters and
# drops with more than the locks of reading and writing rows, or than a new
# foreign key takes on the table it references (whose own triggers for it
# are not dumped; the first one marks that table's row, which counts), or
# than what a new object names takes (a type, a function).  Read locks on
# tables count too when comments were deleted (COMMENT ON CONSTRAINT ... IS
# NULL takes no other), but never the step's claim's on schema_migrations
# and its index.
LOCKED = '''SELECT 'pg_class'::regclass, relation FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'relation' AND relation >= 16384
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND (mode NOT IN ('AccessShareLock', 'RowShareLock', 'RowExclusiveLock',
                     'ShareRowExclusiveLock')
        OR mode = 'ShareRowExclusiveLock' AND NOT EXISTS (
               SELECT 1 FROM pg_trigger t WHERE t.tgrelid = relation AND t.tgisinternal
                  AND age(t.xmin) <= 0)
        OR NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = relation)
        OR %s AND relation NOT IN (
            SELECT c.oid FROM pg_class c WHERE c.relname = 'schema_migrations'
            UNION SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
             WHERE c.relname = 'schema_migrations'))
 UNION SELECT classid, objid FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'object' AND mode <> 'AccessShareLock'
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())'''


# What belongs to a table and stands for it: catalog, the column naming the table.
OF_TABLE = (('pg_trigger', 'tgrelid'), ('pg_rewrite', 'ev_class'), ('pg_policy', 'polrelid'),
            ('pg_attrdef', 'adrelid'))


# The schema of each object of ``found``; a trigger, rule, policy or default is
# its table's.  The last column tells an object that is gone.
OF_FOUND = '''owned (classid, objid) AS (
       SELECT CASE WHEN f.classid IN (%s) THEN 'pg_class'::regclass ELSE f.classid END,
              coalesce(CASE f.classid %s END, f.objid)
         FROM found f)
SELECT DISTINCT o.classid::regclass::text, o.classid::oid, o.objid, i.type,
       CASE WHEN i.type = 'schema' THEN i.name ELSE i.schema END, i.identity IS NULL
  FROM owned o, pg_identify_object(o.classid, o.objid, 0) AS i
''' % (', '.join("'%s'::regclass" % catalog for catalog, _ in OF_TABLE), ' '.join(
    "WHEN '%s'::regclass THEN (SELECT %s FROM %s WHERE oid = f.objid)" % (catalog, column, catalog)
    for catalog, column in OF_TABLE))
SCHEMAS = 'WITH found (classid, objid) AS (%s),\n     ' + OF_FOUND


# Dependencies (``d``) that never move a section, as pg_dump writes what has
# them after what they lead to: triggers, policies, statistics, indexes and
# foreign keys come after every table; a table's other constraints, its
# defaults and its columns after every function and every type but a
# table's row type (a default or a check naming a sequence or table would
# have that sorted with the table).
FOLLOWS = '''d.classid IN ('pg_trigger'::regclass, 'pg_policy'::regclass,
                    'pg_statistic_ext'::regclass)
        OR d.classid = 'pg_class'::regclass AND EXISTS (
               SELECT 1 FROM pg_index WHERE indexrelid = d.objid)
        OR d.classid = 'pg_constraint'::regclass AND EXISTS (
               SELECT 1 FROM pg_constraint WHERE oid = d.objid AND contypid = 0
                  AND contype = 'f')
        OR (d.classid = 'pg_class'::regclass AND d.objsubid > 0
            OR d.classid IN ('pg_attrdef'::regclass, 'pg_constraint'::regclass) AND NOT EXISTS (
                   SELECT 1 FROM pg_constraint WHERE oid = d.objid AND contypid <> 0))
           AND (d.refclassid = 'pg_proc'::regclass OR d.refclassid = 'pg_type'::regclass
                AND EXISTS (SELECT 1 FROM pg_type WHERE oid = d.refobjid AND typrelid = 0))'''


# What depends on these objects (and on their parts), and what they depend on
# in a way that could move a section; not what is part of them (a range's
# multirange casts).
NEIGHBOURS = '''
WITH changed (classid, objid) AS (SELECT * FROM unnest(%%s::oid[], %%s::oid[])),
     tables AS (SELECT objid AS oid FROM changed WHERE classid = 'pg_class'::regclass),
     parts (classid, objid) AS (
       SELECT classid, objid FROM changed
       UNION SELECT 'pg_constraint'::regclass, oid FROM pg_constraint
              WHERE conrelid IN (SELECT oid FROM tables)
                 OR contypid IN (SELECT objid FROM changed WHERE classid = 'pg_type'::regclass)
       UNION SELECT 'pg_class'::regclass, indexrelid FROM pg_index
              WHERE indrelid IN (SELECT oid FROM tables)
       UNION SELECT 'pg_type'::regclass, reltype FROM pg_class
              WHERE oid IN (SELECT oid FROM tables) AND reltype <> 0
       %s),
     found (classid, objid) AS (
       SELECT d.refclassid, d.refobjid FROM pg_depend d
         JOIN parts p ON d.classid = p.classid AND d.objid = p.objid AND d.deptype <> 'i'
        WHERE NOT (%s)
       UNION SELECT d.classid, d.objid FROM pg_depend d
         JOIN parts p ON d.refclassid = p.classid AND d.refobjid = p.objid AND d.deptype <> 'i'
        WHERE NOT (d.classid = 'pg_trigger'::regclass AND EXISTS (
                       SELECT 1 FROM pg_trigger WHERE oid = d.objid AND tgisinternal))),
     ''' % ('\n       '.join(
    "UNION SELECT '%s'::regclass, oid FROM %s WHERE %s IN (SELECT oid FROM tables)" % (
        catalog, catalog, column)
    for catalog, column in OF_TABLE + (('pg_statistic_ext', 'stxrelid'),)), FOLLOWS) + OF_FOUND


# Catalogs of what is part of a table, a domain or a type.
PARTS = {'pg_constraint'} | {catalog for catalog, _ in OF_TABLE}
# Objects of no schema that any object may depend on without moving in the dump.
PLACELESS = {'language', 'access method'}
# Schemas pg_dump does not write, or whose objects only follow others.
UNDUMPED = ('pg_catalog', 'information_schema', 'pg_toast')


def confined(cursor, snapshot, delta):
    """The schema the migration changed alone, when ``pg_dump --schema`` of it
    shows the change; None otherwise.  Read inside its transaction."""
    if not delta or not snapshot.editable or {'pg_namespace', 'pg_extension'} & set(delta):
        return None
    parts = []
    for catalog, (ins, upd, dele) in sorted(delta.items()):
        if catalog in IGNORED:
            continue
        if catalog not in WRITTEN:
            return None
        if ins or upd:
            parts.append(WRITTEN[catalog].format(ours='age(x.xmin) <= 0'))
    reads = 'true' if delta.get('pg_description', (0, 0, 0))[2] else 'false'
    parts.append(LOCKED % reads)
    cursor.execute(SCHEMAS % ' UNION '.join(parts))
    schemas, changed = set(), []
    for catalog, classid, oid, kind, schema, gone in cursor.fetchall():
        if gone:
            schema = _gone(snapshot, catalog, oid)
            if schema is False:
                return None
            if schema is not None:
                schemas.add(schema)
            continue
        if kind in PLACELESS or (schema or '').startswith(UNDUMPED + ('pg_temp_',)):
            continue
        if schema is None:
            return None
        schemas.add(schema)
        changed.append((classid, oid))
    if len(schemas) != 1 or 'public' in schemas:
        return None
    (schema,) = schemas
    cursor.execute(NEIGHBOURS, ([classid for classid, _ in changed],
                                [oid for _, oid in changed]))
    for _, _, _, kind, theirs, gone in cursor.fetchall():
        if gone or kind in PLACELESS:
            continue
        if theirs != schema and not (theirs or '').startswith(UNDUMPED):
            return None
    return schema


def _gone(snapshot, catalog, oid):
    """The schema a dropped object was in, as the snapshot knew it; None for one the
    migration made itself; False when it cannot tell."""
    relations = snapshot.relations
    if catalog == 'pg_class':
        if oid in relations.tables:
            return relations.tables[oid][0]
        if ('pg_class', oid) in relations.objects:
            return relations.objects[('pg_class', oid)][1]
        for table, members in relations.members.items():
            if oid in members or any(index == oid for index, _ in relations.indexes.get(table, ())):
                return relations.tables[table][0]
        return False if oid in relations.known else None
    if catalog == 'pg_proc':
        return relations.routines.get(oid, (None,))[0]
    if catalog == 'pg_type':
        # Types it does not know are array types, which go with their own.
        return relations.objects.get(('pg_type', oid), (None, None))[1]
    if catalog in PARTS:
        return None  # what it was part of is locked too: its table, domain or type
    if catalog == 'pg_statistic_ext':
        return relations.objects.get(('pg_statistic_ext', oid), (None, None))[1]
    if catalog == 'pg_cast':
        # With no cast in the dump, it was one the migration made, or a type's own.
        return False if snapshot.has('CAST') else None
    return False


def pattern(schema):
    """A ``--schema`` pattern that names exactly this schema."""
    return '"%s"' % schema.replace('"', '""')


def fill_schema(snapshot, schema, lines, relations):
    """Put the sections of a ``pg_dump --schema`` dump (``lines``) in place of the
    schema's in the snapshot; the undo log, or None with ``snapshot.why``."""
    dumped = Snapshot(lines, relations)
    if not dumped.editable or not dumped.sorted:
        snapshot.why = 'pg_dump --schema %s wrote sections this path cannot order' % schema
        return None
    return snapshot.put_schema(schema, dumped.sections)

"""What a migration wrote to the catalogs: its pending write counts, the
relations its locks lead to, and what it dropped, checked against the counts.
"""
import dataclasses
import logging

from ..prepared import Statements
from .tables import TABLE_COLUMNS


log = logging.getLogger(__name__)


# Not a catalog: the number of constraints that belong to no table (domain
# checks).  A deleted constraint leaves no row to look at; when this count
# did not change, it was a table's, and that table's own rows changed too.
DOMAIN_CONSTRAINTS = 'domain constraints'
# Not a catalog either: the number of pg_depend rows that name an extension.
# pg_dump leaves out an extension's members and writes DEPENDS ON EXTENSION
# with the object that has it; ALTER EXTENSION ADD or DROP and (NO) DEPENDS
# ON EXTENSION write nothing else, and a deleted row leaves nothing to see.
EXTENSION_DEPENDENCIES = 'extension dependencies'
# Its row's oid in the counts, which no catalog has.
EXTENSION_DEPENDENCIES_OID = 1
# These two are numbers of rows in the whole database, not of writes: a
# transaction also sees there what others committed meanwhile.
ROW_COUNTS = (DOMAIN_CONSTRAINTS, EXTENSION_DEPENDENCIES)


# Catalogs whose rows a supported migration may write; deletions are only
# allowed in the dependency catalogs.  An aggregate's pg_aggregate row is
# written and deleted with its pg_proc row, which has it rendered or taken out;
# a range type's pg_range row with its pg_type row, and its cast (the only
# kind of cast allowed) with it.
WRITABLE = {'pg_class', 'pg_attribute', 'pg_type', 'pg_depend', 'pg_shdepend', 'pg_proc',
            'pg_constraint', 'pg_index', 'pg_attrdef', 'pg_sequence', 'pg_trigger',
            'pg_description', 'pg_rewrite', 'pg_enum', 'pg_statistic', 'pg_namespace',
            'pg_policy', 'pg_inherits', 'pg_partitioned_table', 'pg_statistic_ext',
            'pg_statistic_ext_data', 'pg_aggregate', 'pg_range', 'pg_cast', DOMAIN_CONSTRAINTS,
            EXTENSION_DEPENDENCIES}


# Deleting one of these rows takes a lock on the table it belongs to, or goes
# with a relation, routine or type that is gone (each checked against the
# snapshot's; a range type's pg_range row and cast go with it), or, for
# comments, is counted against the COMMENT sections taken out: every locked
# table is rendered again, and what is gone leaves the dump.
DELETABLE = {'pg_depend', 'pg_shdepend', 'pg_constraint', 'pg_trigger', 'pg_attrdef',
             'pg_description', 'pg_index', 'pg_attribute', 'pg_class', 'pg_proc', 'pg_type',
             'pg_enum', 'pg_rewrite', 'pg_sequence', 'pg_statistic', 'pg_namespace',
             'pg_policy', 'pg_inherits', 'pg_partitioned_table', 'pg_statistic_ext',
             'pg_statistic_ext_data', 'pg_aggregate', 'pg_range', 'pg_cast'}


# Catalogs that also hold objects no relation lock stands for (types, domain
# constraints): every row written there must be one found through a lock.
# In the others a row written twice counts twice but is found once.
EXACT = {'pg_type', 'pg_constraint', 'pg_description'}
FOUND = ('pg_class', 'pg_attribute', 'pg_constraint', 'pg_attrdef', 'pg_index', 'pg_type',
         'pg_description', 'pg_trigger', 'pg_rewrite', 'pg_policy')


# ``age(xmin) <= 0``: written by this transaction or one of its
# subtransactions (their ids are never older than the top one's).
OURS = 'age({0}.xmin) <= 0'
CATALOGS = '''
SELECT oid, relname FROM pg_class
 WHERE relnamespace = 'pg_catalog'::regnamespace AND relkind = 'r'
'''
EXTENSIONS_NAMED = '''UNION ALL SELECT %d, cardinality(ARRAY(SELECT 1 FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass)), 0, 0
''' % EXTENSION_DEPENDENCIES_OID
COUNTS = '''
SELECT o, pg_stat_get_xact_tuples_inserted(o), pg_stat_get_xact_tuples_updated(o),
       pg_stat_get_xact_tuples_deleted(o)
  FROM unnest(ARRAY[%s]::oid[]) AS o
UNION ALL SELECT NULL, cardinality(ARRAY(SELECT 1 FROM pg_constraint WHERE conrelid = 0)), 0, 0
''' + EXTENSIONS_NAMED

# With track_counts off nothing is counted, and a migration would look as if
# it changed nothing: the counts kept then say so, and so does the marker
# row of CHANGES.
UNCOUNTED = '\'{"off": []}\''
TRACKED = "current_setting('track_counts')::bool"

# The counts before a migration, kept in its own transaction: sent with its
# BEGIN and claim, they cost no round trip of their own.  Only those that are
# not zero (the backend's pending counts since it last reported them), and
# the domain constraints' count, which is never left out.
REMEMBER = '''
SELECT set_config('dbmigrator.catalog_counts', CASE WHEN ''' + TRACKED + ''' THEN (
       SELECT json_object_agg(coalesce(o, 0), json_build_array(i, u, d))
              FILTER (WHERE o IS NULL OR i <> 0 OR u <> 0 OR d <> 0)
         FROM (%s) AS c (o, i, u, d))::text ELSE ''' + UNCOUNTED + ''' END, true)
'''
# What changed since.  Rows of oid 0 say the counts cannot tell: (0, 0, 0, 0)
# when the counts kept are gone (the migration ran RESET ALL), (0, 1, 0, 0)
# when track_counts was off at either end.
CHANGES = '''
SELECT c.o, c.i - coalesce((b.v ->> 0)::bigint, 0), c.u - coalesce((b.v ->> 1)::bigint, 0),
       c.d - coalesce((b.v ->> 2)::bigint, 0)
  FROM (%s) AS c (o, i, u, d)
  LEFT JOIN json_each(nullif(current_setting('dbmigrator.catalog_counts', true), '')::json)
       AS b (k, v) ON b.k = coalesce(c.o, 0)::text
UNION ALL SELECT 0, 0, 0, 0
 WHERE nullif(current_setting('dbmigrator.catalog_counts', true), '') IS NULL
UNION ALL SELECT 0, 1, 0, 0
 WHERE NOT ''' + TRACKED + '''
    OR current_setting('dbmigrator.catalog_counts', true) = ''' + UNCOUNTED + '''
'''
UNTRACKED = 'UNION ALL SELECT 0, 1, 0, 0 WHERE NOT ' + TRACKED + '\n'
# A non-atomic migration commits as it goes, and between its statements the
# backend may report its pending counts to the server's: what it wrote is in
# the two together, whenever it reported them.
TOTALS = '''
SELECT o, pg_stat_get_tuples_inserted(o) + pg_stat_get_xact_tuples_inserted(o),
       pg_stat_get_tuples_updated(o) + pg_stat_get_xact_tuples_updated(o),
       pg_stat_get_tuples_deleted(o) + pg_stat_get_xact_tuples_deleted(o)
  FROM unnest(ARRAY[%s]::oid[]) AS o
''' + EXTENSIONS_NAMED
# Written by ANALYZE, and never in a schema-only dump.
UNSHOWN = {'pg_statistic', 'pg_statistic_ext_data'}
RESET_WHY = 'the migration reset the setting that kept the catalog counts (RESET ALL)'
UNCOUNTED_WHY = 'track_counts is off, so the catalog writes were not counted'


@dataclasses.dataclass
class Read:
    """What :meth:`CatalogReader.step` read ahead: the rows of LOCATE, and the TABLE
    row of each table the step wrote (oid -> row)."""

    located: list
    tables: dict


class CatalogReader:
    """Reads the catalogs for the fast path over one connection, for one run.

    Its statements are prepared once: planning them cost more than running
    them.  The fast path only runs where pg_dump may, never behind a
    transaction pooler, so the session that prepared them runs them.
    """

    def __init__(self, cursor, statements=None):
        cursor.execute(CATALOGS)
        self.names = dict(cursor.fetchall())
        self.labels = {**self.names, EXTENSION_DEPENDENCIES_OID: EXTENSION_DEPENDENCIES}
        self.statements = statements or Statements()
        self.why = None
        oids = ', '.join(str(int(oid)) for oid in self.names)
        self.counts_query = COUNTS % oids
        self.tracked_counts_query = self.counts_query + UNTRACKED
        self.totals_query = TOTALS % oids + UNTRACKED
        self.remember_query = REMEMBER % self.counts_query
        self.changes_query = CHANGES % self.counts_query
        self.step_query = STEP % self.counts_query
        # The counts' plans are made now, inside a savepoint that undoes the settings.
        cursor.execute('SAVEPOINT dbmigrator_plans')
        self.plan_with_indexes(cursor)
        self.counts(cursor)
        self.statements.execute(cursor.execute, self.remember_query)
        self.changes(cursor)
        self.step(cursor)
        cursor.execute('ROLLBACK TO SAVEPOINT dbmigrator_plans')

    @staticmethod
    def plan_with_indexes(cursor):
        """Plans made once, that reach catalog rows through the catalogs' indexes.

        A prepared statement keeps the plan of its first run, often made
        while the schema is still small and a sequential scan looks cheaper;
        that plan would walk every catalog row of every later migration.
        The settings are transaction-local, and the caller undoes them by
        rolling back to a savepoint taken before (the fast path only reads).
        An empty ``search_path``, as pg_dump sets, has the catalog functions
        name every object with its schema, as pg_dump prints them.
        """
        cursor.execute("SELECT set_config('enable_seqscan', 'off', true),"
                       " set_config('plan_cache_mode', 'force_generic_plan', true),"
                       " set_config('search_path', '', true)")

    def execute(self, cursor, sql, *params):
        self.statements.execute(cursor.execute, sql, params)
        return cursor.fetchall()

    def counts(self, cursor):
        """Pending writes of this backend: catalog name -> (inserted, updated, deleted);
        None, with why in :attr:`why`, when track_counts is off.

        The numbers of ``pg_stat_xact_sys_tables``, without that view's walk
        over every user table's toast table.
        """
        counts = self._tracked(self.execute(cursor, self.tracked_counts_query))
        return counts and {name: counted for name, counted in counts.items()
                           if name == DOMAIN_CONSTRAINTS or any(counted)}

    def totals(self, cursor):
        """Catalog name -> (inserted, updated, deleted) since the server's counts were
        last reset, with this backend's not yet reported; None, with why in
        :attr:`why`, when track_counts is off.  Not prepared: it is read after
        a non-atomic migration's code, which may have dropped the statements."""
        cursor.execute(self.totals_query)
        return self._tracked(cursor.fetchall())

    def _tracked(self, rows):
        """Rows of counts (with UNTRACKED) by catalog name; None when track_counts is off."""
        if any(oid == 0 for oid, *_ in rows):
            self.why = UNCOUNTED_WHY
            return None
        return {self.labels.get(oid, DOMAIN_CONSTRAINTS): (ins, upd, dele)
                for oid, ins, upd, dele in rows}

    def remember(self, batch):
        """Keep this backend's pending catalog write counts in the transaction, for
        :meth:`changes`; sent with what ``batch`` holds back."""
        batch.execute(self.remember_query, prepare=True)

    def changes(self, cursor):
        """Catalog name -> (inserted, updated, deleted) since :meth:`remember`; None when
        the counts cannot tell, with why in :attr:`why`."""
        return self._delta(self.execute(cursor, self.changes_query))

    def step(self, cursor):
        """:meth:`changes`, and what the fast path reads next in the same round trip:
        a :class:`Read`, or None when there are no changes."""
        rows = self.execute(cursor, self.step_query)
        delta = self._delta([(row[1],) + row[3:6] for row in rows if row[0] == 0])
        if not delta:
            return delta, None
        return delta, Read([row[1:14] for row in rows if row[0] == 1],
                           {row[1]: row[14] for row in rows if row[0] == 2})

    def _delta(self, rows):
        lost = [ins for oid, ins, _, _ in rows if oid == 0]
        if lost:
            self.why = UNCOUNTED_WHY if any(lost) else RESET_WHY
            return None
        return {self.labels.get(oid, DOMAIN_CONSTRAINTS): (ins, upd, dele)
                for oid, ins, upd, dele in rows if ins or upd or dele}


def touched(before, after):
    """Catalog name -> (inserted, updated, deleted) by the migration."""
    delta = {}
    for name in list(after) + [name for name in before if name not in after]:
        counts, old = after.get(name, (0, 0, 0)), before.get(name, (0, 0, 0))
        change = tuple(a - b for a, b in zip(counts, old))
        if any(change):
            delta[name] = change
    return delta


def unsupported(delta):
    """Why catalog writes like these are pg_dump's to show, or None."""
    if EXTENSION_DEPENDENCIES in delta:
        return ('it changed what depends on an extension (DEPENDS ON EXTENSION, or ALTER '
                'EXTENSION ADD or DROP), which this path does not render')
    others = sorted(name for name in delta if name not in WRITABLE)
    if others:
        return 'it wrote to %s, which this path does not render' % ', '.join(others)
    deleted = sorted(name for name, (_, _, dele) in delta.items()
                     if dele and name not in DELETABLE)
    if deleted:
        return 'it deleted rows of %s (a DROP, or a table rewrite)' % ', '.join(deleted)
    return None


# The relations this transaction holds locks on, the tables among them (an
# index stands for its table, a sequence for the table that owns it; a view,
# a materialized view, a composite type or a sequence of its own for
# itself), and what each of those owns; for each, its kind and how many
# of its catalog rows this transaction wrote, in the catalogs it wrote to
# (FOUND[1:]; pg_description counts comments on it, its columns, constraints,
# triggers and policies).  Every lookup goes through a catalog index: the
# cost follows the locks, not the schema.
LOCATED = '''locked AS (
       SELECT DISTINCT relation AS oid FROM pg_locks
        WHERE pid = pg_backend_pid() AND locktype = 'relation' AND relation >= 16384
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          %(gate)s),
     kinds AS (
       SELECT l.oid, c.relkind, i.indrelid, t.relkind AS table_kind FROM locked l
        CROSS JOIN LATERAL (SELECT relkind FROM pg_class WHERE oid = l.oid) c
        LEFT JOIN LATERAL (SELECT indrelid FROM pg_index WHERE indexrelid = l.oid) i ON true
        LEFT JOIN LATERAL (SELECT relkind FROM pg_class WHERE oid = i.indrelid) t ON true),
     tables AS (
       SELECT oid, relkind FROM kinds WHERE relkind IN ('r', 'p', 'm')
       UNION SELECT indrelid, table_kind FROM kinds WHERE table_kind IN ('r', 'p', 'm')),
     toast AS (
       SELECT c.reltoastrelid AS oid, t.oid AS owner, t.relkind FROM tables t
        CROSS JOIN LATERAL (SELECT reltoastrelid FROM pg_class WHERE oid = t.oid) c
        WHERE c.reltoastrelid <> 0),
     rels (oid, owner, kind) AS (
       SELECT oid, oid, relkind FROM tables
       UNION ALL SELECT oid, owner, relkind FROM toast
       UNION ALL SELECT i.indexrelid, t.oid, t.relkind FROM tables t
        CROSS JOIN LATERAL (SELECT indexrelid FROM pg_index WHERE indrelid = t.oid) i
       UNION ALL SELECT i.indexrelid, t.owner, t.relkind FROM toast t
        CROSS JOIN LATERAL (SELECT indexrelid FROM pg_index WHERE indrelid = t.oid) i
       UNION ALL SELECT s.oid, s.owner, (SELECT relkind FROM pg_class WHERE oid = s.owner)
         FROM (SELECT k.oid, coalesce((SELECT d.refobjid FROM pg_depend d
                                 WHERE d.classid = 'pg_class'::regclass AND d.objid = k.oid
                                   AND d.refclassid = 'pg_class'::regclass
                                   AND d.deptype IN ('a', 'i') LIMIT 1), k.oid)
                 FROM kinds k WHERE k.relkind = 'S') AS s (oid, owner)
       UNION ALL SELECT oid, oid, relkind FROM kinds WHERE relkind IN ('v', 'c')
       UNION ALL SELECT oid, NULL, NULL FROM kinds
        WHERE relkind NOT IN ('r', 'p', 'm', 'v', 'c', 'i', 'I', 't', 'S')
           OR table_kind NOT IN ('r', 'p', 'm', 't'))'''


def _rows_of(catalog, column):
    """SQL for how many rows of ``catalog`` on relation r (by ``column``) this
    transaction wrote; counted as an array, which starts faster than an aggregate."""
    return 'cardinality(ARRAY(SELECT 1 FROM %s x WHERE x.%s = r.oid AND %s))' % (
        catalog, column, OURS.format('x'))


def _comments_of(catalog, column):
    """SQL for how many comments this transaction wrote on the ``catalog`` rows of r."""
    return ("cardinality(ARRAY(SELECT 1 FROM %s o JOIN pg_description d ON d.objoid = o.oid"
            " AND d.classoid = '%s'::regclass WHERE o.%s = r.oid AND %s))"
            % (catalog, catalog, column, OURS.format('d')))


LOCATE_ROWS = '''
SELECT r.owner, r.kind, (age(c.xmin) <= 0)::int,
       ''' + ',\n       '.join(
    'CASE WHEN %%(%s)s THEN %s ELSE 0 END' % (catalog, counted) for catalog, counted in (
        ('pg_attribute', _rows_of('pg_attribute', 'attrelid')),
        ('pg_constraint', _rows_of('pg_constraint', 'conrelid')),
        ('pg_attrdef', _rows_of('pg_attrdef', 'adrelid')),
        ('pg_index', _rows_of('pg_index', 'indexrelid')),
        ('pg_type', """cardinality(ARRAY(SELECT 1 FROM pg_type t
                           WHERE c.reltype <> 0 AND age(t.xmin) <= 0 AND t.oid IN (
                                 c.reltype,
                                 (SELECT typarray FROM pg_type WHERE oid = c.reltype))))"""),
        ('pg_description', """cardinality(ARRAY(SELECT 1 FROM pg_description d
                           WHERE d.objoid = r.oid AND d.classoid = 'pg_class'::regclass
                             AND age(d.xmin) <= 0))
                       + """ + _comments_of('pg_constraint', 'conrelid') + """
                       + """ + _comments_of('pg_trigger', 'tgrelid') + """
                       + """ + _comments_of('pg_policy', 'polrelid')),
        ('pg_trigger', _rows_of('pg_trigger', 'tgrelid')),
        ('pg_rewrite', _rows_of('pg_rewrite', 'ev_class')),
        ('pg_policy', _rows_of('pg_policy', 'polrelid')))) + ''',
       CASE WHEN c.relkind = 'S' THEN r.oid END
  FROM rels r
 CROSS JOIN LATERAL (SELECT reltype, xmin, relkind FROM pg_class WHERE oid = r.oid) c%(gates)s
'''
LOCATE = 'WITH ' + (LOCATED + LOCATE_ROWS) % dict(
    {name: '%s' for name in FOUND[1:]}, gate='', gates='')

# A step's CHANGES (rows tagged 0), and when it wrote to the catalogs its
# LOCATE rows (tagged 1) and the TABLE row of each table among them that it
# wrote (tagged 2, as JSON), in one round trip: these only read what the
# transaction holds, which the fast path's own reads do not change.
STEP = '''
WITH changes AS MATERIALIZED (
       SELECT * FROM (''' + CHANGES + ''') AS c (o, i, u, d)
        WHERE o = 0 OR i <> 0 OR u <> 0 OR d <> 0),
     written AS MATERIALIZED (
       SELECT ''' + ',\n              '.join(
    "coalesce(bool_or(o = '%s'::regclass), false) AS %s" % (name, name)
    for name in FOUND[1:]) + '''
         FROM changes),
     ''' + LOCATED % dict(gate='AND EXISTS (SELECT 1 FROM changes WHERE o <> 0)') + ''',
     located (owner, kind, ''' + ', '.join(name + '_rows' for name in FOUND) + ''', sequence)
       AS MATERIALIZED (''' + (
    LOCATE_ROWS % dict({name: 'w.' + name for name in FOUND[1:]},
                       gates=' CROSS JOIN written w')) + ''')
SELECT 0, o, NULL::"char", i, u, d, 0, 0, 0, 0, 0, 0, 0, NULL::oid, NULL::json FROM changes
UNION ALL SELECT 1, *, NULL::json FROM located
UNION ALL SELECT 2, c.oid, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, json_build_array(''' + (
    TABLE_COLUMNS) + ''')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid IN (SELECT owner FROM located WHERE kind IN ('r', 'p') AND 0 < ''' + (
    '\n                  + '.join(name + '_rows' for name in FOUND)) + ''')
'''


# The fallback when the locks do not explain every row written: one pass
# over each catalog the migration touched, for the rows it wrote.  The
# tables it changed, and how many of its rows belong to anything but a
# plain table (any makes it pg_dump's job).
SCAN = '''
WITH cls AS MATERIALIZED (
       SELECT oid, relkind FROM pg_class WHERE age(xmin) <= 0),
     touched AS (
       SELECT oid FROM cls WHERE relkind IN ('r', 'p')
       UNION SELECT attrelid FROM pg_attribute WHERE %(attribute)s AND age(xmin) <= 0
       UNION SELECT conrelid FROM pg_constraint WHERE %(constraint)s AND age(xmin) <= 0
       UNION SELECT adrelid FROM pg_attrdef WHERE %(attrdef)s AND age(xmin) <= 0
       UNION SELECT indrelid FROM pg_index WHERE %(index)s AND age(xmin) <= 0
       UNION SELECT tgrelid FROM pg_trigger WHERE %(trigger)s AND age(xmin) <= 0
       UNION SELECT i.indrelid FROM cls JOIN pg_index i ON i.indexrelid = cls.oid
       UNION SELECT t.oid FROM cls JOIN pg_class t ON t.reltoastrelid = cls.oid)
SELECT t.oid, NULL FROM pg_class t
 WHERE t.oid IN (SELECT oid FROM touched) AND t.relkind IN ('r', 'p')
   AND t.relnamespace <> 'pg_catalog'::regnamespace AND t.relnamespace <> 'pg_toast'::regnamespace
UNION ALL
SELECT NULL, (SELECT count(*) FROM cls WHERE relkind NOT IN ('r', 'i', 't'))
     + (SELECT count(*) FROM cls JOIN pg_index i ON i.indexrelid = cls.oid
          JOIN pg_class t ON t.oid = i.indrelid WHERE t.relkind NOT IN ('r', 'p', 't'))
     + (SELECT count(*) FROM pg_type t
         WHERE %(type)s AND age(t.xmin) <= 0 AND t.typrelid = 0
           AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typrelid <> 0))
     + (SELECT count(*) FROM pg_constraint c
         WHERE %(constraint)s AND age(c.xmin) <= 0 AND c.conrelid = 0)
'''


# The relations this transaction dropped: it holds a lock on each.
GONE_RELATIONS = '''
SELECT DISTINCT relation FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'relation' AND relation >= 16384
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = relation)
'''


# Columns of these tables the migration changed (a rename among them) that
# something outside the table reads: a view or rule, another table's foreign
# key, trigger or policy, a function body.  Renamed, their new name shows in
# the text of those with no catalog row of theirs written.
READ_ELSEWHERE = '''
SELECT a.attrelid, quote_ident(a.attname),
       (SELECT count(*) FROM pg_attribute b WHERE b.attrelid = a.attrelid AND b.attnum > 0
           AND NOT b.attisdropped AND b.attnum <= a.attnum)
  FROM pg_attribute a
 WHERE a.attrelid = ANY(%s::oid[]) AND a.attnum > 0 AND age(a.xmin) <= 0
   AND EXISTS (
       SELECT 1 FROM pg_depend d
        WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = a.attrelid
          AND d.refobjsubid = a.attnum
          AND d.classid NOT IN ('pg_class'::regclass, 'pg_attrdef'::regclass)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE oid = d.objid
                             AND d.classid = 'pg_constraint'::regclass AND conrelid = a.attrelid)
          AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE oid = d.objid
                             AND d.classid = 'pg_trigger'::regclass AND tgrelid = a.attrelid)
          AND NOT EXISTS (SELECT 1 FROM pg_policy WHERE oid = d.objid
                             AND d.classid = 'pg_policy'::regclass AND polrelid = a.attrelid))
'''


# How many objects outside these tables (or views) name them: views and
# rules, other tables' foreign keys, columns of their row types, functions of
# their row types or whose SQL-standard bodies read them, extended
# statistics.  A table's own indexes, sequences, toast table, row type,
# defaults, constraints, triggers and policies are rendered with it, and so
# is a view's own rule.
TABLE_READERS = '''
SELECT count(*) FROM unnest(%s::oid[]) AS r (oid)
  JOIN pg_class c ON c.oid = r.oid
  JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = r.oid
                   OR d.refclassid = 'pg_type'::regclass AND d.refobjid = c.reltype
 WHERE NOT (d.deptype IN ('a', 'i') AND d.classid IN ('pg_class'::regclass,
                                                      'pg_type'::regclass))
   AND NOT (d.classid = 'pg_constraint'::regclass AND EXISTS (
                SELECT 1 FROM pg_constraint k WHERE k.oid = d.objid AND k.conrelid = r.oid))
   AND NOT (d.classid = 'pg_trigger'::regclass AND EXISTS (
                SELECT 1 FROM pg_trigger g WHERE g.oid = d.objid AND g.tgrelid = r.oid))
   AND NOT (d.classid = 'pg_policy'::regclass AND EXISTS (
                SELECT 1 FROM pg_policy p WHERE p.oid = d.objid AND p.polrelid = r.oid))
   AND NOT (d.classid = 'pg_attrdef'::regclass AND EXISTS (
                SELECT 1 FROM pg_attrdef a WHERE a.oid = d.objid AND a.adrelid = r.oid))
   AND NOT (d.classid = 'pg_rewrite'::regclass AND EXISTS (
                SELECT 1 FROM pg_rewrite w WHERE w.oid = d.objid AND w.ev_class = r.oid
                   AND w.rulename = '_RETURN'))
'''


# How many objects name these enum, range types or domains: columns,
# functions, views, other domains; not what is part of them (array and
# multirange types, a range's constructors and cast) nor domain constraints.
TYPE_READERS = '''
SELECT count(*) FROM pg_depend d
 WHERE d.refclassid = 'pg_type'::regclass AND d.refobjid = ANY(%s::oid[])
   AND d.deptype <> 'i'
   AND NOT (d.classid = 'pg_constraint'::regclass AND EXISTS (
                SELECT 1 FROM pg_constraint k WHERE k.oid = d.objid AND k.contypid = d.refobjid))
   AND NOT EXISTS (
       SELECT 1 FROM pg_depend p
        WHERE p.classid = d.classid AND p.objid = d.objid AND p.deptype = 'i'
          AND p.refclassid = 'pg_type'::regclass
          AND (p.refobjid = d.refobjid OR p.refobjid IN (
                   SELECT m.objid FROM pg_depend m
                    WHERE m.classid = 'pg_type'::regclass AND m.refclassid = 'pg_type'::regclass
                      AND m.refobjid = d.refobjid AND m.deptype = 'i')))
'''


# How many objects name these functions or procedures: triggers, defaults,
# checks, views, other routines' SQL-standard bodies.
ROUTINE_READERS = '''
SELECT count(*) FROM pg_depend
 WHERE refclassid = 'pg_proc'::regclass AND refobjid = ANY(%s::oid[])
'''


def read_elsewhere(reader, cursor, delta, tables):
    """(table oid, quoted name, place among the table's columns) of the columns the
    migration changed that something outside their table reads."""
    if not delta.get('pg_attribute', (0, 0, 0))[1] or not tables:
        return []
    return reader.execute(cursor, READ_ELSEWHERE, sorted(tables))


# The functions, types and schemas this transaction holds locks on that are
# still there: a comment taken off one leaves no row, but COMMENT locked what
# it was on.
OBJECT_LOCKS = '''
SELECT DISTINCT CASE l.classid WHEN 'pg_proc'::regclass THEN 'pg_proc'
                               WHEN 'pg_type'::regclass THEN 'pg_type' ELSE 'pg_namespace' END,
       l.objid, t.typtype, t.typrelid
  FROM pg_locks l
  LEFT JOIN pg_type t ON l.classid = 'pg_type'::regclass AND t.oid = l.objid
 WHERE l.pid = pg_backend_pid() AND l.locktype = 'object'
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND CASE l.classid WHEN 'pg_proc'::regclass THEN EXISTS (
                          SELECT 1 FROM pg_proc WHERE oid = l.objid)
                      WHEN 'pg_type'::regclass THEN t.oid IS NOT NULL
                      WHEN 'pg_namespace'::regclass THEN EXISTS (
                          SELECT 1 FROM pg_namespace WHERE oid = l.objid)
                      ELSE false END
 ORDER BY 1, 2
'''


# Which of these oids of one catalog's rows are gone.
GONE = '''
SELECT o FROM unnest(%%s::oid[]) AS o
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.%s WHERE oid = o)
'''


def gone(reader, cursor, catalog, known):
    """Which of ``known`` (oids of rows of ``catalog`` that the dump has) are gone."""
    known = sorted(known)
    return [oid for (oid,) in reader.execute(cursor, GONE % catalog, known)] if known else []


def _dropped(reader, cursor, relations, delta, changed):
    """The tables (``('table', oid)``) and views, sequences and types (``('object',
    ident)``) the migration dropped; None when a deleted relation or type is one
    the snapshot knows but does not render (a domain, a materialized view's
    index).  A relation that is not known at all was made and dropped by the
    migration itself (the transient table of a rewrite): it leaves no trace."""
    def gone_objects(catalog):
        return gone(reader, cursor, catalog,
                    [oid for kind, oid in relations.objects if kind == catalog])

    dropped, covered = [], set()
    if delta.get('pg_statistic_ext', (0, 0, 0))[2]:
        # First: a dropped table's statistics must be out before the table.
        statistics = gone_objects('pg_statistic_ext')
        if len(statistics) != delta['pg_statistic_ext'][2]:
            return None
        dropped += [('object', ('pg_statistic_ext', oid)) for oid in statistics]
    for table in changed:
        covered.update(oid for oid, _ in relations.indexes.get(table, ()))
        covered.update(relations.members.get(table, ()))  # a rewrite's old toast table
    if delta.get('pg_class', (0, 0, 0))[2]:
        relations_gone = [oid for (oid,) in reader.execute(cursor, GONE_RELATIONS)]
        if len(relations_gone) != delta['pg_class'][2]:
            return None
        for oid in relations_gone:
            if oid in relations.tables:
                dropped.append(('table', oid))
                covered.add(oid)
                covered.update(relations.members.get(oid, ()))
                covered.update(index for index, _ in relations.indexes.get(oid, ()))
            elif ('pg_class', oid) in relations.objects:
                dropped.append(('object', ('pg_class', oid)))
                covered.add(oid)
        if (set(relations_gone) - covered) & relations.known:
            return None
    if delta.get('pg_namespace', (0, 0, 0))[2]:
        dropped += [('object', ('pg_namespace', oid)) for oid in gone_objects('pg_namespace')]
    if delta.get('pg_type', (0, 0, 0))[2]:
        for oid in gone_objects('pg_type'):
            if relations.objects[('pg_type', oid)][0] not in ('TYPE', 'DOMAIN'):
                return None
            dropped.append(('object', ('pg_type', oid)))
    return dropped


def _locate(reader, cursor, delta, found, read=None, owners=None):
    """The relations changed (oid -> relkind), found through the locks; None when the
    counts are not explained.  ``read``: the :class:`Read` of the step, when
    the caller has it.

    ``found`` holds the rows already explained by other objects (enum
    types).  A relation of another kind (a sequence of its own) that was
    written counts as not explained too: the scan then hands it to pg_dump.
    When the migration deleted rows, every table, view and composite type it
    locked is rendered again: a deleted row has nothing left to count.
    ``owners`` gets each locked sequence's owner and its kind (itself when
    no column owns it).
    """
    deleted = any(dele for _, _, dele in delta.values())
    changed = {}
    located = read.located if read is not None else reader.execute(
        cursor, LOCATE, *[name in delta for name in FOUND[1:]])
    for owner, kind, *counts, sequence in located:
        if sequence is not None and owners is not None:
            owners[sequence] = (owner, kind)
        if any(counts) or (deleted and kind in ('r', 'p', 'v', 'm', 'c')):
            if owner is None:
                return None
            changed[owner] = kind
        for name, count in zip(FOUND, counts):
            found[name] = found.get(name, 0) + count
    # Rows written and then deleted by the migration (a dropped table's
    # columns, the transient table of a rewrite) are nowhere to be found:
    # then every row of the migration's still there must be.
    dropping = delta.get('pg_class', (0, 0, 0))[2] > 0
    for name, count in found.items():
        ins, upd, _ = delta.get(name, (0, 0, 0))
        if count > ins + upd or bool(count) != bool(ins + upd) or (
                name in EXACT and count != ins + upd):
            if dropping and count < ins + upd and count == _ours(cursor, name):
                continue
            log.debug('schema diff: %d of %d rows written to %s found through locks; scanning',
                      count, ins + upd, name)
            return None
    return changed


def _ours(cursor, catalog):
    """How many rows of ``catalog`` (one of FOUND) this transaction wrote that are
    still there: one pass over the catalog."""
    cursor.execute('SELECT count(*) FROM pg_catalog.%s WHERE age(xmin) <= 0' % catalog)
    return cursor.fetchone()[0]


def _scan(cursor, delta):
    """The tables changed, by a scan of the catalogs touched; None if anything else changed."""
    params = {key: 'true' if catalog in delta else 'false'
              for key, catalog in (('constraint', 'pg_constraint'), ('attrdef', 'pg_attrdef'),
                                   ('index', 'pg_index'), ('type', 'pg_type'),
                                   ('trigger', 'pg_trigger'))}
    # New pg_attribute rows come with a new or updated pg_class row (a new
    # relation, ADD COLUMN), which names the table already; only updates
    # (RENAME COLUMN, DROP COLUMN, DROP NOT NULL...) need the big scan.
    params['attribute'] = 'true' if any(delta.get('pg_attribute', (0, 0, 0))[1:]) else 'false'
    cursor.execute(SCAN % params)
    rows = cursor.fetchall()
    if any(others for oid, others in rows if oid is None):
        return None
    return {oid: 'r' for oid, _ in rows if oid is not None}

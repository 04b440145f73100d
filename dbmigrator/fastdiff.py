"""The schema diff without a pg_dump per migration, for the objects it knows.

The run's first ``pg_dump --schema-only`` is split into its objects at the
``-- Name: ...; Type: ...; Schema: ...; Owner: ...`` headers.  After a
migration, the catalog rows its transaction wrote (their ``xmin`` is its
transaction id; which catalogs were touched, and whether anything was
deleted, comes from ``pg_stat_xact_sys_tables``) name the tables it
changed.  Those tables, their constraints and their indexes are rendered
in-process the way pg_dump writes them, from the same catalog functions
pg_dump calls (``format_type``, ``pg_get_expr``, ``pg_get_constraintdef``,
``pg_get_indexdef``), and put where pg_dump's sort would put them.

Anything else -- a catalog it does not know, a deletion, a feature of a
table it does not render, a dump whose order it cannot reproduce -- makes
:func:`apply` return None, and the caller runs pg_dump for that migration.
The output is never different from pg_dump's; at worst it is as slow.
"""
import dataclasses
import logging
import re

from .schemadiff import DUMP_END

log = logging.getLogger(__name__)

HEADER = re.compile(r'^-- Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$')
END = DUMP_END

# Not a catalog: the number of constraints that belong to no table (domain
# checks).  A deleted constraint leaves no row to look at; when this count
# did not change, it was a table's, and that table's own rows changed too.
DOMAIN_CONSTRAINTS = 'domain constraints'

# Catalogs whose rows a supported migration may write; deletions are only
# allowed in the dependency catalogs.
WRITABLE = {'pg_class', 'pg_attribute', 'pg_type', 'pg_depend', 'pg_shdepend',
            'pg_constraint', 'pg_index', 'pg_attrdef', DOMAIN_CONSTRAINTS}
DELETABLE = {'pg_depend', 'pg_shdepend', 'pg_constraint'}

# pg_dump's sort groups (pg_dump_sort.c), for the section types seen in dumps
# this module can edit.  Types not listed make it give up.
BEFORE_RELATIONS = {'SCHEMA', 'EXTENSION', 'TYPE', 'DOMAIN', 'FUNCTION', 'PROCEDURE',
                    'AGGREGATE', 'COLLATION', 'CAST', 'OPERATOR', 'SHELL TYPE', 'PROCEDURAL LANGUAGE'}
RELATIONS = {'TABLE', 'SEQUENCE', 'VIEW', 'MATERIALIZED VIEW', 'FOREIGN TABLE'}
ATTACHED = {'COMMENT', 'SEQUENCE OWNED BY'}
RANKS = {'DEFAULT': 3, 'CONSTRAINT': 4, 'INDEX': 5, 'TRIGGER': 7, 'FK CONSTRAINT': 8,
         'POLICY': 9, 'ROW SECURITY': 9, 'ACL': 20, 'DEFAULT ACL': 20}


@dataclasses.dataclass
class Section:
    type: str
    schema: str
    name: str
    lines: list
    _key: tuple = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def rank(self):
        if self.type in BEFORE_RELATIONS:
            return 1
        if self.type in RELATIONS:
            return 2
        return RANKS.get(self.type)

    @property
    def sort_name(self):
        """What pg_dump sorts by: a constraint by its own name, not its table's."""
        if self.type == 'CONSTRAINT':
            return self.name.split(' ', 1)[1]
        return self.name

    def key(self):
        if self._key is None:
            self._key = (self.rank, self.schema.encode(), self.sort_name.encode())
        return self._key


class Snapshot:
    """A schema dump as objects: preamble, sections in pg_dump's order, trailer."""

    def __init__(self, lines):
        self.preamble, self.sections, self.trailer = [], [], []
        i, n = 0, len(lines)
        while i < n and not self._starts_section(lines, i):
            if lines[i] == '--' and i + 1 < n and lines[i + 1] == END:
                break
            self.preamble.append(lines[i])
            i += 1
        current = None
        while i < n:
            if lines[i] == '--' and i + 1 < n and lines[i + 1] == END:
                self.trailer = lines[i:]
                break
            if self._starts_section(lines, i):
                match = HEADER.match(lines[i + 1])
                current = Section(match.group(2), match.group(3), match.group(1), [])
                self.sections.append(current)
            current.lines.append(lines[i])
            i += 1

    @staticmethod
    def _starts_section(lines, i):
        return lines[i] == '--' and i + 1 < len(lines) and bool(HEADER.match(lines[i + 1]))

    def copy(self):
        """A snapshot sharing this one's sections, to edit without touching it."""
        copy = Snapshot([])
        copy.preamble, copy.sections, copy.trailer = (
            self.preamble, list(self.sections), self.trailer)
        return copy

    def objects(self):
        """The dump as objects, for :func:`dbmigrator.schemadiff.unified_objects`.

        Untouched sections are the same list objects in a snapshot and in
        the snapshot edited from it, so they match by identity.
        """
        return [self.preamble] + [s.lines for s in self.sections] + [self.trailer]

    def lines(self):
        out = list(self.preamble)
        for section in self.sections:
            out.extend(section.lines)
        return out + self.trailer

    def editable(self):
        """True when every section is of a kind whose place in pg_dump's order is known."""
        return all(s.type in ATTACHED or s.rank is not None for s in self.sections) and (
            not self.sections or self.sections[0].type not in ATTACHED)

    def replace(self, schema, table, indexes, new_sections):
        """Put the table's sections (its constraints', its indexes') where pg_dump would.

        A section that was there keeps its place; a new one goes where
        pg_dump's sort puts it, which is only known when the sections of its
        group are in plain name order (a dependency can make pg_dump move
        things): otherwise False, and nothing is changed.
        """
        def belongs(section):
            if section.schema != schema:
                return False
            if section.type == 'TABLE':
                return section.name == table
            if section.type == 'CONSTRAINT':
                return section.name.split(' ', 1)[0] == table
            if section.type == 'INDEX':
                return section.name in indexes
            return False
        wanted = {(s.type, s.name): s for s in new_sections}
        kept = []
        for section in self.sections:
            if belongs(section):
                replacement = wanted.pop((section.type, section.name), None)
                if replacement is not None:
                    # Unchanged text keeps the old object, so the diff matches it by identity.
                    kept.append(section if replacement.lines == section.lines else replacement)
            else:
                kept.append(section)
        for section in wanted.values():
            if not _insert(kept, section):
                return False
        self.sections = kept
        return True


def _insert(sections, new):
    """Insert ``new`` by pg_dump's sort; False when its place is not certain.

    Its place is certain when every section of its group before that place
    sorts before it and every one after sorts after it.  A group that
    pg_dump reordered for a dependency (a view named before its table) is
    fine as long as the new section does not land inside the reordering.
    """
    key = new.key()
    position = len(sections)
    for i, section in enumerate(sections):
        if section.type in ATTACHED:
            continue
        if section.rank >= 20 or section.key() > key:
            position = i
            break
    group = [(i, s.key()) for i, s in enumerate(sections)
             if s.type not in ATTACHED and s.rank == new.rank]
    if any(k >= key for i, k in group if i < position) or any(
            k <= key for i, k in group if i >= position):
        return False
    sections.insert(position, new)
    return True


def _section(kind, schema, name, owner, body):
    return Section(kind, schema, name,
                   ['--', '-- Name: %s; Type: %s; Schema: %s; Owner: %s' % (name, kind, schema, owner),
                    '--', ''] + body)


# One pass over each catalog the migration touched: the tables it changed,
# and how many of its rows belong to anything but a plain table (any makes
# it pg_dump's job).
CHANGED = '''
WITH cls AS MATERIALIZED (
       SELECT oid, relkind FROM pg_class WHERE xmin = %(xid)s::xid),
     touched AS (
       SELECT oid FROM cls WHERE relkind IN ('r', 'p')
       UNION SELECT attrelid FROM pg_attribute WHERE %(attribute)s AND xmin = %(xid)s::xid
       UNION SELECT conrelid FROM pg_constraint WHERE %(constraint)s AND xmin = %(xid)s::xid
       UNION SELECT adrelid FROM pg_attrdef WHERE %(attrdef)s AND xmin = %(xid)s::xid
       UNION SELECT indrelid FROM pg_index WHERE %(index)s AND xmin = %(xid)s::xid
       UNION SELECT i.indrelid FROM cls JOIN pg_index i ON i.indexrelid = cls.oid)
SELECT t.oid, NULL FROM pg_class t
 WHERE t.oid IN (SELECT oid FROM touched) AND t.relkind IN ('r', 'p')
   AND t.relnamespace <> 'pg_catalog'::regnamespace AND t.relnamespace <> 'pg_toast'::regnamespace
UNION ALL
SELECT NULL, (SELECT count(*) FROM cls WHERE relkind NOT IN ('r', 'i', 't'))
     + (SELECT count(*) FROM pg_type t
         WHERE %(type)s AND t.xmin = %(xid)s::xid AND t.typrelid = 0
           AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typrelid <> 0))
     + (SELECT count(*) FROM pg_constraint c
         WHERE %(constraint)s AND c.xmin = %(xid)s::xid AND c.conrelid = 0)
'''

TABLE = '''
SELECT n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       pg_get_userbyid(c.relowner), c.relkind = 'r' AND NOT c.relispartition
       AND NOT c.relhassubclass AND NOT c.relrowsecurity AND NOT c.relhastriggers
       AND NOT c.relhasrules AND c.relpersistence = 'p' AND c.reloptions IS NULL
       AND c.reltablespace = 0 AND c.relacl IS NULL AND c.reloftype = 0
       AND c.relreplident = 'd'
       AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = %s
'''

COLUMNS = '''
SELECT quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid),
       a.attidentity = '' AND a.attgenerated = '' AND a.attacl IS NULL
       AND a.attoptions IS NULL AND a.attfdwoptions IS NULL AND a.attstattarget IS NULL
       AND a.attcompression = '' AND a.attstorage = t.typstorage AND NOT a.attislocal = false
       AND (a.attcollation = t.typcollation), a.attname
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
'''

CONSTRAINTS = '''
SELECT c.conname, quote_ident(c.conname), c.contype, pg_get_constraintdef(c.oid),
       c.convalidated AND c.conislocal AND (c.contype NOT IN ('c', 'n') OR NOT c.connoinherit),
       (SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey))
  FROM pg_constraint c
 WHERE c.conrelid = %s
 ORDER BY c.conname
'''

INDEXES = '''
SELECT c.relname, pg_get_indexdef(i.indexrelid), NOT i.indisclustered AND i.indisvalid
       AND c.reltablespace = 0
       AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = c.oid),
       EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = i.indexrelid
               AND conrelid = i.indrelid AND contype IN ('p', 'u', 'x'))
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = %s
'''


COUNTS = '''
SELECT relname, ins, upd, del FROM (
  SELECT c.relname, pg_stat_get_xact_tuples_inserted(c.oid) AS ins,
         pg_stat_get_xact_tuples_updated(c.oid) AS upd,
         pg_stat_get_xact_tuples_deleted(c.oid) AS del
    FROM pg_class c
   WHERE c.oid < 16384 AND c.relkind = 'r' AND c.relnamespace IN (
         'pg_catalog'::regnamespace, 'pg_toast'::regnamespace)) counts
 WHERE ins + upd + del > 0
UNION ALL SELECT %s, count(*), 0, 0 FROM pg_constraint WHERE conrelid = 0
'''


def catalog_counts(cursor):
    """Pending per-catalog writes of this backend: name -> (inserted, updated, deleted).

    The same numbers as ``pg_stat_xact_sys_tables``, read for the catalogs
    only (that view also walks every user table's toast table).
    """
    cursor.execute(COUNTS, (DOMAIN_CONSTRAINTS,))
    return {name: (ins, upd, dele) for name, ins, upd, dele in cursor.fetchall()}


def touched(before, after):
    """Catalog name -> (inserted, updated, deleted) by the migration, or None if unsupported."""
    delta = {}
    for name, counts in after.items():
        old = before.get(name, (0, 0, 0))
        change = tuple(a - b for a, b in zip(counts, old))
        if any(change):
            delta[name] = change
    for name, (ins, upd, dele) in delta.items():
        if name.startswith('pg_toast_'):
            continue
        if name not in WRITABLE or name == DOMAIN_CONSTRAINTS or (dele and name not in DELETABLE):
            return None
    return delta


def transaction_id(cursor):
    """The migration's transaction id as ``xmin`` holds it (no epoch), or None if it wrote nothing."""
    cursor.execute('SELECT pg_current_xact_id_if_assigned()::text')
    full = cursor.fetchone()[0]
    return None if full is None else str(int(full) % (1 << 32))


def apply(conn, snapshot, xid, delta):
    """The snapshot after the migration, edited in place; None to ask for pg_dump."""
    if xid is None or delta is None or not snapshot.editable():
        log.debug('schema diff by pg_dump: %s', 'catalogs %s' % sorted(delta or {})
                  if delta is None or xid is None else 'a section pg_dump orders its own way')
        return None
    params = {'xid': xid}
    for key, catalog in (('constraint', 'pg_constraint'), ('attrdef', 'pg_attrdef'),
                         ('index', 'pg_index'), ('type', 'pg_type')):
        params[key] = 'true' if catalog in delta else 'false'
    # New pg_attribute rows come with a new or updated pg_class row (a new
    # relation, ADD COLUMN), which names the table already; only updates
    # (RENAME COLUMN, DROP COLUMN, DROP NOT NULL...) need the big scan.
    params['attribute'] = 'true' if any(delta.get('pg_attribute', (0, 0, 0))[1:]) else 'false'
    with conn.cursor() as cursor:
        cursor.execute(CHANGED, params)
        rows = cursor.fetchall()
        tables = [oid for oid, _ in rows if oid is not None]
        if any(others for oid, others in rows if oid is None):
            log.debug('schema diff by pg_dump: the migration made more than plain tables')
            conn.rollback()
            return None
        rendered = []
        for oid in tables:
            table = _render_table(cursor, oid)
            if table is None:
                log.debug('schema diff by pg_dump: table %s has features not rendered here', oid)
                conn.rollback()
                return None
            rendered.append(table)
    conn.rollback()
    edited = snapshot.copy()
    for schema, name, indexes, sections in rendered:
        if not edited.replace(schema, name, indexes, sections):
            log.debug('schema diff by pg_dump: cannot tell where pg_dump puts %s.%s', schema, name)
            return None
    return edited


def _render_table(cursor, oid):
    cursor.execute(TABLE, (oid,))
    schema, name, qualified, owner, plain = cursor.fetchone()
    if not plain:
        return None
    cursor.execute(COLUMNS, (oid,))
    columns = cursor.fetchall()
    cursor.execute(CONSTRAINTS, (oid,))
    constraints = cursor.fetchall()
    cursor.execute(INDEXES, (oid,))
    indexes = cursor.fetchall()
    not_null = set()
    checks, keyed = [], []
    for conname, quoted, contype, definition, plain_constraint, attnames in constraints:
        if not plain_constraint:
            return None
        if contype == 'n':
            if len(attnames or []) != 1 or conname != '%s_%s_not_null' % (name, attnames[0]):
                return None
            not_null.add(attnames[0])
        elif contype == 'c':
            checks.append('    CONSTRAINT %s %s' % (quoted, definition))
        elif contype in ('p', 'u'):
            keyed.append(_section('CONSTRAINT', schema, '%s %s' % (name, conname), owner, [
                'ALTER TABLE ONLY %s' % qualified,
                '    ADD CONSTRAINT %s %s;' % (quoted, definition), '', '']))
        else:
            return None
    body = []
    for quoted, type_name, attnotnull, default, plain_column, attname in columns:
        if not plain_column or (default and 'nextval(' in default):
            return None
        if attnotnull and cursor.connection.server_version >= 180000 and attname not in not_null:
            return None
        line = '    %s %s' % (quoted, type_name)
        if default is not None:
            line += ' DEFAULT %s' % default
        if attnotnull:
            line += ' NOT NULL'
        body.append(line)
    body += checks
    create = ['CREATE TABLE %s (' % qualified] + [
        line + (',' if i < len(body) - 1 else '') for i, line in enumerate(body)]
    sections = [_section('TABLE', schema, name, owner, create + [
        ');', '', '', 'ALTER TABLE %s OWNER TO %s;' % (qualified, _quote_owner(cursor, owner)),
        ''])] + keyed
    names = set()
    for index_name, definition, plain_index, for_constraint in indexes:
        names.add(index_name)
        if not plain_index:
            return None
        if not for_constraint:
            sections.append(_section('INDEX', schema, index_name, owner,
                                     [definition + ';', '', '']))
    return schema, name, names, sections


def _quote_owner(cursor, owner):
    cursor.execute('SELECT quote_ident(%s)', (owner,))
    return cursor.fetchone()[0]

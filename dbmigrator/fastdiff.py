"""The schema diff without a pg_dump per migration, for the objects it knows.

The run's first ``pg_dump --schema-only`` is split into its objects at the
``-- Name: ...; Type: ...; Schema: ...; Owner: ...`` headers and indexed by
name and by pg_dump's sort key.  Inside a migration's own transaction, after
its code ran, this module finds what it changed: the relations it holds
locks on (every DDL locks what it alters), checked against the number of
rows it wrote to each catalog, whose ``xmin`` is its transaction id.  Only
when those counts are not explained does it scan the catalogs for that
``xmin``.  The tables it changed, their constraints and their indexes are
rendered the way pg_dump writes them, from the catalog functions pg_dump
calls (``format_type``, ``pg_get_expr``, ``pg_get_constraintdef``,
``pg_get_indexdef``), and put where pg_dump's sort would put them.  The
cost follows the objects changed, not the size of the schema.

Anything else -- a catalog it does not know, a deletion, a feature of a
table it does not render, a rename, a place in the dump it cannot be sure
of -- makes :func:`render` return None, and the caller runs pg_dump for
that migration.  The output is never different from pg_dump's; at worst it
is as slow.
"""
import bisect
import dataclasses
import json
import logging
import re

from .prepared import Statements
from .schemadiff import DUMP_END, Lines

log = logging.getLogger(__name__)

HEADER = re.compile(r'^-- Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$')
END = DUMP_END

# Not a catalog: the number of constraints that belong to no table (domain
# checks).  A deleted constraint leaves no row to look at; when this count
# did not change, it was a table's, and that table's own rows changed too.
DOMAIN_CONSTRAINTS = 'domain constraints'

# Catalogs whose rows a supported migration may write; deletions are only
# allowed in the dependency catalogs.
WRITABLE = {'pg_class', 'pg_attribute', 'pg_type', 'pg_depend', 'pg_shdepend', 'pg_proc',
            'pg_constraint', 'pg_index', 'pg_attrdef', 'pg_sequence', 'pg_trigger',
            'pg_description', 'pg_rewrite', 'pg_enum', 'pg_statistic', 'pg_namespace',
            'pg_policy', DOMAIN_CONSTRAINTS}
# Deleting one of these rows takes a lock on the table it belongs to, or goes
# with a relation, routine or type that is gone (each checked against the
# snapshot's), or, for comments, is counted against the COMMENT sections
# taken out: every locked table is rendered again, and what is gone leaves
# the dump.
DELETABLE = {'pg_depend', 'pg_shdepend', 'pg_constraint', 'pg_trigger', 'pg_attrdef',
             'pg_description', 'pg_index', 'pg_attribute', 'pg_class', 'pg_proc', 'pg_type',
             'pg_enum', 'pg_rewrite', 'pg_sequence', 'pg_statistic', 'pg_namespace',
             'pg_policy'}
# Sections that may name a dropped object and that this module does not take
# out with it: such a drop is left to pg_dump.
TIED = {'SECURITY LABEL', 'RULE', 'STATISTICS',
        'TABLE ATTACH', 'INDEX ATTACH', 'PUBLICATION TABLE'}
# Catalogs that also hold objects no relation lock stands for (types, domain
# constraints): every row written there must be one found through a lock.
# In the others a row written twice counts twice but is found once.
EXACT = {'pg_type', 'pg_constraint', 'pg_description'}
FOUND = ('pg_class', 'pg_attribute', 'pg_constraint', 'pg_attrdef', 'pg_index', 'pg_type',
         'pg_description', 'pg_trigger', 'pg_rewrite', 'pg_policy')

# pg_dump's sort priorities (pg_dump_sort.c), for the section types seen in
# dumps this module can edit, in its order.  Types not listed make it give up.
BEFORE_RELATIONS = {'SCHEMA': 1.01, 'PROCEDURAL LANGUAGE': 1.02, 'COLLATION': 1.03,
                    'EXTENSION': 1.05, 'TYPE': 1.06, 'DOMAIN': 1.06, 'SHELL TYPE': 1.06,
                    'CAST': 1.07, 'FUNCTION': 1.08, 'PROCEDURE': 1.08, 'AGGREGATE': 1.09,
                    'OPERATOR': 1.11}
RELATIONS = {'TABLE', 'SEQUENCE', 'VIEW', 'MATERIALIZED VIEW', 'FOREIGN TABLE'}
# What stands in for a section taken out of the dump: no lines, no place of its own.
GONE = 'GONE'
ATTACHED = {'COMMENT', 'SEQUENCE OWNED BY', GONE}
# Sections named ``<table> <name>``, sorted by their own name.
NAMED_ON_TABLE = ('CONSTRAINT', 'FK CONSTRAINT', 'TRIGGER', 'POLICY')
# pg_dump sets the tablespace and access method right before the first of these.
TAKES_SETS = {'TABLE', 'MATERIALIZED VIEW'}
RANKS = {'DEFAULT': 3, 'CONSTRAINT': 4, 'INDEX': 5, 'TRIGGER': 7, 'FK CONSTRAINT': 8,
         'POLICY': 9, 'ROW SECURITY': 9, 'ACL': 20, 'DEFAULT ACL': 20}
LAST_RANK = 20
ROUTINES = ('FUNCTION', 'PROCEDURE')


def _rank(kind):
    if kind in BEFORE_RELATIONS:
        return BEFORE_RELATIONS[kind]
    if kind in RELATIONS:
        return 2
    return RANKS.get(kind)


def _on_table(tag):
    """A COMMENT's tag that names a table or one of its columns (pg_dump writes
    those right after the table, the table's first)."""
    return tag.startswith(('TABLE ', 'COLUMN '))


@dataclasses.dataclass(eq=False)
class Section:
    """One object of the dump; compared by identity, so that lists of them index fast."""

    type: str
    schema: str
    name: str
    lines: list
    sort_name: str = None

    def __post_init__(self):
        self.rank = _rank(self.type)
        self.key = None
        if self.sort_name is not None:
            self.sorted_by(self.sort_name)

    def sorted_by(self, sort_name):
        """What pg_dump sorts by: a constraint by its own name, not its table's; a
        routine by its name, then (here) its signature."""
        self.sort_name = sort_name
        self.key = (self.rank, self.schema.encode(), sort_name.encode())
        if self.type in ROUTINES:
            self.key = (self.rank, self.schema.encode(), sort_name.split('(')[0].encode(),
                        sort_name.encode())


@dataclasses.dataclass
class Relations:
    """The tables of the database at the snapshot: who owns which name and index."""

    tables: dict    # oid -> (schema, name)
    indexes: dict   # table oid -> frozenset of (oid, name) of its indexes
    names: set      # (schema, name) of every relation that can own a constraint, as dumped
    sequences: dict = dataclasses.field(default_factory=dict)  # table oid -> its sequences
    routines: dict = dataclasses.field(default_factory=dict)  # oid -> (schema, tag) as dumped
    # (catalog, oid) -> (type, schema, name) of views, materialized views, sequences
    # of their own, and types
    objects: dict = dataclasses.field(default_factory=dict)
    # table oid -> oids of the relations dropped with it: toast, owned sequences
    members: dict = dataclasses.field(default_factory=dict)
    # Every relation the dump stands for, and those edits put in: a relation
    # dropped that is not one of them was made by the same migration.
    known: set = dataclasses.field(default_factory=set)
    # (schema, what a routine's ACL section names it: name(identity arguments)) -> its tag
    acl_names: dict = dataclasses.field(default_factory=dict)

    def constraint_table(self, schema, label):
        """The table of a ``<table> <constraint>`` header name; None if not certain."""
        found = [label[:i] for i, char in enumerate(label)
                 if char == ' ' and (schema, label[:i]) in self.names]
        return found[0] if len(found) == 1 else None


# The relations that go with table c: its toast table and index, its sequences.
MEMBERS = '''ARRAY(SELECT c.reltoastrelid::bigint WHERE c.reltoastrelid <> 0
             UNION ALL SELECT ti.indexrelid::bigint FROM pg_index ti
              WHERE c.reltoastrelid <> 0 AND ti.indrelid = c.reltoastrelid
             UNION ALL SELECT md.objid::bigint FROM pg_depend md
              WHERE md.classid = 'pg_class'::regclass AND md.refclassid = 'pg_class'::regclass
                AND md.refobjid = c.oid AND md.deptype IN ('a', 'i')
                AND EXISTS (SELECT 1 FROM pg_class ms WHERE ms.oid = md.objid AND ms.relkind = 'S'))'''

RELATIONS_QUERY = '''
SELECT c.oid, n.nspname, c.relname, c.relkind IN ('r', 'p'), ''' + MEMBERS + ''',
       (SELECT json_agg(json_build_array(ic.oid::bigint, ic.relname)) FROM pg_index i
          JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid),
       (SELECT json_agg(json_build_array(sn.nspname, s.relname))
          FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
          JOIN pg_namespace sn ON sn.oid = s.relnamespace
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid = c.oid AND d.deptype IN ('a', 'i') AND s.relkind = 'S')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'f') AND n.nspname <> 'pg_catalog'
   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_toast'
'''


def acl_items(acl, owner):
    """SQL for the items of ``acl`` as [grantee as GRANT names it, privilege, grantable,
    granted by the owner], in pg_dump's order (the aclitems' own)."""
    return '''CASE WHEN %s IS NOT NULL THEN coalesce((SELECT json_agg(json_build_array(
                CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee))
                END, a.privilege_type, a.is_grantable, a.grantor = %s) ORDER BY a.n)
          FROM aclexplode(%s) WITH ORDINALITY AS a(grantor, grantee, privilege_type,
                                                   is_grantable, n)), '[]') END''' % (
        acl, owner, acl)


# The tag pg_dump gives a function or procedure: name(argument types).
ROUTINE_TAG = """p.proname || '(' || coalesce((
         SELECT string_agg(format_type(t, NULL), ', ' ORDER BY i)
           FROM unnest(p.proargtypes) WITH ORDINALITY AS a(t, i)), '') || ')'"""

# The functions and procedures a dump shows, by oid, with their tags.
ROUTINES_QUERY = '''
SELECT p.oid, n.nspname, ''' + ROUTINE_TAG + ''',
       quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')'
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname <> 'pg_catalog' AND n.nspname <> 'information_schema'
'''


# Views, materialized views, sequences of their own, composite types, and the
# types of their own (enums are TYPE; what this module does not render, such
# as domains and ranges, is OTHER), by what identifies them.
OBJECTS_QUERY = '''
SELECT 'pg_class', c.oid, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                          WHEN 'S' THEN 'SEQUENCE' ELSE 'TYPE' END, n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm', 'c', 'S') AND n.nspname <> 'pg_catalog'
   AND n.nspname <> 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
                      AND d.deptype IN ('a', 'i') AND c.relkind = 'S')
UNION ALL
SELECT 'pg_namespace', n.oid, 'SCHEMA', '-', n.nspname FROM pg_namespace n
 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'pg_type', t.oid, CASE t.typtype WHEN 'e' THEN 'TYPE' WHEN 'd' THEN 'DOMAIN'
                                          ELSE 'OTHER' END, n.nspname,
       t.typname
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype <> 'c' AND t.typrelid = 0 AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
   AND n.nspname <> 'pg_catalog' AND n.nspname <> 'information_schema'
'''


KNOWN_QUERY = '''
SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname <> 'pg_catalog' AND n.nspname <> 'information_schema'
'''


def relations(cursor):
    """The tables as the snapshot's dump saw them (read right after it)."""
    cursor.execute("SELECT set_config('search_path', '', true)")
    cursor.execute(ROUTINES_QUERY)
    rows = cursor.fetchall()
    routines = {oid: (schema, tag) for oid, schema, tag, _ in rows}
    acl_names = {(schema, acl_name): tag for _, schema, tag, acl_name in rows}
    cursor.execute(OBJECTS_QUERY)
    objects = {(catalog, oid): (kind, schema, name)
               for catalog, oid, kind, schema, name in cursor.fetchall()}
    cursor.execute(RELATIONS_QUERY)
    tables, indexes, names, sequences = {}, {}, set(), {}
    members = {}
    for oid, schema, name, is_table, table_members, index_names, owned in cursor.fetchall():
        names.add((schema, name))
        if is_table:
            tables[oid] = (schema, name)
            members[oid] = frozenset(table_members)
            indexes[oid] = frozenset(tuple(pair) for pair in index_names or ())
            sequences[oid] = frozenset(tuple(pair) for pair in owned or ())
    cursor.execute(KNOWN_QUERY)
    known = {oid for (oid,) in cursor.fetchall()}
    return Relations(tables, indexes, names, sequences, routines, objects, members, known,
                     acl_names)


class Snapshot:
    """A schema dump as objects: preamble, sections in pg_dump's order, trailer.

    Indexed by name and by sort key, so that putting a table's sections in
    costs what the table costs, not what the dump costs.  ``relations``
    comes from :func:`relations` of the same moment; without it the
    snapshot is only good for :meth:`objects` and :meth:`lines`.
    """

    def __init__(self, lines, relations=None, only_schema=None):
        # A schema target's dump holds its schema alone (pg_dump --schema).
        self.only_schema = only_schema
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
        self.relations = relations
        self.why = None  # why the last render was left to pg_dump
        self.editable = relations is not None and self._index()
        # The sections the step's edits put in: section -> whether it replaced one.
        self._edits, self._this_edit, self._undo, self._objects = {}, [], [], None
        self.step_before = None
        # What objects() returns, kept up to date by the edits.
        self._lines = [self.preamble] + [section.lines for section in self.sections] + [
            self.trailer]

    @staticmethod
    def _starts_section(lines, i):
        return lines[i] == '--' and i + 1 < len(lines) and bool(HEADER.match(lines[i + 1]))

    def _index(self):
        """Name and order indexes; False when some section's place or owner is unknown."""
        if self.sections and self.sections[0].type in ATTACHED:
            return False
        self._by_name, self._constraints, self._defaults, self._comments = {}, {}, {}, {}
        owner = None
        for section in self.sections:
            if section.type == 'SEQUENCE OWNED BY' or (
                    section.type == 'COMMENT' and owner is not None and _on_table(section.name)):
                self._by_name[section.type, section.schema, section.name] = section
                if section.type == 'COMMENT':
                    self._comments.setdefault((owner.schema, owner.name), []).append(section)
            if section.type in ATTACHED:
                continue
            owner = section if section.type == 'TABLE' else None
            if section.rank is None:
                return False
            self._by_name[section.type, section.schema, section.name] = section
            sort_name = section.name
            if section.type in NAMED_ON_TABLE + ('DEFAULT',):
                table = self.relations.constraint_table(section.schema, section.name)
                if table is None:
                    return False
                if section.type != 'DEFAULT':
                    sort_name = section.name[len(table) + 1:]
                    self._constraints.setdefault((section.schema, table), []).append(section)
                else:
                    self._defaults.setdefault((section.schema, table), []).append(section)
            section.sorted_by(sort_name)
        self._reorder()
        return True

    def _reorder(self):
        """The sort-key list of the sections before the ACLs, and whether it is sorted."""
        self._ordered = [s for s in self.sections if s.type not in ATTACHED]
        head = 0
        while head < len(self._ordered) and self._ordered[head].rank < LAST_RANK:
            head += 1
        self._keys = [s.key for s in self._ordered[:head]]
        self._sorted = all(s.rank >= LAST_RANK for s in self._ordered[head:]) and all(
            a < b for a, b in zip(self._keys, self._keys[1:]))

    def objects(self):
        """The dump as objects, for :func:`dbmigrator.schemadiff.unified_objects`.

        Made once: a snapshot is diffed as the new one, then as the old.
        """
        if self._objects is None:
            self._objects = Lines(list(self._lines))
        return self._objects

    def begin_step(self):
        """A migration begins: :meth:`opcodes` will cover every edit from here on
        (``super_user()``'s, then the migration's own), against ``step_before``."""
        self._edits = {}
        self.step_before = self.objects()

    def opcodes(self):
        """How :meth:`objects` differs from ``step_before``.

        difflib-style opcodes over objects, known from the edit itself (each
        section put in either replaced the one at its place or is new), so
        that the diff never compares the thousands of sections left alone.
        """
        codes, i, j = [], 0, 0
        for place, replaced in sorted((self.sections.index(section) + 1, replaced)
                                      for section, replaced in self._edits.items()):
            if place > j:
                codes.append(['equal', i, i + place - j, j, place])
                i, j = i + place - j, place
            width = 1 if replaced else 0
            if codes and codes[-1][0] != 'equal':
                codes[-1][2:] = [codes[-1][2] + width, codes[-1][3], codes[-1][4] + 1]
            else:
                codes.append([None, i, i + width, j, j + 1])
            codes[-1][0] = 'insert' if codes[-1][1] == codes[-1][2] else 'replace'
            i, j = i + width, j + 1
        total = len(self.sections) + 2
        if j < total:
            codes.append(['equal', i, i + total - j, j, total])
        return [tuple(code) for code in codes]

    def lines(self):
        out = list(self.preamble)
        for section in self.sections:
            out.extend(section.lines)
        return out + self.trailer

    def edit(self, tables, routines=(), objects=(), dropped_routines=(), dropped=()):
        """Put these rendered tables, routines, views and types in place; the undo log,
        or None if that is not certain.

        The snapshot is edited in place: copying a large schema's indexes
        would cost more than the edit.  On failure it is left as it was.
        The caller keeps the log until the migration has committed, to
        :meth:`undo` an edit whose migration did not.
        """
        self._this_edit, self._undo = [], []
        log = self._undo
        if self.only_schema and not self._within(tables, routines, objects, dropped,
                                                 dropped_routines):
            return None
        for oid in dropped_routines:
            if not self._drop_routine(oid):
                self.undo(log)
                return None
        for kind, key in dropped:
            if not (self._drop_table(key) if kind == 'table' else self._drop_object(key)):
                self.undo(log)
                return None
        for table in tables:
            if not self._put(table):
                self.undo(log)
                return None
        for oid, section, acl, comment, _ in routines:
            key = (section.schema, acl[0][2].partition(' ')[2])
            self._remember(self.relations.acl_names, key)
            self.relations.acl_names[key] = section.name
            if not self._put_routine(oid, section) or not self._sync_acl(*acl) or (
                    not self._sync_comment(section, comment)):
                self.undo(log)
                return None
        for ident, section, needs, *acl in objects:
            if not self._put_object(ident, section, needs) or (
                    acl and not self._sync_acl(*acl[0])):
                self.undo(log)
                return None
        self._objects = None
        return log

    def _know(self, oids):
        new = oids - self.relations.known
        if new:
            self.relations.known |= new
            self._undo.append(lambda: self.relations.known.difference_update(new))

    def _tied(self, section, name, acls=()):
        """Whether a section this module does not take out (other than ``acls``) may
        name ``name``."""
        return any(s.type in TIED and s.schema == section.schema and name in s.name
                   and s not in acls for s in self.sections)

    def _acls_of(self, sections):
        """The ACL sections of these sections' objects."""
        names = {(s.schema, s.name) for s in sections}
        return [s for s in self.sections if s.type == 'ACL' and (
            s.schema, self._acl_object(s)) in names]

    def _acl_object(self, acl):
        """The name of the section an ACL section is for."""
        name = acl.name.partition(' ')[2]
        return self.relations.acl_names.get((acl.schema, name)) or _unquoted(name)

    def _take_out(self, section, name):
        """Drop ``section``, its grants and the comments that follow it; False if
        something else in the dump may still name it."""
        acls = self._acls_of([section])
        if self._tied(section, name, acls):
            return self._refuse('%s had a policy or a label' % name)
        for acl in acls:
            if not self._drop(acl):
                return False
        position = self.sections.index(section) + 1
        comments = []
        while position < len(self.sections) and self.sections[position].type in ATTACHED:
            if self.sections[position].type == 'COMMENT':
                comments.append(self.sections[position])
            position += 1
        for dropped in comments + [section]:
            if not self._drop(dropped):
                return self._refuse('cannot take %s out of the dump' % name)
        return True

    def _drop_object(self, ident):
        """Take out a dropped view, sequence of its own or type."""
        kind, schema, name = self.relations.objects[ident]
        section = self._by_name.get((kind, schema, name))
        if section is None:
            return self._refuse('dropped %s %s is not one this path renders' % (kind, name))
        if not self._take_out(section, name):
            return False
        self._remember(self.relations.objects, ident)
        del self.relations.objects[ident]
        return True

    def _drop_table(self, oid):
        """Take out a dropped table with its constraints, triggers, defaults, comments,
        indexes and sequences."""
        schema, name = where = self.relations.tables[oid]
        table = self._by_name.get(('TABLE', schema, name))
        owned = [self._by_name.get((kind, s, n)) for s, n in self.relations.sequences.get(oid, ())
                 for kind in ('SEQUENCE OWNED BY', 'SEQUENCE')]
        acls = self._acls_of([table] + [s for s in owned if s is not None]) if table else []
        if table is None or self._tied(table, name, acls):
            return self._refuse('cannot take table %s out of the dump' % name)
        indexes = [self._by_name.get(('INDEX', schema, n))
                   for _, n in self.relations.indexes.get(oid, ())]
        parts = list(self._comments.get(where, ())) + list(self._constraints.get(where, ())) + list(
            self._defaults.get(where, ())) + indexes + owned + acls + [
            self._by_name.get(('ROW SECURITY', schema, name))]
        for section in [s for s in parts if s is not None] + [table]:
            if not self._drop(section):
                return self._refuse('cannot take table %s out of the dump' % name)
        for mapping, key in ((self.relations.tables, oid), (self.relations.indexes, oid),
                             (self.relations.sequences, oid), (self.relations.members, oid),
                             (self._constraints, where), (self._defaults, where),
                             (self._comments, where)):
            self._remember(mapping, key)
            mapping.pop(key, None)
        return True

    def _drop_routine(self, oid):
        """Take a dropped function or procedure out, with its comment; False if it had
        more in the dump (a grant, a security label)."""
        schema, tag = self.relations.routines[oid]
        found = [self._by_name.get((kind, schema, tag)) for kind in ROUTINES]
        section = next((s for s in found if s is not None), None)
        if section is None:
            return self._refuse('cannot find %s in the dump' % tag)
        if not self._take_out(section, tag.split('(')[0]):
            return False
        self._remember(self.relations.routines, oid)
        del self.relations.routines[oid]
        return True

    def _within(self, tables, routines, objects, dropped, dropped_routines):
        """Whether every object of an edit is in the schema a schema target's dump holds."""
        schemas = [t.schema for t in tables] + [r[1].schema for r in routines] + [
            self.relations.routines[oid][0] for oid in dropped_routines] + [
            o[1].name if o[1].type == 'SCHEMA' else o[1].schema for o in objects] + [
            (self.relations.tables.get(key) or self.relations.objects.get(key) or
             ('', '', ''))[-2 if kind == 'table' else 1] for kind, key in dropped]
        if any(schema != self.only_schema for schema in schemas):
            return self._refuse('it changed objects outside schema %s, which pg_dump '
                                '--schema leaves out' % self.only_schema)
        return True

    def removed(self, kind):
        """How many more sections of ``kind`` the last :meth:`edit` took out than it put in."""
        return sum(1 if section.type == GONE and section.was == kind else
                   -1 if section.type == kind and not replaced else 0
                   for section, replaced in self._this_edit)

    def _put_object(self, ident, new, needs):
        """Put a view, a materialized view or a type where pg_dump would; False if not
        certain.  ``needs`` are the (type, schema, name) of the sections it depends on."""
        where = (new.type, new.schema, new.name)
        old = self.relations.objects.get(ident)
        if old is not None and old != where:
            return self._refuse('%s %s.%s was renamed' % old)
        existing = self._by_name.get(where)
        if existing is not None:
            if existing.lines != new.lines:
                position = self.sections.index(existing)
                if self._place_by_sort(new.key, existing) != position or not self._after(
                        needs, position):
                    return self._refuse('%s %s now depends on what pg_dump puts after it' % (
                        new.type, new.name))
                self._swap(existing, new)
        elif not self._insert(new, needs):
            return self._refuse('cannot tell where pg_dump puts %s %s' % (new.type, new.name))
        self._remember(self.relations.objects, ident)
        self.relations.objects[ident] = where
        if ident[0] == 'pg_class':
            self._know({ident[1]})
        return True

    def _after(self, needs, position):
        """Whether every section in ``needs`` comes before ``position``."""
        for key in needs:
            section = self._by_name.get(key[:3])
            if section is None or self.sections.index(section) >= position:
                return False
        return True

    def _put_routine(self, oid, new):
        """Put a function or procedure where pg_dump would; False if not certain."""
        where = (new.schema, new.name)
        old = self.relations.routines.get(oid)
        if old is not None and old != where:
            return self._refuse('%s.%s was renamed, or its arguments changed' % old)
        existing = self._by_name.get((new.type,) + where)
        if existing is not None:
            if existing.lines != new.lines:
                self._swap(existing, new)
        elif any(key[:3] == new.key[:3] for key in self._keys):
            return self._refuse('%s has an overload, which pg_dump orders by its argument '
                                'types' % new.name)
        elif not self._insert(new):
            return self._refuse('cannot tell where pg_dump puts %s %s' % (new.type, new.name))
        self._remember(self.relations.routines, oid)
        self.relations.routines[oid] = where
        return True

    def _sync_comment(self, owner, new):
        """Put, replace or take out the COMMENT section that follows ``owner``."""
        section = self._by_name.get((owner.type, owner.schema, owner.name))
        place = self.sections.index(section) + 1
        existing = self.sections[place] if place < len(self.sections) and (
            self.sections[place].type == 'COMMENT') else None
        if new is None:
            return existing is None or self._drop(existing)
        if existing is None:
            return self._attach(new, section)
        if existing.lines != new.lines:
            self._swap(existing, new)
        return True

    def _sync_acl(self, key, new):
        """Put, replace or take out the ACL section ``key`` of an object rendered again."""
        existing = self._by_name.get(key)
        if new is None:
            return existing is None or self._drop(existing)
        if existing is None:
            return self._insert_acl(new) or self._refuse('cannot place %s' % new.name)
        if existing.lines != new.lines:
            self._swap(existing, new)
        return True

    def undo(self, log):
        for step in reversed(log):
            step()
        log.clear()
        self._objects = None

    def _remember(self, mapping, key):
        """Note how to put ``mapping[key]`` back as it is now."""
        if key in mapping:
            value = mapping[key]
            self._undo.append(lambda: mapping.__setitem__(key, value))
        else:
            self._undo.append(lambda: mapping.pop(key, None))

    def _put(self, table):
        """Put a table's sections (its constraints', its indexes') where pg_dump would."""
        where = (table.schema, table.name)
        old = self.relations.tables.get(table.oid)
        if old is not None and old != where:
            return self._refuse('%s.%s was renamed' % where)
        old_indexes = self.relations.indexes.get(table.oid, frozenset())
        now = dict(table.indexes)
        if any(now.get(oid, name) != name for oid, name in old_indexes):
            return self._refuse('an index of %s.%s was renamed' % where)
        dropped = {name for oid, name in old_indexes if oid not in now}
        old_sequences = self.relations.sequences.get(table.oid, frozenset())
        if not old_sequences <= table.sequence_names:
            return self._refuse('a sequence of %s.%s was renamed' % where)
        existing = [self._by_name.get(('TABLE',) + where),
                    self._by_name.get(('ROW SECURITY',) + where)] + list(
            self._constraints.get(where, ())) + list(self._defaults.get(where, ())) + list(
            self._comments.get(where, ())) + [
            self._by_name.get(('INDEX', table.schema, name)) for _, name in old_indexes] + [
            self._by_name.get((kind, schema, name)) for schema, name in old_sequences
            for kind in ('SEQUENCE', 'SEQUENCE OWNED BY')] + [
            self._by_name.get(key) for key in table.acl_keys]
        wanted = {(s.type, s.name): s for s in table.sections}
        for section in existing:
            if section is None:
                continue
            replacement = wanted.pop((section.type, section.name), None)
            if replacement is None:
                if section.type == 'TABLE' or (
                        section.type == 'INDEX' and section.name not in dropped) or (
                        not self._drop(section)):
                    return self._refuse('%s %s went away' % (section.type, section.name))
                continue
            if replacement.lines != section.lines:
                self._swap(section, replacement)
        previous = {}
        for before, section in zip(table.sections, table.sections[1:]):
            if section.type == 'COMMENT':
                previous[section.name] = before
        for section in wanted.values():
            if section.type == 'COMMENT':
                before = previous[section.name]
                placed = self._attach(section, self._by_name.get(
                    (before.type, before.schema, before.name)))
                if not placed:
                    return self._refuse('cannot place COMMENT %s' % section.name)
                continue
            if not self._insert(section):
                return self._refuse('cannot tell where pg_dump puts %s %s' % (
                    section.type, section.name))
        for mapping, key in ((self.relations.tables, table.oid),
                             (self.relations.indexes, table.oid),
                             (self.relations.sequences, table.oid),
                             (self.relations.members, table.oid), (self._constraints, where),
                             (self._defaults, where), (self._comments, where)):
            self._remember(mapping, key)
        self._know({table.oid} | table.members | {oid for oid, _ in table.indexes})
        self.relations.tables[table.oid] = where
        self.relations.indexes[table.oid] = table.indexes
        self.relations.sequences[table.oid] = table.sequence_names
        self.relations.members[table.oid] = table.members
        for kinds, mapping in ((NAMED_ON_TABLE, self._constraints),
                               (('DEFAULT',), self._defaults), (('COMMENT',), self._comments)):
            mapping[where] = [self._by_name[s.type, s.schema, s.name]
                              for s in table.sections if s.type in kinds]
        return True

    def _refuse(self, why):
        self.why = why
        return False

    def _drop(self, old):
        """Take ``old`` out of the dump; False for the first table, which pg_dump's SET
        lines go with.

        An empty section stands in its place (keeping the SET lines that
        followed it), so that the places of the others, and the undo log,
        stay as they are.
        """
        i = self.sections.index(old)
        if old.type in TAKES_SETS and i and _trailing_sets(self.sections[i - 1].lines):
            following = next((s for s in self.sections[i + 1:] if s.type not in ATTACHED), None)
            if following is None or following.type not in TAKES_SETS:
                return False
        gone = Section(GONE, old.schema, old.name, [])
        gone.was = old.type
        j = None if old.type in ATTACHED else self._ordered.index(old)
        self._swap(old, gone)
        if j is not None:
            keyed = j < len(self._keys)
            key = self._keys[j] if keyed else None
            del self._ordered[j]
            if keyed:
                del self._keys[j]

            def undo():
                self._ordered.insert(j, gone)
                if keyed:
                    self._keys.insert(j, key)
            self._undo.append(undo)
        self._remember(self._by_name, (old.type, old.schema, old.name))
        self._by_name.pop((old.type, old.schema, old.name), None)
        return True

    def _swap(self, old, new, carry=True):
        sets = _trailing_sets(old.lines) if carry else None
        if sets and not _trailing_sets(new.lines):
            new.lines = new.lines + sets  # they belong to what follows, not to this object
        self._note_edit(new, True, old)
        i = self.sections.index(old)
        j = None if old.type in ATTACHED else self._ordered.index(old)
        self._remember(self._by_name, (new.type, new.schema, new.name))
        self.sections[i] = new
        if j is not None:
            self._ordered[j] = new
        self._lines[i + 1] = new.lines
        self._by_name[new.type, new.schema, new.name] = new

        def undo():
            self.sections[i] = old
            if j is not None:
                self._ordered[j] = old
            self._lines[i + 1] = old.lines
        self._undo.append(undo)

    def _place_by_sort(self, key, leaving=None):
        """Where pg_dump's sort puts an object of sort key ``key`` that nothing depends
        on, ``leaving`` aside; None when another has the same key.

        pg_dump fills its output from the end with the highest-sorting object
        whose dependents are all out: such an object lands right after the
        last object that sorts before it, wherever dependencies moved that
        one, and the others keep their order.
        """
        if self._sorted:
            place = bisect.bisect_left(self._keys, key)
            if place < len(self._keys) and self._keys[place] == key and (
                    self._ordered[place] is not leaving):
                return None
            after = place - 1
        else:
            after = -1
            for i, section in enumerate(self._ordered):
                if section is leaving or section.type in ATTACHED or section.rank >= LAST_RANK:
                    continue
                if section.key == key:
                    return None
                if section.key < key:
                    after = i
        if after < 0:
            position = 0
            while position < len(self.sections) and self.sections[position].type in ATTACHED:
                position += 1
            return position
        position = self.sections.index(self._ordered[after]) + 1
        while position < len(self.sections) and self.sections[position].type in ATTACHED and (
                self.sections[position] is not leaving):
            position += 1
        return position

    def _insert(self, new, needs=()):
        """Insert ``new`` by pg_dump's sort; False when its place is not certain."""
        if new.type == 'SEQUENCE OWNED BY':
            return self._attach(new, self._by_name.get(('SEQUENCE', new.schema, new.name)))
        if new.type == 'ACL':
            return self._insert_acl(new)
        position = self._place_by_sort(new.key)
        if position is not None and not self._after(needs, position):
            position = self._pull_up(needs, position)
        if position is None:
            return False
        if self._sorted:
            place = bisect.bisect_left(self._keys, new.key)
        previous = self.sections[position - 1] if position else None
        if new.type not in TAKES_SETS and previous is not None and _trailing_sets(
                previous.lines):
            # pg_dump's SETs for the tables that follow move below the new object.
            sets = _trailing_sets(previous.lines)
            self._swap(previous, Section(previous.type, previous.schema, previous.name,
                                         previous.lines[:-len(sets)], previous.sort_name),
                       carry=False)
            new.lines = new.lines + sets
        self._place(new, position)
        if self._sorted:
            self._ordered.insert(place, new)
            self._keys.insert(place, new.key)
        else:
            self._reorder()

        def undo():
            if self._sorted:
                del self._ordered[place]
                del self._keys[place]
            else:
                self._reorder()
        self._undo.append(undo)
        return True

    def _pull_up(self, needs, position):
        """pg_dump puts a new view that sorts before a table it reads right after that
        table, which moves up to the view's place (with its comments), before
        everything the view sorts before: the view's place then, or None when
        what it reads is not such a table."""
        places = {id(section): i for i, section in enumerate(self.sections)}
        late = []
        for kind, schema, name, movable in needs:
            section = self._by_name.get((kind, schema, name))
            if section is None:
                return None
            if places[id(section)] >= position:
                if kind != 'TABLE' or not movable:
                    return None
                late.append(section)
        groups = []
        for section in sorted(late, key=lambda s: s.key):
            i = places[id(section)]
            if any(_trailing_sets(s.lines) for s in self.sections[max(position - 1, 0):i]):
                return None  # pg_dump's SET lines would move too
            group = [section]
            while i + len(group) < len(self.sections) and (
                    self.sections[i + len(group)].type in ATTACHED - {GONE}):
                group.append(self.sections[i + len(group)])
            groups.append(group)
        self._undo.append(self._reorder)
        for group in groups:
            for section in group:
                if not self._drop(section):
                    return None
        for group in groups:
            for section in group:
                self._place(section, position)
                position += 1
        self._reorder()
        return position

    def _acl_owner(self, acl, places):
        """The place in the dump of what an ACL section is for: -1 for a schema
        (schemas come first), None when not known."""
        keyword, _, name = acl.name.partition(' ')
        if keyword == 'SCHEMA':
            return -1
        kinds = {'TABLE': ('TABLE', 'VIEW', 'MATERIALIZED VIEW', 'FOREIGN TABLE'),
                 'SEQUENCE': ('SEQUENCE',), 'FUNCTION': ('FUNCTION',),
                 'PROCEDURE': ('PROCEDURE',)}.get(keyword, ())
        name = self._acl_object(acl)
        for kind in kinds:
            section = self._by_name.get((kind, acl.schema, name))
            if section is not None:
                return places.get(id(section))
        return None

    def _insert_acl(self, new):
        """ACLs come last, in the order of what they are for (pg_dump writes them in a
        pass of their own): after the ACLs of everything before this one's object."""
        places = {id(section): i for i, section in enumerate(self.sections)}
        mine = self._acl_owner(new, places)
        if mine is None:
            return False
        position = len(self.sections)
        for i, section in enumerate(self.sections):
            if section.type == 'ACL':
                theirs = self._acl_owner(section, places)
                if theirs is None:
                    return False
                if theirs > mine:
                    position = i
                    break
            elif section.rank is not None and section.rank >= LAST_RANK:
                return False
        self._undo.append(self._reorder)
        self._place(new, position)
        self._reorder()
        return True

    def _attach(self, new, owner):
        """Put ``new`` right after the section it belongs to, as pg_dump writes it."""
        if owner is None:
            return False
        self._place(new, self.sections.index(owner) + 1)
        return True

    def _note_edit(self, new, replaced, old=None):
        """Count ``new`` among the step's edits; one that replaces a section this
        step put in takes its place there (an insert stays an insert)."""
        self._this_edit.append((new, replaced))
        self._remember(self._edits, new)
        if old is not None and old in self._edits:
            self._remember(self._edits, old)
            replaced = self._edits.pop(old)
        self._edits[new] = replaced

    def _place(self, new, position):
        """Insert ``new`` into the dump's sections at ``position``, undoably."""
        self._remember(self._by_name, (new.type, new.schema, new.name))
        self.sections.insert(position, new)
        self._lines.insert(position + 1, new.lines)
        self._note_edit(new, False)
        self._by_name[new.type, new.schema, new.name] = new

        def undo():
            del self.sections[position]
            del self._lines[position + 1]
        self._undo.append(undo)


def _unquoted(name):
    """An ACL section's object name as its own section names it: a quoted leading
    identifier unquoted ("Odd T" -> Odd T; "AAA"() -> AAA())."""
    if not name.startswith('"'):
        return name
    i, out = 1, []
    while i < len(name):
        if name[i] == '"':
            if name[i + 1:i + 2] == '"':
                out.append('"')
                i += 2
                continue
            return ''.join(out) + name[i + 1:]
        out.append(name[i])
        i += 1
    return name


SETTING = re.compile(r"^SET [a-z_]+ = .*;$")


def _trailing_sets(lines):
    """The ``SET default_tablespace = ...`` lines pg_dump writes at the end of the
    object before the first one they apply to, with their blank lines."""
    i = len(lines)
    while i and (lines[i - 1] == '' or SETTING.match(lines[i - 1])):
        i -= 1
    tail = lines[i:]
    while tail and not SETTING.match(tail[0]):
        tail = tail[1:]
    return tail


def _section(kind, schema, name, owner, body, sort_name=None):
    return Section(kind, schema, name,
                   ['--', '-- Name: %s; Type: %s; Schema: %s; Owner: %s' % (name, kind, schema, owner),
                    '--', ''] + body, sort_name or name)


@dataclasses.dataclass
class Table:
    """A table rendered from the catalogs: its TABLE, CONSTRAINT and INDEX sections."""

    oid: int
    schema: str
    name: str
    indexes: frozenset  # (oid, name) of its indexes
    sections: list
    sequence_names: frozenset = frozenset()
    members: frozenset = frozenset()  # oids of its toast table and index, its sequences
    acl_keys: frozenset = frozenset()  # the ACL sections it and its sequences may have


# ``age(xmin) <= 0``: written by this transaction or one of its
# subtransactions (their ids are never older than the top one's).
OURS = 'age({0}.xmin) <= 0'

CATALOGS = '''
SELECT oid, relname FROM pg_class
 WHERE relnamespace = 'pg_catalog'::regnamespace AND relkind = 'r'
'''

COUNTS = '''
SELECT o, pg_stat_get_xact_tuples_inserted(o), pg_stat_get_xact_tuples_updated(o),
       pg_stat_get_xact_tuples_deleted(o)
  FROM unnest(ARRAY[%s]::oid[]) AS o
UNION ALL SELECT NULL, count(*), 0, 0 FROM pg_constraint WHERE conrelid = 0
'''


class CatalogReader:
    """Reads the catalogs for the fast path over one connection, for one run.

    Its statements are prepared once: planning them cost more than running
    them.  The fast path only runs where pg_dump may, never behind a
    transaction pooler, so the session that prepared them runs them.
    """

    def __init__(self, cursor, statements=None):
        cursor.execute(CATALOGS)
        self.names = dict(cursor.fetchall())
        self.statements = statements or Statements()
        self.counts_query = COUNTS % ', '.join(str(int(oid)) for oid in self.names)
        # The counts' plan is made now, inside a savepoint that undoes the setting.
        cursor.execute('SAVEPOINT dbmigrator_plans')
        self.plan_with_indexes(cursor)
        self.counts(cursor)
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
        """Pending writes of this backend: catalog name -> (inserted, updated, deleted).

        The numbers of ``pg_stat_xact_sys_tables``, without that view's walk
        over every user table's toast table.
        """
        return {self.names.get(oid, DOMAIN_CONSTRAINTS): (ins, upd, dele)
                for oid, ins, upd, dele in self.execute(cursor, self.counts_query)
                if oid is None or ins or upd or dele}


def touched(before, after):
    """Catalog name -> (inserted, updated, deleted) by the migration."""
    delta = {}
    for name, counts in after.items():
        old = before.get(name, (0, 0, 0))
        change = tuple(a - b for a, b in zip(counts, old))
        if any(change):
            delta[name] = change
    return delta


def unsupported(delta):
    """Why catalog writes like these are pg_dump's to show, or None."""
    others = sorted(name for name in delta if name not in WRITABLE)
    if others:
        return 'it wrote to %s, which this path does not render' % ', '.join(others)
    deleted = sorted(name for name, (_, _, dele) in delta.items()
                     if dele and name not in DELETABLE)
    if deleted:
        return 'it deleted rows of %s (a DROP, or a table rewrite)' % ', '.join(deleted)
    return None


# The relations this transaction holds locks on, the tables among them (an
# index stands for its table; a view, a materialized view or a composite type
# for itself), and what each of those owns; for each, its kind and how many
# of its catalog rows this transaction wrote, in the catalogs it wrote to
# ($1..$9: pg_attribute, pg_constraint, pg_attrdef, pg_index, pg_type,
# pg_description, pg_trigger, pg_rewrite, pg_policy).  Every lookup goes through a
# catalog index: the cost follows the locks, not the schema.
LOCATE = '''
WITH locked AS (
       SELECT DISTINCT relation AS oid FROM pg_locks
        WHERE pid = pg_backend_pid() AND locktype = 'relation' AND relation >= 16384
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())),
     kinds AS (
       SELECT l.oid, c.relkind, i.indrelid, t.relkind AS table_kind FROM locked l
        CROSS JOIN LATERAL (SELECT relkind FROM pg_class WHERE oid = l.oid) c
        LEFT JOIN LATERAL (SELECT indrelid FROM pg_index WHERE indexrelid = l.oid) i ON true
        LEFT JOIN LATERAL (SELECT relkind FROM pg_class WHERE oid = i.indrelid) t ON true),
     tables AS (
       SELECT oid FROM kinds WHERE relkind IN ('r', 'p', 'm')
       UNION SELECT indrelid FROM kinds WHERE table_kind IN ('r', 'p', 'm')),
     toast AS (
       SELECT c.reltoastrelid AS oid, t.oid AS owner FROM tables t
        CROSS JOIN LATERAL (SELECT reltoastrelid FROM pg_class WHERE oid = t.oid) c
        WHERE c.reltoastrelid <> 0),
     rels (oid, owner) AS (
       SELECT oid, oid FROM tables
       UNION ALL SELECT oid, owner FROM toast
       UNION ALL SELECT i.indexrelid, t.oid FROM tables t
        CROSS JOIN LATERAL (SELECT indexrelid FROM pg_index WHERE indrelid = t.oid) i
       UNION ALL SELECT i.indexrelid, t.owner FROM toast t
        CROSS JOIN LATERAL (SELECT indexrelid FROM pg_index WHERE indrelid = t.oid) i
       UNION ALL SELECT k.oid, (SELECT d.refobjid FROM pg_depend d
                                 WHERE d.classid = 'pg_class'::regclass AND d.objid = k.oid
                                   AND d.refclassid = 'pg_class'::regclass
                                   AND d.deptype IN ('a', 'i') LIMIT 1)
         FROM kinds k WHERE k.relkind = 'S'
       UNION ALL SELECT oid, oid FROM kinds WHERE relkind IN ('v', 'c')
       UNION ALL SELECT oid, NULL FROM kinds
        WHERE relkind NOT IN ('r', 'p', 'm', 'v', 'c', 'i', 'I', 't', 'S')
           OR table_kind NOT IN ('r', 'p', 'm', 't'))
SELECT r.owner, (SELECT relkind FROM pg_class WHERE oid = r.owner), (age(c.xmin) <= 0)::int,
       CASE WHEN %s THEN (SELECT count(*) FROM pg_attribute a
                           WHERE a.attrelid = r.oid AND age(a.xmin) <= 0) ELSE 0 END,
       CASE WHEN %s THEN (SELECT count(*) FROM pg_constraint k
                           WHERE k.conrelid = r.oid AND age(k.xmin) <= 0) ELSE 0 END,
       CASE WHEN %s THEN (SELECT count(*) FROM pg_attrdef d
                           WHERE d.adrelid = r.oid AND age(d.xmin) <= 0) ELSE 0 END,
       CASE WHEN %s THEN (SELECT count(*) FROM pg_index i
                           WHERE i.indexrelid = r.oid AND age(i.xmin) <= 0) ELSE 0 END,
       CASE WHEN %s THEN (SELECT count(*) FROM pg_type t
                           WHERE c.reltype <> 0 AND age(t.xmin) <= 0 AND t.oid IN (
                                 c.reltype, (SELECT typarray FROM pg_type WHERE oid = c.reltype)))
            ELSE 0 END,
       CASE WHEN %s THEN (SELECT count(*) FROM pg_description d
                           WHERE d.objoid = r.oid AND d.classoid = 'pg_class'::regclass
                             AND age(d.xmin) <= 0) ELSE 0 END,
       CASE WHEN %s THEN (SELECT count(*) FROM pg_trigger g
                           WHERE g.tgrelid = r.oid AND age(g.xmin) <= 0) ELSE 0 END,
       CASE WHEN %s THEN (SELECT count(*) FROM pg_rewrite w
                           WHERE w.ev_class = r.oid AND age(w.xmin) <= 0) ELSE 0 END,
       CASE WHEN %s THEN (SELECT count(*) FROM pg_policy p
                           WHERE p.polrelid = r.oid AND age(p.xmin) <= 0) ELSE 0 END
  FROM rels r CROSS JOIN LATERAL (SELECT reltype, xmin FROM pg_class WHERE oid = r.oid) c
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

# One table as pg_dump would write it: its own flags, then its columns,
# constraints and indexes as JSON arrays, in one round trip.
TABLE = '''
SELECT n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       pg_get_userbyid(c.relowner), quote_ident(pg_get_userbyid(c.relowner)),
       c.relkind = 'r' AND NOT c.relispartition
       AND NOT c.relhassubclass AND NOT c.relhasrules AND c.relpersistence = 'p' AND c.reloptions IS NULL
       AND c.reltablespace = 0 AND c.reloftype = 0
       AND c.relreplident = 'd'
       AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_class tc
                        WHERE tc.oid = c.reltoastrelid AND tc.reloptions IS NOT NULL),
       (SELECT json_agg(json_build_array(
                quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,
                pg_get_expr(d.adbin, d.adrelid),
                a.attgenerated = '' AND a.attacl IS NULL
                AND a.attoptions IS NULL AND a.attfdwoptions IS NULL AND a.attstattarget IS NULL
                AND a.attcompression = '' AND a.attstorage = t.typstorage AND a.attislocal
                AND a.attcollation = t.typcollation, a.attname,
                (SELECT description FROM pg_description WHERE objoid = c.oid
                    AND classoid = 'pg_class'::regclass AND objsubid = a.attnum))
                ORDER BY a.attnum)
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       (SELECT json_agg(json_build_array(
                k.conname, quote_ident(k.conname), k.contype, pg_get_constraintdef(k.oid),
                k.convalidated AND k.conislocal AND (k.contype NOT IN ('c', 'n') OR NOT k.connoinherit),
                (SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
                  WHERE a.attrelid = k.conrelid AND a.attnum = ANY(k.conkey))) ORDER BY k.conname)
          FROM pg_constraint k WHERE k.conrelid = c.oid),
       (SELECT json_agg(json_build_array(
                ic.relname, pg_get_indexdef(i.indexrelid),
                NOT i.indisclustered AND i.indisvalid AND ic.reltablespace = 0
                AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = ic.oid),
                EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = i.indrelid
                        AND conindid = i.indexrelid AND contype IN ('p', 'u', 'x')),
                i.indexrelid::bigint))
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid),
       (SELECT json_agg(json_build_array(
                sn.nspname, s.relname, quote_ident(sn.nspname) || '.' || quote_ident(s.relname),
                pg_get_userbyid(s.relowner), quote_ident(pg_get_userbyid(s.relowner)),
                a.attname, quote_ident(a.attname), d.deptype, a.attidentity,
                format_type(q.seqtypid, NULL), q.seqstart::text, q.seqincrement::text,
                q.seqmin::text, q.seqmax::text, q.seqcache::text, q.seqcycle,
                s.relpersistence = 'p'
                AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = s.oid)
                AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = s.oid),
                pg_get_expr(ad.adbin, ad.adrelid) IN (
                    format('nextval(%%L::regclass)', s.oid::regclass::text),
                    format('nextval(%%L::regclass)',
                           quote_ident(sn.nspname) || '.' || quote_ident(s.relname))),
                quote_ident(s.relname), ''' + acl_items('s.relacl', 's.relowner') + ''',
                ''' + acl_items("acldefault('s', s.relowner)", 's.relowner') + ''')
                ORDER BY a.attnum)
          FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
          JOIN pg_namespace sn ON sn.oid = s.relnamespace
          JOIN pg_sequence q ON q.seqrelid = s.oid
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
          LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid = c.oid AND d.deptype IN ('a', 'i')),
       (SELECT description FROM pg_description WHERE objoid = c.oid
           AND classoid = 'pg_class'::regclass AND objsubid = 0),
       quote_ident(c.relname), ''' + MEMBERS + ''',
       (SELECT json_agg(json_build_array(
                g.tgname, pg_get_triggerdef(g.oid, false),
                g.tgenabled = 'O' AND g.tgparentid = 0
                AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = g.oid
                                   AND classoid = 'pg_trigger'::regclass))
                ORDER BY g.tgname)
          FROM pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal),
       ''' + acl_items('c.relacl', 'c.relowner') + ''',
       ''' + acl_items("acldefault('r', c.relowner)", 'c.relowner') + ''',
       c.relrowsecurity, c.relforcerowsecurity,
       (SELECT json_agg(json_build_array(
                p.polname, quote_ident(p.polname), p.polpermissive, p.polcmd,
                CASE WHEN p.polroles <> '{0}' THEN array_to_string(ARRAY(
                     SELECT quote_ident(rolname) FROM pg_roles WHERE oid = ANY(p.polroles)
                      ORDER BY oid), ', ') END,
                pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid),
                NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = p.oid
                               AND classoid = 'pg_policy'::regclass))
                ORDER BY p.polname)
          FROM pg_policy p WHERE p.polrelid = c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = %s::oid
'''

# The privileges of each kind of object, in the order pg_dump names them.
PRIVILEGES = {
    'TABLE': ('SELECT', 'INSERT', 'REFERENCES', 'DELETE', 'TRIGGER', 'TRUNCATE', 'MAINTAIN',
              'UPDATE'),
    'SEQUENCE': ('SELECT', 'USAGE', 'UPDATE'),
    'FUNCTION': ('EXECUTE',), 'PROCEDURE': ('EXECUTE',),
}


def _acl(keyword, target, owner, acl, base):
    """The GRANT and REVOKE lines pg_dump writes for ``acl`` against the default
    ``base`` (both from :func:`acl_items`); None when it would write more: grants
    made by another role, the owner's own privileges changed, or some of a
    role's privileges grantable and others not."""
    def by_grantee(items):
        grouped = {}
        for grantee, privilege, grantable, by_owner in items or ():
            if not by_owner or privilege not in PRIVILEGES[keyword]:
                return None
            grouped.setdefault(grantee, set()).add((privilege, grantable))
        return grouped
    now, default = by_grantee(acl), by_grantee(base)
    if acl is None or now is None or default is None:
        return [] if acl is None and default is not None else None
    full = {privilege for privilege, _ in default.get(owner, ())}
    lines = []
    for grantee, privileges in default.items():
        if now.get(grantee) != privileges:
            if grantee == owner:
                return None
            lines.append('REVOKE ALL ON %s %s FROM %s;' % (keyword, target, grantee))
    for grantee, privileges in now.items():
        if default.get(grantee) == privileges:
            continue
        grantable = {option for _, option in privileges}
        if len(grantable) > 1:
            return None
        names = {privilege for privilege, _ in privileges}
        text = 'ALL' if names == full else ','.join(
            name for name in PRIVILEGES[keyword] if name in names)
        lines.append('GRANT %s ON %s %s TO %s%s;' % (
            text, keyword, target, grantee, ' WITH GRANT OPTION' if grantable == {True} else ''))
    return lines


# pg_dump leaves out the limits a sequence of this type has by default.
LIMITS = {'smallint': (-2 ** 15, 2 ** 15 - 1), 'integer': (-2 ** 31, 2 ** 31 - 1),
          'bigint': (-2 ** 63, 2 ** 63 - 1)}


def render(reader, cursor, snapshot, delta):
    """Edit the snapshot to the migration whose catalog writes are ``delta``: the undo
    log of :meth:`Snapshot.edit`, or None for pg_dump.

    Runs on the migration's own cursor, inside its transaction, after its
    code and after :meth:`CatalogReader.plan_with_indexes`: it sees exactly
    what the migration changed.  It only reads; the caller rolls back to a
    savepoint taken before, which also undoes the settings.
    """
    snapshot.why = unsupported(delta) or (
        None if snapshot.editable else 'the first dump has a section this path cannot place')
    if snapshot.why:
        return None
    routines = []
    if 'pg_proc' in delta:
        routines = _routines(reader, cursor, delta['pg_proc'])
        if routines is None:
            snapshot.why = 'it made a function or procedure this path does not render'
            return None
    objects, found = [], {}
    found['pg_description'] = sum(r[4] for r in routines)
    if any(delta.get('pg_namespace', (0, 0, 0))[:2]):
        for (oid,) in reader.execute(cursor, OURS_SCHEMAS):
            schema = _schema(reader.execute(cursor, SCHEMA, oid)[0])
            if schema is None:
                snapshot.why = 'it changed a schema this path does not render'
                return None
            objects.append((('pg_namespace', oid), schema, ()))
    if 'pg_enum' in delta:
        for oid in [oid for (oid,) in reader.execute(cursor, OURS_ENUMS)]:
            enum, types_written = _enum(reader.execute(cursor, ENUM, oid)[0])
            if enum is None:
                snapshot.why = 'it changed an enum type this path does not render'
                return None
            objects.append((('pg_type', oid), enum, ()))
            found['pg_type'] = found.get('pg_type', 0) + types_written
    changed = _locate(reader, cursor, delta, dict(found))
    domains = 0
    if changed is None and 'pg_type' in delta:
        # Types no relation stands for: new domains, and enums written without
        # labels (a new owner), found by a pass over pg_type.
        done = {ident for ident, *_ in objects}
        for oid, kind in reader.execute(cursor, OURS_TYPES):
            if ('pg_type', oid) in done:
                continue
            if kind == 'e':
                section, types_written = _enum(reader.execute(cursor, ENUM, oid)[0])
                constraints = 0
            else:
                section, types_written, constraints = _domain(
                    reader.execute(cursor, DOMAIN, oid)[0])
            if section is None:
                snapshot.why = 'it changed a type this path does not render'
                return None
            objects.append((('pg_type', oid), section, ()))
            found['pg_type'] = found.get('pg_type', 0) + types_written
            found['pg_constraint'] = found.get('pg_constraint', 0) + constraints
            domains += constraints
        if domains or len(objects) > len(done):
            changed = _locate(reader, cursor, delta, dict(found))
    if changed is None and 'pg_description' in delta:
        # Comments on functions and procedures the migration did not otherwise touch.
        rendered_oids = {r[0] for r in routines}
        more = [oid for (oid,) in reader.execute(cursor, OURS_ROUTINE_COMMENTS)
                if oid not in rendered_oids]
        if more:
            extra = _render_routines(reader, cursor, more)
            if extra is None:
                snapshot.why = 'it commented on a function this path does not render'
                return None
            routines = routines + extra
            found['pg_description'] += sum(r[4] for r in extra)
            changed = _locate(reader, cursor, delta, dict(found))
    if delta.get(DOMAIN_CONSTRAINTS, (0, 0, 0))[0] != domains:
        snapshot.why = 'it changed the constraints of a domain'
        return None
    if changed is None and 'pg_description' in delta:
        snapshot.why = 'it commented on something other than a table or its columns'
        return None
    if changed is None:
        changed = _scan(cursor, delta)
        if changed is None:
            snapshot.why = 'it changed more than tables and their own sequences'
            return None
    rendered = []
    for oid, kind in sorted(changed.items()):
        if kind in ('r', 'p'):
            table = _render_table(reader, cursor, oid)
            if table is not None:
                rendered.append(table)
                continue
        else:
            made = _render_relation(reader.execute(cursor, RELATION, oid)[0])
            if made is not None:
                objects.append((('pg_class', oid),) + made)
                continue
        snapshot.why = '%s has features not rendered here' % _name(cursor, oid)
        return None
    dropped_routines = []
    if delta.get('pg_proc', (0, 0, 0))[2]:
        known = sorted(snapshot.relations.routines)
        dropped_routines = [oid for (oid,) in reader.execute(cursor, GONE_ROUTINES, known)
                            ] if known else []
        if len(dropped_routines) != delta['pg_proc'][2]:
            snapshot.why = 'it dropped a function this path does not know'
            return None
    dropped = _dropped(reader, cursor, snapshot.relations, delta, changed)
    if dropped is None:
        snapshot.why = 'it dropped a relation or a type this path does not know, or rewrote a table'
        return None
    log = snapshot.edit(rendered, routines, objects, dropped_routines, dropped)
    # Comments written were all found on what was rendered; the deleted ones
    # must be the COMMENT sections that went, net of those that came.
    inserted, _, deleted = delta.get('pg_description', (0, 0, 0))
    if log is not None and deleted - inserted != snapshot.removed('COMMENT'):
        snapshot.undo(log)
        snapshot.why = 'it took away a comment on something other than a table or its columns'
        return None
    return log


# The relations this transaction dropped: it holds a lock on each.
GONE_RELATIONS = '''
SELECT DISTINCT relation FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'relation' AND relation >= 16384
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = relation)
'''

# Which of the dump's functions and procedures are gone.
GONE_ROUTINES = '''
SELECT o FROM unnest(%s::oid[]) AS o WHERE NOT EXISTS (SELECT 1 FROM pg_proc WHERE oid = o)
'''

# Which of the dump's types are gone.
GONE_TYPES = '''
SELECT o FROM unnest(%s::oid[]) AS o WHERE NOT EXISTS (SELECT 1 FROM pg_type WHERE oid = o)
'''


def _dropped(reader, cursor, relations, delta, changed):
    """The tables (``('table', oid)``) and views, sequences and types (``('object',
    ident)``) the migration dropped; None when a deleted relation or type is one
    the snapshot knows but does not render (a domain, a materialized view's
    index).  A relation that is not known at all was made and dropped by the
    migration itself (the transient table of a rewrite): it leaves no trace."""
    dropped, covered = [], set()
    for table in changed:
        covered.update(oid for oid, _ in relations.indexes.get(table, ()))
        covered.update(relations.members.get(table, ()))  # a rewrite's old toast table
    if delta.get('pg_class', (0, 0, 0))[2]:
        gone = [oid for (oid,) in reader.execute(cursor, GONE_RELATIONS)]
        if len(gone) != delta['pg_class'][2]:
            return None
        for oid in gone:
            if oid in relations.tables:
                dropped.append(('table', oid))
                covered.add(oid)
                covered.update(relations.members.get(oid, ()))
                covered.update(index for index, _ in relations.indexes.get(oid, ()))
            elif ('pg_class', oid) in relations.objects:
                dropped.append(('object', ('pg_class', oid)))
                covered.add(oid)
        if (set(gone) - covered) & relations.known:
            return None
    if delta.get('pg_namespace', (0, 0, 0))[2]:
        known = sorted(oid for catalog, oid in relations.objects if catalog == 'pg_namespace')
        dropped += [('object', ('pg_namespace', oid))
                    for (oid,) in reader.execute(cursor, GONE_SCHEMAS, known)]
    if delta.get('pg_type', (0, 0, 0))[2]:
        known = sorted(oid for catalog, oid in relations.objects if catalog == 'pg_type')
        for (oid,) in reader.execute(cursor, GONE_TYPES, known) if known else ():
            if relations.objects[('pg_type', oid)][0] != 'TYPE':
                return None
            dropped.append(('object', ('pg_type', oid)))
    return dropped


# The schemas this transaction wrote.
OURS_SCHEMAS = 'SELECT oid FROM pg_namespace WHERE age(xmin) <= 0 ORDER BY oid'

# A schema as pg_dump writes it, and whether it writes nothing more: not
# public (pg_dump leaves it out), no grants, comment, label, not an extension's.
SCHEMA = '''
SELECT n.nspname, quote_ident(n.nspname), pg_get_userbyid(n.nspowner),
       quote_ident(pg_get_userbyid(n.nspowner)),
       n.nspname <> 'public' AND n.nspacl IS NULL
       AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = n.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = n.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_namespace'::regclass
                          AND objid = n.oid AND deptype = 'e')
  FROM pg_namespace n WHERE n.oid = %s::oid
'''


def _schema(row):
    name, quoted, owner, quoted_owner, plain = row
    if not plain:
        return None
    return _section('SCHEMA', '-', name, owner, [
        'CREATE SCHEMA %s;' % quoted, '', '', 'ALTER SCHEMA %s OWNER TO %s;' % (quoted, quoted_owner),
        ''])


# Which of the dump's schemas are gone.
GONE_SCHEMAS = '''
SELECT o FROM unnest(%s::oid[]) AS o WHERE NOT EXISTS (SELECT 1 FROM pg_namespace WHERE oid = o)
'''


# Domains and enums whose pg_type rows this transaction wrote (CREATE DOMAIN,
# ALTER TYPE ... OWNER TO).
OURS_TYPES = '''
SELECT oid, typtype FROM pg_type WHERE typtype IN ('d', 'e') AND age(xmin) <= 0 ORDER BY oid
'''

# A domain as pg_dump writes it, whether it writes nothing more (no grant,
# comment, label, not an extension's, a built-in base type, constraints that
# call no function of the schema), and how many of its pg_type rows (itself,
# its array type) and constraints this transaction wrote.
DOMAIN = '''
SELECT n.nspname, t.typname, quote_ident(n.nspname) || '.' || quote_ident(t.typname),
       pg_get_userbyid(t.typowner), quote_ident(pg_get_userbyid(t.typowner)),
       format_type(t.typbasetype, t.typtypmod),
       CASE WHEN t.typcollation <> b.typcollation THEN
            quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END,
       t.typnotnull, t.typdefault,
       (SELECT json_agg(json_build_array(k.conname, quote_ident(k.conname), k.contype,
                                         pg_get_constraintdef(k.oid), k.convalidated)
                        ORDER BY k.conname)
          FROM pg_constraint k WHERE k.contypid = t.oid),
       (SELECT count(*) FROM pg_type a WHERE a.oid IN (t.oid, t.typarray) AND age(a.xmin) <= 0),
       (SELECT count(*) FROM pg_constraint k WHERE k.contypid = t.oid AND age(k.xmin) <= 0),
       t.typacl IS NULL AND b.typnamespace = 'pg_catalog'::regnamespace
       AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = t.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = t.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_type'::regclass
                          AND objid = t.oid AND deptype = 'e')
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k JOIN pg_depend d
                         ON d.classid = 'pg_constraint'::regclass AND d.objid = k.oid
                        WHERE k.contypid = t.oid AND d.refclassid = 'pg_proc'::regclass
                          AND d.refobjid >= 16384)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  JOIN pg_type b ON b.oid = t.typbasetype
  LEFT JOIN pg_collation co ON co.oid = t.typcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
 WHERE t.oid = %s::oid
'''


def _domain(row):
    """(the DOMAIN section, pg_type rows and constraints it explains); None first if not
    plain."""
    (schema, name, qualified, owner, quoted_owner, base, collation, not_null, default,
     constraints, types_written, constraints_written, plain) = row
    if not plain:
        return None, 0, 0
    head = 'CREATE DOMAIN %s AS %s' % (qualified, base)
    head += ' COLLATE %s' % collation if collation else ''
    checks = []
    for conname, quoted, contype, definition, validated in constraints or ():
        if contype == 'n' and conname == '%s_not_null' % name and not_null:
            continue
        if contype != 'c' or not validated:
            return None, 0, 0
        checks.append('\tCONSTRAINT %s %s' % (quoted, definition))
    head += ' NOT NULL' if not_null else ''
    head += ' DEFAULT %s' % default if default is not None else ''
    lines = [head] + checks
    lines[-1] += ';'
    return _section('DOMAIN', schema, name, owner, lines + [
        '', '', 'ALTER DOMAIN %s OWNER TO %s;' % (qualified, quoted_owner), '']), \
        types_written, constraints_written


# The enum types whose labels this transaction wrote.
OURS_ENUMS = 'SELECT DISTINCT enumtypid FROM pg_enum WHERE age(xmin) <= 0 ORDER BY 1'

# An enum type as pg_dump writes it, whether it writes nothing more (no
# comment, no ACL, not an extension's), and how many of its pg_type rows
# (itself, its array type) this transaction wrote.
ENUM = '''
SELECT n.nspname, t.typname, quote_ident(n.nspname) || '.' || quote_ident(t.typname),
       pg_get_userbyid(t.typowner), quote_ident(pg_get_userbyid(t.typowner)),
       ARRAY(SELECT quote_literal(enumlabel) FROM pg_enum WHERE enumtypid = t.oid
              ORDER BY enumsortorder),
       t.typacl IS NULL
       AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = t.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = t.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_type'::regclass
                          AND objid = t.oid AND deptype = 'e'),
       (SELECT count(*) FROM pg_type a WHERE a.oid IN (t.oid, t.typarray) AND age(a.xmin) <= 0)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.oid = %s::oid AND t.typtype = 'e'
'''


def _enum(row):
    """(the TYPE section of an enum type, pg_type rows it explains); (None, 0) if not plain."""
    schema, name, qualified, owner, quoted_owner, labels, plain, types_written = row
    if not plain:
        return None, 0
    return _section('TYPE', schema, name, owner, ['CREATE TYPE %s AS ENUM (' % qualified] + [
        '    %s%s' % (label, ',' if i < len(labels) - 1 else '')
        for i, label in enumerate(labels)] + [
        ');', '', '', 'ALTER TYPE %s OWNER TO %s;' % (qualified, quoted_owner), '']), \
        types_written


# A view, a materialized view or a composite type as pg_dump writes it, with
# the dumped objects it depends on, and whether pg_dump writes nothing more:
# no options, comments, ACL, rules of its own, column defaults or indexes.
RELATION = '''
SELECT c.relkind, n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       pg_get_userbyid(c.relowner), quote_ident(pg_get_userbyid(c.relowner)),
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
       (SELECT json_agg(json_build_array(
                quote_ident(a.attname), format_type(a.atttypid, a.atttypmod),
                a.attcollation = t.typcollation) ORDER BY a.attnum)
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       (SELECT json_agg(DISTINCT json_build_array(
                CASE d.refclassid WHEN 'pg_proc'::regclass THEN
                     CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END
                     ELSE CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                          WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                          ELSE 'TABLE' END END,
                coalesce(pn.nspname, rn.nspname),
                coalesce(''' + ROUTINE_TAG + ''', r.relname),
                coalesce(r.relkind = 'r' AND NOT r.relispartition
                         AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = r.oid), false)
                )::text)
          FROM pg_rewrite w JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass
           AND d.objid = w.oid
          LEFT JOIN pg_class r ON d.refclassid = 'pg_class'::regclass AND r.oid = d.refobjid
          LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
          LEFT JOIN pg_proc p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid
          LEFT JOIN pg_namespace pn ON pn.oid = p.pronamespace
         WHERE w.ev_class = c.oid AND d.refobjid <> c.oid
           AND coalesce(pn.nspname, rn.nspname) NOT IN ('pg_catalog', 'information_schema')),
       c.reloptions IS NULL AND NOT c.relhasindex
       AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = c.reltype)
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_attrdef WHERE adrelid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_class'::regclass
                          AND objid = c.oid AND deptype = 'e')
       AND (SELECT count(*) FROM pg_rewrite WHERE ev_class = c.oid) = (c.relkind IN ('v', 'm'))::int
       AND NOT EXISTS (SELECT 1 FROM pg_type t WHERE t.oid = c.reltype AND t.typacl IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid IN (
                          SELECT w.oid FROM pg_rewrite w WHERE w.ev_class = c.oid)
                         AND d.classid = 'pg_rewrite'::regclass
                         AND d.refclassid NOT IN ('pg_class'::regclass, 'pg_proc'::regclass,
                                                  'pg_type'::regclass, 'pg_namespace'::regclass,
                                                  'pg_collation'::regclass))
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                        WHERE a.attrelid = c.oid AND a.attnum > 0
                          AND t.typnamespace <> 'pg_catalog'::regnamespace),
       quote_ident(c.relname), ''' + acl_items('c.relacl', 'c.relowner') + ''',
       ''' + acl_items("acldefault('r', c.relowner)", 'c.relowner') + '''
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = %s::oid
'''

VIEW_KINDS = {'v': 'VIEW', 'm': 'MATERIALIZED VIEW'}


def _render_relation(row):
    """(section, the sections it needs) of a view, materialized view or composite type;
    None when pg_dump would write more than this does."""
    (kind, schema, name, qualified, owner, quoted_owner, definition, columns, needs,
     plain, quoted_name, acl, base_acl) = row
    grants = _acl('TABLE', qualified, quoted_owner, acl, base_acl)
    if not plain or grants is None or kind not in ('v', 'm', 'c') or (kind == 'c' and grants):
        return None
    acl = (('ACL', schema, 'TABLE %s' % quoted_name),
           _section('ACL', schema, 'TABLE %s' % quoted_name, owner, grants + ['', ''])
           if grants else None)
    needs = [tuple(json_need) for json_need in map(json.loads, needs or ())]
    if kind == 'c':
        if not all(same_collation for _, _, same_collation in columns or ()):
            return None
        body = ['CREATE TYPE %s AS (' % qualified] + [
            '\t%s %s%s' % (column, type_name, ',' if i < len(columns) - 1 else '')
            for i, (column, type_name, _) in enumerate(columns or ())] + [');']
        return _section('TYPE', schema, name, owner, body + [
            '', '', 'ALTER TYPE %s OWNER TO %s;' % (qualified, quoted_owner), '']), needs
    keyword = VIEW_KINDS[kind]
    definition = definition.rstrip().rstrip(';')
    body = ('CREATE %s %s AS\n%s%s;' % (
        keyword, qualified, definition, '\n  WITH NO DATA' if kind == 'm' else '')).split('\n')
    return _section(keyword, schema, name, owner, body + [
        '', '', 'ALTER %s %s OWNER TO %s;' % (keyword, qualified, quoted_owner), '']), needs, acl


# A function or procedure as pg_dump writes it, and whether it writes nothing
# more than this renders: no options (SET, SUPPORT, TRANSFORM), no ACL, no
# comment, no SQL-standard body, not C or internal, not an extension's, and
# only built-in types, so that no dependency moves it in pg_dump's order.
ROUTINE = '''
SELECT n.nspname, ''' + ROUTINE_TAG + ''',
       p.prokind, quote_ident(n.nspname) || '.' || quote_ident(p.proname),
       pg_get_function_arguments(p.oid), pg_get_function_identity_arguments(p.oid),
       pg_get_function_result(p.oid), quote_ident(l.lanname), p.provolatile, p.proisstrict,
       p.prosecdef, p.proleakproof, p.procost::text, p.prorows::text, p.proretset,
       p.proparallel, p.prosrc, pg_get_userbyid(p.proowner),
       quote_ident(pg_get_userbyid(p.proowner)),
       p.prokind IN ('f', 'p') AND p.proconfig IS NULL AND p.prosupport = 0
       AND p.protrftypes IS NULL AND p.prosqlbody IS NULL
       AND l.lanname NOT IN ('c', 'internal')
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = p.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_proc'::regclass
                          AND objid = p.oid AND deptype = 'e')
       AND NOT EXISTS (SELECT 1 FROM pg_type t
                        WHERE t.oid = ANY (array_append(
                              coalesce(p.proallargtypes, p.proargtypes::oid[]), p.prorettype))
                          AND t.typnamespace <> 'pg_catalog'::regnamespace),
       quote_ident(p.proname), ''' + acl_items('p.proacl', 'p.proowner') + ''',
       ''' + acl_items("acldefault('f', p.proowner)", 'p.proowner') + ''',
       (SELECT description FROM pg_description WHERE objoid = p.oid
           AND classoid = 'pg_proc'::regclass AND objsubid = 0),
       (SELECT count(*) FROM pg_description WHERE objoid = p.oid
           AND classoid = 'pg_proc'::regclass AND age(xmin) <= 0)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = %s::oid
'''

OURS_ROUTINES = 'SELECT oid FROM pg_proc WHERE age(xmin) <= 0 ORDER BY oid'
OURS_ROUTINE_COMMENTS = '''
SELECT DISTINCT objoid FROM pg_description
 WHERE classoid = 'pg_proc'::regclass AND age(xmin) <= 0 ORDER BY 1
'''


def _routines(reader, cursor, counts):
    """The rendered routines the migration wrote (see :func:`_render_routines`); None if
    one is not plain."""
    inserted, updated, _ = counts
    if not inserted + updated:
        return []
    oids = [oid for (oid,) in reader.execute(cursor, OURS_ROUTINES)]
    if not oids or len(oids) > inserted + updated:
        return None
    return _render_routines(reader, cursor, oids)


def _render_routines(reader, cursor, oids):
    """(oid, section, ACL, comment, comments written) of each routine; None if one is
    not plain."""
    found = []
    for oid in oids:
        rendered = _routine(reader.execute(cursor, ROUTINE, oid)[0])
        if rendered is None:
            return None
        found.append((oid,) + rendered)
    return found


def _dollar_quoted(text):
    """pg_dump's dollar quoting: the shortest $_..$ tag that is not in the text."""
    tag = '$'
    while tag in text:
        tag += '_'
    return tag + '$' + text + tag + '$'


def _routine(row):
    """(section, (ACL key, ACL section or None), its COMMENT section or None, comments
    written) of a function or procedure; None if pg_dump would write more."""
    (schema, tag, kind, qualified, arguments, identity, result, language, volatility, strict,
     definer, leakproof, cost, rows, returns_set, parallel, source, owner, quoted_owner,
     plain, quoted_name, acl, base_acl, comment, comments_written) = row
    keyword = 'PROCEDURE' if kind == 'p' else 'FUNCTION'
    grants = _acl(keyword, '%s(%s)' % (qualified, identity), quoted_owner, acl, base_acl)
    if not plain or grants is None:
        return None
    acl_name = '%s %s(%s)' % (keyword, quoted_name, identity)
    granted = _section('ACL', schema, acl_name, owner, grants + ['', '']) if grants else None
    head = 'CREATE %s %s(%s)' % (keyword, qualified, arguments)
    if kind != 'p':
        head += ' RETURNS %s' % result
    options = '    LANGUAGE %s' % language
    options += {'i': ' IMMUTABLE', 's': ' STABLE'}.get(volatility, '')
    options += ' STRICT' if strict else ''
    options += ' SECURITY DEFINER' if definer else ''
    options += ' LEAKPROOF' if leakproof else ''
    options += ' COST %s' % cost if cost not in ('0', '100') else ''
    options += ' ROWS %s' % rows if returns_set and rows not in ('0', '1000') else ''
    options += {'s': ' PARALLEL SAFE', 'r': ' PARALLEL RESTRICTED'}.get(parallel, '')
    body = '%s\n%s\n    AS %s;' % (head, options, _dollar_quoted(source))
    signature = '%s %s(%s)' % (keyword, quoted_name, identity)
    remark = None if comment is None else _section('COMMENT', schema, signature, owner, (
        'COMMENT ON %s %s(%s) IS %s;' % (keyword, qualified, identity, _literal(comment))
    ).split('\n') + ['', ''])
    return _section(keyword, schema, tag, owner, body.split('\n') + [
        '', '', 'ALTER %s %s(%s) OWNER TO %s;' % (keyword, qualified, identity, quoted_owner),
        '']), (('ACL', schema, acl_name), granted), remark, comments_written


def _name(cursor, oid):
    cursor.execute('SELECT %s::oid::regclass::text', (oid,))
    return cursor.fetchone()[0]


def _locate(reader, cursor, delta, found):
    """The relations changed (oid -> relkind), found through the locks; None when the
    counts are not explained.

    ``found`` holds the rows already explained by other objects (enum
    types).  A relation of another kind (a sequence of its own) that was
    written counts as not explained too: the scan then hands it to pg_dump.
    When the migration deleted rows, every table it locked is rendered
    again: a deleted row has nothing left to count.
    """
    deleted = any(dele for _, _, dele in delta.values())
    changed = {}
    written = [name in delta for name in FOUND[1:]]
    for owner, kind, *counts in reader.execute(cursor, LOCATE, *written):
        if any(counts) or (deleted and kind in ('r', 'p')):
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


def _sequence(qualified, row):
    """The sections of a serial or identity column's sequence as pg_dump writes them,
    and a serial column's DEFAULT line; None when pg_dump would write otherwise."""
    (schema, name, seq_qualified, owner, quoted_owner, _, column, deptype, identity, type_name,
     start, increment, minimum, maximum, cache, cycle, plain, is_nextval, quoted_name, acl,
     base_acl) = row
    grants = _acl('SEQUENCE', seq_qualified, quoted_owner, acl, base_acl)
    if not plain or grants is None or type_name not in LIMITS or (deptype == 'i') != (
            identity in ('a', 'd')):
        return None, None
    granted = [_section('ACL', schema, 'SEQUENCE %s' % quoted_name, owner,
                        grants + ['', ''])] if grants else []
    low, high = LIMITS[type_name]
    ascending = not increment.startswith('-')
    options = ['    START WITH %s' % start, '    INCREMENT BY %s' % increment,
               '    NO MINVALUE' if int(minimum) == (1 if ascending else low)
               else '    MINVALUE %s' % minimum,
               '    NO MAXVALUE' if int(maximum) == (high if ascending else -1)
               else '    MAXVALUE %s' % maximum,
               '    CACHE %s' % cache] + (['    CYCLE'] if cycle else [])
    if deptype == 'i':
        return [_section('SEQUENCE', schema, name, owner, [
            'ALTER TABLE %s ALTER COLUMN %s ADD GENERATED %s AS IDENTITY (' % (
                qualified, column, 'ALWAYS' if identity == 'a' else 'BY DEFAULT'),
            '    SEQUENCE NAME %s' % seq_qualified] + options + [');', '', ''])] + granted, None
    if not is_nextval:
        return None, None
    options[-1] += ';'
    return [
        _section('SEQUENCE', schema, name, owner, ['CREATE SEQUENCE %s' % seq_qualified] + (
            ['    AS %s' % type_name] if type_name != 'bigint' else []) + options + [
            '', '', 'ALTER SEQUENCE %s OWNER TO %s;' % (seq_qualified, quoted_owner), '']),
        _section('SEQUENCE OWNED BY', schema, name, owner, [
            'ALTER SEQUENCE %s OWNED BY %s.%s;' % (seq_qualified, qualified, column), '', ''])
    ] + granted, [
        'ALTER TABLE ONLY %s ALTER COLUMN %s SET DEFAULT nextval(%s::regclass);' % (
            qualified, column, _literal(seq_qualified)), '', '']


POLICY_COMMANDS = {'*': None, 'r': 'SELECT', 'a': 'INSERT', 'w': 'UPDATE', 'd': 'DELETE'}


def _policy(qualified, row):
    """A row-level security policy's CREATE POLICY line, as pg_dump writes it."""
    name, quoted, permissive, command, roles, using, check, plain = row
    if not plain or command not in POLICY_COMMANDS:
        return None
    line = 'CREATE POLICY %s ON %s' % (quoted, qualified)
    line += '' if permissive else ' AS RESTRICTIVE'
    line += ' FOR %s' % POLICY_COMMANDS[command] if POLICY_COMMANDS[command] else ''
    line += ' TO %s' % roles if roles else ''
    line += ' USING (%s)' % using if using is not None else ''
    line += ' WITH CHECK (%s)' % check if check is not None else ''
    return line + ';'


def _literal(text):
    return "'%s'" % text.replace("'", "''")


def _render_table(reader, cursor, oid):
    [(schema, name, qualified, owner, quoted_owner, plain, columns, constraints,
      indexes, sequences, comment, quoted_name, members, triggers, acl, base_acl,
      row_security, force_row_security, policies)] = reader.execute(cursor, TABLE, oid)
    if not plain:
        return None
    owned, serial = [], {}
    for row in sequences or ():
        rendered = _sequence(qualified, row)
        if rendered[0] is None:
            return None
        attname = row[5]
        if rendered[1] is not None:
            if attname in serial:
                return None
            serial[attname] = _section('DEFAULT', schema, '%s %s' % (name, attname), owner,
                                       rendered[1])
        owned.append(rendered[0])
    if len(serial) > 1:
        return None  # pg_dump orders a table's defaults by column number, not by name
    not_null = set()
    checks, keyed = [], []
    for conname, quoted, contype, definition, plain_constraint, attnames in constraints or ():
        if not plain_constraint:
            return None
        if contype == 'n':
            if len(attnames or []) != 1 or conname != '%s_%s_not_null' % (name, attnames[0]):
                return None
            not_null.add(attnames[0])
        elif contype == 'c':
            checks.append('    CONSTRAINT %s %s' % (quoted, definition))
        elif contype in ('p', 'u', 'f'):
            keyed.append(_section('FK CONSTRAINT' if contype == 'f' else 'CONSTRAINT', schema,
                                  '%s %s' % (name, conname), owner, [
                'ALTER TABLE ONLY %s' % qualified,
                '    ADD CONSTRAINT %s %s;' % (quoted, definition), '', ''], sort_name=conname))
        else:
            return None
    body = []
    comments = [] if comment is None else [('TABLE %s' % quoted_name, 'TABLE %s' % qualified,
                                            comment)]
    for quoted, type_name, attnotnull, default, plain_column, attname, remark in columns or ():
        if remark is not None:
            comments.append(('COLUMN %s.%s' % (quoted_name, quoted),
                             'COLUMN %s.%s' % (qualified, quoted), remark))
        if attname in serial:
            default = None
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
    ending = [');', ''] + (['ALTER TABLE ONLY %s FORCE ROW LEVEL SECURITY;' % qualified, '', '']
                           if force_row_security else [''])
    sections = [_section('TABLE', schema, name, owner, create + ending + [
        'ALTER TABLE %s OWNER TO %s;' % (qualified, quoted_owner), ''])] + [
        _section('COMMENT', schema, tag, owner, ('COMMENT ON %s IS %s;' % (
            target, _literal(text))).split('\n') + ['', '']) for tag, target, text in comments
    ] + keyed
    names = set()
    for index_name, definition, plain_index, for_constraint, index_oid in indexes or ():
        names.add((index_oid, index_name))
        if not plain_index:
            return None
        if not for_constraint:
            sections.append(_section('INDEX', schema, index_name, owner,
                                     [definition + ';', '', '']))
    grants = _acl('TABLE', qualified, quoted_owner, acl, base_acl)
    if grants is None:
        return None
    if grants:
        sections.append(_section('ACL', schema, 'TABLE %s' % quoted_name, owner,
                                 grants + ['', '']))
    for row in policies or ():
        policy = _policy(qualified, row)
        if policy is None:
            return None
        sections.append(_section('POLICY', schema, '%s %s' % (name, row[0]), owner,
                                 [policy, '', ''], sort_name=row[0]))
    if row_security:
        sections.append(_section('ROW SECURITY', schema, name, owner, [
            'ALTER TABLE %s ENABLE ROW LEVEL SECURITY;' % qualified, '']))
    for trigger_name, definition, plain_trigger in triggers or ():
        if not plain_trigger:
            return None
        sections.append(_section('TRIGGER', schema, '%s %s' % (name, trigger_name), owner,
                                 [definition + ';', '', ''], sort_name=trigger_name))
    for rendered in owned:
        sections += rendered
    sections += serial.values()
    acl_keys = {('ACL', schema, 'TABLE %s' % quoted_name)} | {
        ('ACL', row[0], 'SEQUENCE %s' % row[18]) for row in sequences or ()}
    return Table(oid, schema, name, frozenset(names), sections,
                 frozenset((s.schema, s.name) for rendered in owned for s in rendered[:1]),
                 frozenset(members), frozenset(acl_keys))

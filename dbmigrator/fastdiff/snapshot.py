"""The run's first dump as objects, indexed by name and pg_dump's sort key, and
edited in place to each migration; and what the dump stands for (relations).
"""
import bisect
import copy
import dataclasses
import re

from ..schemadiff import DUMP_END, Lines


HEADER = re.compile(r'^-- Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$')
END = DUMP_END


# Sections that may name a dropped object and that this module does not take
# out with it: such a drop is left to pg_dump.
TIED = {'SECURITY LABEL', 'RULE', 'STATISTICS',
        'TABLE ATTACH', 'INDEX ATTACH', 'PUBLICATION TABLE'}


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
NAMED_ON_TABLE = ('CONSTRAINT', 'CHECK CONSTRAINT', 'FK CONSTRAINT', 'TRIGGER', 'POLICY', 'RULE')


# pg_dump sets the tablespace and access method right before the first of these.
TAKES_SETS = {'TABLE', 'MATERIALIZED VIEW'}
RANKS = {'TABLE ATTACH': 2.5, 'DEFAULT': 3, 'CONSTRAINT': 4, 'CHECK CONSTRAINT': 4,
         'INDEX': 5, 'INDEX ATTACH': 5.5, 'STATISTICS': 5.7, 'RULE': 6, 'TRIGGER': 7,
         'FK CONSTRAINT': 8, 'POLICY': 9, 'ROW SECURITY': 9, 'ACL': 20, 'DEFAULT ACL': 20}
LAST_RANK = 20
ROUTINES = ('FUNCTION', 'PROCEDURE', 'AGGREGATE')


def _rank(kind):
    if kind in BEFORE_RELATIONS:
        return BEFORE_RELATIONS[kind]
    if kind in RELATIONS:
        return 2
    return RANKS.get(kind)


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
        self.place = 0  # where Snapshot._place_of last found it: a hint
        if self.sort_name is not None:
            self.sorted_by(self.sort_name)

    def sorted_by(self, sort_name, arguments=None):
        """What pg_dump sorts by: a constraint by its own name, not its table's; a
        routine by its name, then the number of its arguments, then the schema
        and name of each one's type (``arguments``: name, count, those pairs)."""
        self.sort_name = sort_name
        self.key = (self.rank, self.schema.encode(), sort_name.encode())
        if self.type in ROUTINES and arguments is not None:
            name, count, types = arguments
            self.key = (self.rank, self.schema.encode(), name.encode(), count,
                        tuple((schema.encode(), type_name.encode()) for schema, type_name in types))


@dataclasses.dataclass
class Relations:
    """The tables of the database at the snapshot: who owns which name and index."""

    tables: dict    # oid -> (schema, name)
    indexes: dict   # table oid -> frozenset of (oid, name) of its indexes
    # (schema, name) of every relation that can own a constraint, trigger or default,
    # as dumped
    names: set
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
    # (schema, tag) of a routine -> what pg_dump sorts it by (see Section.sorted_by)
    arguments: dict = dataclasses.field(default_factory=dict)
    # oid of a domain -> how many constraints it has (checks, and NOT NULL on 17+)
    domain_constraints: dict = dataclasses.field(default_factory=dict)

    def merged(self, schema, part):
        """These relations with those of ``schema`` (and the schema itself) as
        ``part`` (read by :func:`relations` for that schema alone) has them."""
        theirs = {oid for oid, (where, _) in self.tables.items() if where == schema}
        domains = {oid for (catalog, oid), (kind, where, _) in self.objects.items()
                   if kind == 'DOMAIN' and where == schema}

        def kept(mapping, schema_of):
            return {key: value for key, value in mapping.items()
                    if schema_of(key, value) != schema}

        def by_table(mapping, added):
            out = {oid: value for oid, value in mapping.items() if oid not in theirs}
            out.update(added)
            return out

        objects = {key: value for key, value in self.objects.items()
                   if value[1] != schema and value[1:] != ('-', schema)}
        objects.update(part.objects)
        routines = kept(self.routines, lambda oid, value: value[0])
        routines.update(part.routines)
        acl_names = kept(self.acl_names, lambda key, value: key[0])
        acl_names.update(part.acl_names)
        arguments = kept(self.arguments, lambda key, value: key[0])
        arguments.update(part.arguments)
        tables = by_table(self.tables, part.tables)
        constraints = {oid: n for oid, n in self.domain_constraints.items() if oid not in domains}
        constraints.update(part.domain_constraints)
        return Relations(tables, by_table(self.indexes, part.indexes),
                         {name for name in self.names if name[0] != schema} | part.names,
                         by_table(self.sequences, part.sequences), routines, objects,
                         by_table(self.members, part.members), self.known | part.known,
                         acl_names, arguments, constraints)

    def table_owning(self, sequence):
        """The table whose column owned ``sequence`` at the snapshot, or None."""
        return next((table for table, members in self.members.items() if sequence in members),
                    None)

    def constraint_table(self, schema, label):
        """The table of a ``<table> <constraint>`` header name; None if not certain."""
        found = [label[:i] for i, char in enumerate(label)
                 if char == ' ' and (schema, label[:i]) in self.names]
        return found[0] if len(found) == 1 else None


# The relations that go with table c: its toast table and index, its sequences
# (the table read has its sequences' rows, and takes their oids from those).
_TOAST_ROWS = '''SELECT c.reltoastrelid::bigint WHERE c.reltoastrelid <> 0
             UNION ALL SELECT ti.indexrelid::bigint FROM pg_index ti
              WHERE c.reltoastrelid <> 0 AND ti.indrelid = c.reltoastrelid'''
TOAST_MEMBERS = 'ARRAY(' + _TOAST_ROWS + ')'
MEMBERS = 'ARRAY(' + _TOAST_ROWS + '''
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
 WHERE c.relkind IN ('r', 'p', 'f', 'v') AND n.nspname <> 'pg_catalog'
   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_toast'
'''


# The tag pg_dump gives a function, procedure or aggregate: name(argument
# types), and name(*) for an aggregate of no arguments.
ROUTINE_TAG = """p.proname || '(' || coalesce((
         SELECT string_agg(format_type(t, NULL), ', ' ORDER BY i)
           FROM unnest(p.proargtypes) WITH ORDINALITY AS a(t, i)),
         CASE p.prokind WHEN 'a' THEN '*' ELSE '' END) || ')'"""


# What pg_dump sorts functions of one name by: their number of arguments,
# then the schema and name of each argument's type.
ROUTINE_ARGUMENTS = """p.proname, p.pronargs, ARRAY(
       SELECT ARRAY[tn.nspname::text, t.typname::text]
         FROM unnest(p.proargtypes) WITH ORDINALITY AS a(o, i)
         JOIN pg_type t ON t.oid = a.o JOIN pg_namespace tn ON tn.oid = t.typnamespace
        ORDER BY a.i)"""


# Whether object {oid} of catalog {catalog} is a type's own (a range type's
# constructors and cast, made and dropped with it), which pg_dump does not show.
TYPES_OWN = '''EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass
                  AND d.objid = {oid} AND d.refclassid = 'pg_type'::regclass
                  AND d.deptype = 'i')'''


# The functions and procedures a dump shows, by oid, with their tags (not a
# type's own).
ROUTINES_QUERY = '''
SELECT p.oid, n.nspname, ''' + ROUTINE_TAG + ''',
       quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       ''' + ROUTINE_ARGUMENTS + '''
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname <> 'pg_catalog' AND n.nspname <> 'information_schema'
   AND NOT ''' + TYPES_OWN.format(catalog='pg_proc', oid='p.oid') + '''
'''


# Views, materialized views, sequences of their own, composite types,
# extended statistics, and the types of their own (enums and ranges are TYPE;
# what this module does not render is OTHER; a range's multirange type goes
# with it, as array types do), by what identifies them.
OBJECTS_QUERY = '''
SELECT 'pg_class', c.oid, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                          WHEN 'S' THEN 'SEQUENCE' ELSE 'TYPE' END, n.nspname, c.relname, 0
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm', 'c', 'S') AND n.nspname <> 'pg_catalog'
   AND n.nspname <> 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
                      AND d.deptype IN ('a', 'i') AND c.relkind = 'S')
UNION ALL
SELECT 'pg_statistic_ext', s.oid, 'STATISTICS', n.nspname, s.stxname, 0
  FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
UNION ALL
SELECT 'pg_namespace', n.oid, 'SCHEMA', '-', n.nspname, 0 FROM pg_namespace n
 WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'pg_type', t.oid, CASE t.typtype WHEN 'e' THEN 'TYPE' WHEN 'r' THEN 'TYPE'
                                          WHEN 'd' THEN 'DOMAIN' ELSE 'OTHER' END, n.nspname,
       t.typname, (SELECT count(*) FROM pg_constraint k WHERE k.contypid = t.oid)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype NOT IN ('c', 'm') AND t.typrelid = 0
   AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
   AND n.nspname <> 'pg_catalog' AND n.nspname <> 'information_schema'
'''
KNOWN_QUERY = '''
SELECT c.oid, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname <> 'pg_catalog' AND n.nspname <> 'information_schema'
'''


def relations(cursor, schema=None):
    """The tables as the snapshot's dump saw them (read right after it); only those
    of ``schema`` (and the schema itself), for :meth:`Relations.merged`."""
    def read(query, where):
        if schema is None:
            cursor.execute(query)
        else:
            cursor.execute('SELECT * FROM (%s) AS q WHERE %s' % (query.replace('%', '%%'), where),
                           {'schema': schema})
        return cursor.fetchall()

    cursor.execute("SELECT set_config('search_path', '', true)")
    rows = read(ROUTINES_QUERY, 'q.nspname = %(schema)s')
    routines = {oid: (schema, tag) for oid, schema, tag, *_ in rows}
    acl_names = {(schema, acl_name): tag for _, schema, tag, acl_name, *_ in rows}
    arguments = {(schema, tag): (name, count, [tuple(pair) for pair in types])
                 for _, schema, tag, _, name, count, types in rows}
    rows = read(OBJECTS_QUERY,
                "q.nspname = %(schema)s OR q.nspname = '-' AND q.relname = %(schema)s")
    objects = {(catalog, oid): (kind, schema, name) for catalog, oid, kind, schema, name, _ in rows}
    domain_constraints = {oid: count for _, oid, kind, _, _, count in rows if kind == 'DOMAIN'}
    tables, indexes, names, sequences = {}, {}, set(), {}
    members = {}
    for oid, where, name, is_table, table_members, index_names, owned in read(
            RELATIONS_QUERY, 'q.nspname = %(schema)s'):
        names.add((where, name))
        if is_table:
            tables[oid] = (where, name)
            members[oid] = frozenset(table_members)
            indexes[oid] = frozenset(tuple(pair) for pair in index_names or ())
            sequences[oid] = frozenset(tuple(pair) for pair in owned or ())
    known = {oid for oid, _ in read(KNOWN_QUERY, 'q.nspname = %(schema)s')}
    return Relations(tables, indexes, names, sequences, routines, objects, members, known,
                     acl_names, arguments, domain_constraints)


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
        # The tables of the last render left to pg_dump --table, and how many
        # more comments the migration deleted than that render took out.
        self.pending, self.owed = [], 0
        self.editable = relations is not None and self._index()
        # The sections the step's edits put in: section -> whether it replaced one.
        self._edits, self._this_edit, self._undo, self._objects = {}, [], [], None
        self._codes = None  # opcodes() as objects() last worked them out
        self._moved = False
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
        index_tables = {(self.relations.tables[table][0], name): self.relations.tables[table]
                        for table, pairs in self.relations.indexes.items() for _, name in pairs
                        if table in self.relations.tables}
        sequence_tables = {key: self.relations.tables[table]
                           for table, keys in self.relations.sequences.items() for key in keys
                           if table in self.relations.tables}
        owner = None  # (schema, table) of the last section, when it is a table's
        for section in self.sections:
            if section.type == 'SEQUENCE OWNED BY' or (
                    section.type == 'COMMENT' and owner is not None):
                self._by_name[section.type, section.schema, section.name] = section
                if section.type == 'COMMENT':
                    self._comments.setdefault(owner, []).append(section)
            if section.type in ATTACHED:
                continue
            owner = None
            if section.rank is None:
                return False
            self._by_name[section.type, section.schema, section.name] = section
            sort_name = section.name
            if section.type in ('TABLE', 'TABLE ATTACH'):
                owner = (section.schema, section.name)
            elif section.type in ('INDEX', 'INDEX ATTACH'):
                owner = index_tables.get((section.schema, section.name))
            elif section.type == 'SEQUENCE':
                owner = sequence_tables.get((section.schema, section.name))
            elif section.type in NAMED_ON_TABLE + ('DEFAULT',):
                table = self.relations.constraint_table(section.schema, section.name)
                if table is None:
                    return False
                owner = (section.schema, table)
                if section.type != 'DEFAULT':
                    sort_name = section.name[len(table) + 1:]
                    self._constraints.setdefault(owner, []).append(section)
                else:
                    self._defaults.setdefault(owner, []).append(section)
            if section.type in ROUTINES:
                arguments = self.relations.arguments.get((section.schema, section.name))
                if arguments is None:
                    return False
                section.sorted_by(sort_name, arguments)
                continue
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
            codes = self.opcodes() if self._edits and self.step_before is not None else None
            self._objects = (Lines(list(self._lines)) if codes is None else
                             Lines.after(list(self._lines), self.step_before, codes))
            self._codes = codes
        return self._objects

    def begin_step(self):
        """A migration begins: :meth:`opcodes` will cover every edit from here on
        (``super_user()``'s, then the migration's own), against ``step_before``."""
        self._edits, self._moved = {}, False
        self.step_before = self.objects()
        self._codes = None

    def opcodes(self):
        """How :meth:`objects` differs from ``step_before``.

        difflib-style opcodes over objects, known from the edit itself (each
        section put in either replaced the one at its place or is new), so
        that the diff never compares the thousands of sections left alone.
        None when the step moved a table up: which of two sections that
        changed places moved is a matter of how the diff is worked out, and
        it must be what comparing the two dumps finds.
        """
        if self._moved:
            return None
        if self._objects is not None and self._codes is not None:
            return self._codes
        codes, i, j = [], 0, 0
        for place, replaced in sorted((self._place_of(section) + 1, replaced)
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
        would cost more than the edit.  On failure it is left as it was,
        an exception included.  The caller keeps the log until the migration
        has committed, to :meth:`undo` an edit whose migration did not.
        """
        return self._undone_on_error(self._edit, tables, routines, objects, dropped_routines,
                                     dropped)

    def _undone_on_error(self, method, *args):
        try:
            return method(*args)
        except Exception:
            self.undo(self._undo)
            raise

    def _edit(self, tables, routines, objects, dropped_routines, dropped):
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
        for oid, section, acl, comment, _, needs in routines:
            key = (section.schema, acl[0][2].partition(' ')[2])
            self._remember(self.relations.acl_names, key)
            self.relations.acl_names[key] = section.name
            if not self._put_routine(oid, section, needs) or not self._sync_acl(*acl) or (
                    not self._sync_comments(section, [comment] if comment else [])):
                self.undo(log)
                return None
        for ident, section, needs, acl, comments, constraints in objects:
            if not self._put_object(ident, section, needs) or (
                    acl and not self._sync_acl(*acl)) or not self._sync_comments(section, comments):
                self.undo(log)
                return None
            if constraints is not None:
                self._remember(self.relations.domain_constraints, ident[1])
                self.relations.domain_constraints[ident[1]] = constraints
        self._objects = None
        return log

    def has_column(self, oid, quoted, place):
        """Whether the dump's table ``oid`` has a column of that (quoted) name at that
        place (1 first); true for a relation the dump does not have, which nothing
        outside it could read before, false for a view or a type it has."""
        where = self.relations.tables.get(oid)
        if where is None:
            return ('pg_class', oid) not in self.relations.objects
        section = self._by_name.get(('TABLE',) + where)
        if section is None:
            return False
        lines = section.lines
        start = next((i for i, line in enumerate(lines) if line.startswith('CREATE TABLE ')), None)
        columns = [line for line in lines[start + 1:] if line.startswith('    ') and
                   not line.startswith('    CONSTRAINT ')] if start is not None else []
        return place <= len(columns) and columns[place - 1].startswith('    %s ' % quoted)

    def _sorted_place(self, section):
        """Where ``section`` is among the ordered ones when bisect can tell (they are
        sorted and it is in their sorted head); None otherwise."""
        if not self._sorted or section.key is None or section.type in ATTACHED:
            return None
        place = bisect.bisect_left(self._keys, section.key)
        if place < len(self._keys) and self._ordered[place] is section:
            return place
        return None

    def _ordered_index(self, section):
        """Where a section that is not ATTACHED is among the ordered ones."""
        place = self._sorted_place(section)
        return self._ordered.index(section) if place is None else place

    def _place_of(self, section, ordered=None):
        """Where ``section`` is in the dump.  No section is above its place among the
        ordered ones (``ordered``, or found by bisect), nor above where it was last
        found, unless an undo took sections out: the scan starts at the lower of
        those bounds it can trust, and from the top when that was wrong."""
        if ordered is None:
            ordered = self._sorted_place(section)
        start = max(ordered or 0, section.place)
        if start:
            try:
                section.place = self.sections.index(section, start)
                return section.place
            except ValueError:
                pass
        section.place = self.sections.index(section)
        return section.place

    def position(self, kind, schema, name):
        """Where the section of that type and name is in the dump; None if it is not."""
        section = self._by_name.get((kind, schema, name))
        return None if section is None else self._place_of(section)

    def reindex(self, relations):
        """Index the sections again, with ``relations`` of the same moment: after a
        schema's sections were replaced by :meth:`put_schema`."""
        self.relations = relations
        self.editable = self._index()

    def has(self, kind):
        """Whether the dump has a section of this type."""
        return any(section.type == kind for section in self.sections)

    @property
    def sorted(self):
        """Whether the sections stand in pg_dump's sort order, moved by no dependency."""
        return self._sorted

    def put_schema(self, schema, sections):
        """Put a dump of one schema (``sections``, of ``pg_dump --schema``) in place of
        the sections of that schema and of the schema itself; the undo log, or
        None (``why``).  Sections the same as before stay where they are."""
        return self._undone_on_error(self._put_schema, schema, sections)

    def _put_schema(self, schema, sections):
        self._this_edit, self._undo = [], []
        log = self._undo
        named = 'SCHEMA %s' % _identifier(schema)
        old = {(s.type, s.schema, s.name) for s in self.sections
               if s.type != GONE and (s.schema == schema or s.schema == '-' and (
                   (s.type, s.name) == ('SCHEMA', schema) or s.name == named))}
        new = {(s.type, s.schema, s.name) for s in sections}
        # What goes with an object first; a table last, as its SET lines may move.
        gone = sorted((key for key in old if key not in new),
                      key=lambda key: (key[0] not in ATTACHED, key[0] in TAKES_SETS))
        for key in gone:
            if not self._drop(self._current(key)):
                return self._refused(log, 'cannot take out %s %s' % key[:2])
        previous = None
        for section in sections:
            sets = _trailing_sets(section.lines)
            if sets:  # they belong to the first table of this dump, not of the whole one
                section.lines = section.lines[:-len(sets)]
            key = (section.type, section.schema, section.name)
            if key in old:
                before = self._current(key)
                section.lines = section.lines + _trailing_sets(before.lines)
                if before.lines != section.lines:
                    self._swap(before, section, carry=False)
                    before = section
                previous = before
                continue
            if section.type in ATTACHED:
                placed = previous is not None and self._attach(section, previous)
            elif section.type == 'ACL':
                placed = self._insert_acl(section)
            else:
                placed = section.rank is not None and section.rank < LAST_RANK and (
                    self._insert(section))
            if not placed:
                return self._refused(log, 'cannot tell where pg_dump puts %s %s' % (
                    section.type, section.name))
            previous = section
        self._objects = None
        return log

    def _current(self, key):
        """The section of this (type, schema, name) now: moving SET lines swaps the
        section they leave or join for a copy."""
        section = self._by_name.get(key)
        if section is not None:
            try:
                self._place_of(section)
                return section
            except ValueError:
                pass
        return next(s for s in self.sections if (s.type, s.schema, s.name) == key)

    def _refused(self, log, why):
        self.undo(log)
        return self._refuse(why) or None

    def put_sections(self, sections):
        """Put new objects that nothing else in the dump names (extensions), each
        followed by its comment, where pg_dump's sort would; the undo log, or None."""
        return self._undone_on_error(self._put_sections, sections)

    def _put_sections(self, sections):
        self._this_edit, self._undo = [], []
        log, owner = self._undo, None
        for section in sections:
            if section.type == 'COMMENT':
                placed = self._attach(section, owner)
            else:
                owner = section
                placed = self._by_name.get((section.type, section.schema, section.name)) is None \
                    and self._insert(section)
            if not placed:
                self.undo(log)
                return self._refuse('cannot tell where pg_dump puts %s %s' % (
                    section.type, section.name)) or None
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
                   and s is not section and s not in acls for s in self.sections)

    def _pulled_up_by(self, section):
        """Whether the table right before ``section`` sorts after it and after what
        follows it: pg_dump moved it up for ``section`` (a view or function of its
        row type), and puts it back further down when ``section`` goes, unless
        what follows needs it too (which this cannot tell)."""
        i = j = self._place_of(section)
        i -= 1
        while i >= 0 and self.sections[i].type in ATTACHED:
            i -= 1
        j += 1
        while j < len(self.sections) and self.sections[j].type in ATTACHED:
            j += 1
        before = self.sections[i] if i >= 0 else None
        after = self.sections[j] if j < len(self.sections) else None
        if before is None or before.type != 'TABLE' or None in (before.key, section.key):
            return False
        return before.key > section.key and after is not None and (
            after.key is None or after.key < before.key)

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
        if self._pulled_up_by(section):
            return self._refuse('%s had moved a table up, which pg_dump puts back' % name)
        for acl in acls:
            if not self._drop(acl):
                return False
        for dropped in self._comments_after(section) + [section]:
            if not self._drop(dropped):
                return self._refuse('cannot take %s out of the dump' % name)
        return True

    def _drop_object(self, ident):
        """Take out a dropped view, sequence of its own or type."""
        kind, schema, name = self.relations.objects[ident]
        section = self._by_name.get((kind, schema, name))
        if section is None:
            return self._refuse('dropped %s %s is not one this path renders' % (kind, name))
        if self._has_parts(schema, name):
            return False
        if not self._take_out(section, name):
            return False
        self._remember(self.relations.objects, ident)
        del self.relations.objects[ident]
        if kind == 'DOMAIN':
            self._remember(self.relations.domain_constraints, ident[1])
            self.relations.domain_constraints.pop(ident[1], None)
        return True

    def _has_parts(self, schema, name):
        """Refuse a view that has sections of its own in the dump (an INSTEAD OF trigger,
        a column default): this path renders a view as its CREATE VIEW alone."""
        if self._constraints.get((schema, name)) or self._defaults.get((schema, name)):
            return self._refuse('view %s has triggers or defaults of its own' % name) or True
        return False

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
        if self._has_parts(*(old or where)[1:]):
            return False
        if old is not None and old != where and (
                ident[0] == 'pg_namespace' or not self._drop_object(ident)):
            return self._refuse('%s %s.%s was renamed' % old)
        existing = self._by_name.get(where)
        if existing is not None:
            if existing.lines != new.lines:
                position = self._place_of(existing)
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
            if section is None or self._place_of(section) >= position:
                return False
        return True

    def _put_routine(self, oid, new, needs=()):
        """Put a function or procedure where pg_dump would; False if not certain.
        ``needs``: the tables and views whose row types it uses, as for views."""
        where = (new.schema, new.name)
        old = self.relations.routines.get(oid)
        if old is not None and old != where and not self._drop_routine(oid):
            return self._refuse('%s.%s was renamed, or its arguments changed' % old)
        existing = self._by_name.get((new.type,) + where)
        if existing is not None:
            if existing.lines != new.lines:
                if not self._after(needs, self._place_of(existing)):
                    return self._refuse('%s %s now uses a table pg_dump puts after it' % (
                        new.type, new.name))
                self._swap(existing, new)
        elif not self._insert(new, needs):
            return self._refuse('cannot tell where pg_dump puts %s %s' % (new.type, new.name))
        self._remember(self.relations.routines, oid)
        self.relations.routines[oid] = where
        return True

    def _sync_comments(self, owner, news):
        """Make the COMMENT sections that follow ``owner`` these, in this order."""
        section = self._by_name.get((owner.type, owner.schema, owner.name))
        existing = self._comments_after(section)
        if [s.name for s in existing] == [s.name for s in news]:
            for old, new in zip(existing, news):
                if old.lines != new.lines:
                    self._swap(old, new)
            return True
        if not all(self._drop(old) for old in existing):
            return False
        for new in news:
            if not self._attach(new, section):
                return False
            section = new
        return True

    def _comments_after(self, section):
        """The COMMENT sections pg_dump wrote right after ``section``, on it."""
        place, comments = self._place_of(section) + 1, []
        while place < len(self.sections) and self.sections[place].type in ATTACHED:
            if self.sections[place].type == 'COMMENT':
                comments.append(self.sections[place])
            place += 1
        return comments

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

    def begin_render(self):
        """A render of one step's changes begins: nothing pending or owed yet.
        False, with why, when the first dump has what this path cannot edit."""
        self.pending, self.owed, self.why = [], 0, None
        if not self.editable:
            self.why = 'the first dump has a section this path cannot place'
        return self.editable

    def leave_pending(self, tables):
        """Leave ``tables``, which have what this path does not render, to
        ``pg_dump --table`` after the commit."""
        self.pending = tables
        self.why = ', '.join(table.qualified for table in tables) + (
            ' has' if len(tables) == 1 else ' have') + ' features not rendered here'

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
        """Put a table's sections (its constraints', its indexes') where pg_dump would.

        A renamed table is taken out and put in again under its new name:
        the caller has checked that nothing outside it names it."""
        where = (table.schema, table.name)
        old = self.relations.tables.get(table.oid)
        if old is not None and old != where and not self._drop_table(table.oid):
            return False
        old_indexes = self.relations.indexes.get(table.oid, frozenset())
        now = dict(table.indexes)
        # A renamed index goes out under its old name and comes in under its new one.
        dropped = {name for oid, name in old_indexes if now.get(oid) != name}
        old_sequences = self.relations.sequences.get(table.oid, frozenset())
        if not old_sequences <= table.sequence_names:
            return self._refuse('a sequence of %s.%s was renamed' % where)
        existing = [self._by_name.get(('TABLE',) + where),
                    self._by_name.get(('TABLE ATTACH',) + where),
                    self._by_name.get(('ROW SECURITY',) + where)] + list(
            self._constraints.get(where, ())) + list(self._defaults.get(where, ())) + list(
            self._comments.get(where, ())) + [
            self._by_name.get((kind, table.schema, name)) for _, name in old_indexes
            for kind in ('INDEX', 'INDEX ATTACH')] + [
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
        """Take ``old`` out of the dump; False for the last table, which pg_dump's SET
        lines go with.  The first table's SET lines move down to the next one
        (a function's table pulled up before other functions is followed by
        those).

        An empty section stands in its place (keeping the SET lines that
        followed it), so that the places of the others, and the undo log,
        stay as they are.
        """
        i = self._place_of(old)
        if old.type in TAKES_SETS and i and _trailing_sets(self.sections[i - 1].lines):
            following = next((s for s in self.sections[i + 1:] if s.type not in ATTACHED), None)
            if following is None or following.type not in TAKES_SETS:
                later = next((k for k in range(i + 1, len(self.sections))
                              if self.sections[k].type in TAKES_SETS), None)
                if later is None:
                    return False
                self._move_sets(self.sections[i - 1], self.sections[later - 1])
        gone = Section(GONE, old.schema, old.name, [])
        gone.was = old.type
        j = None if old.type in ATTACHED else self._ordered_index(old)
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
        i = self._place_of(old)
        j = None if old.type in ATTACHED else self._ordered_index(old)
        self._remember(self._by_name, (new.type, new.schema, new.name))
        self.sections[i] = new
        new.place = i
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
        position = self._place_of(self._ordered[after], after) + 1
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
        pulled = position is not None and not self._after(needs, position)
        if pulled:
            position = self._pull_up(needs, position)
        if position is None:
            return False
        # A view placed after the tables it pulled up is out of sort order.
        by_sort = self._sorted and not pulled
        if by_sort:
            place = bisect.bisect_left(self._keys, new.key)
        previous = self.sections[position - 1] if position else None
        if new.type not in TAKES_SETS and previous is not None and _trailing_sets(
                previous.lines):
            # pg_dump's SETs for the tables that follow move below the new object.
            sets = _trailing_sets(previous.lines)
            self._swap(previous, _with_lines(previous, previous.lines[:-len(sets)]),
                       carry=False)
            new.lines = new.lines + sets
        if not by_sort:
            self._undo.append(self._reorder)  # undone after the section is out again
        self._place(new, position)
        if not by_sort:
            self._reorder()
            return True
        self._ordered.insert(place, new)
        self._keys.insert(place, new.key)

        def undo():
            del self._ordered[place]
            del self._keys[place]
        self._undo.append(undo)
        return True

    def _pull_up(self, needs, position):
        """pg_dump puts a new view or function that sorts before a table it reads right
        after that table, which moves up to its place (with its comments), before
        everything the new object sorts before: the new object's place then, or
        None when what it reads is not such a table.  The SET lines pg_dump
        writes before the first table move up with a table that becomes the first."""
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
            carriers = [k for k in range(max(position - 1, 0), i)
                        if _trailing_sets(self.sections[k].lines)]
            if len(carriers) > 1 or (carriers and not position):
                return None
            if carriers and carriers != [position - 1]:
                self._move_sets(self.sections[carriers[0]], self.sections[position - 1])
            group = [section]
            while i + len(group) < len(self.sections) and (
                    self.sections[i + len(group)].type in ATTACHED - {GONE}):
                group.append(self.sections[i + len(group)])
            groups.append(group)
        # A table already at the view's place stays; the view goes after it.
        while groups and self._place_of(groups[0][0]) == position:
            position += len(groups.pop(0))
        if not groups:
            return position
        self._undo.append(self._reorder)
        self._moved = True
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

    def _move_sets(self, carrier, to):
        """Move pg_dump's trailing SET lines from ``carrier`` to the end of ``to``."""
        sets = _trailing_sets(carrier.lines)
        self._swap(carrier, _with_lines(carrier, carrier.lines[:-len(sets)]), carry=False)
        self._swap(to, _with_lines(to, to.lines + sets), carry=False)

    def _acl_owner(self, acl, places):
        """The place in the dump of what an ACL section is for: -1 for a schema
        (schemas come first), None when not known."""
        keyword, _, name = acl.name.partition(' ')
        if keyword == 'SCHEMA':
            return -1
        kinds = {'TABLE': ('TABLE', 'VIEW', 'MATERIALIZED VIEW', 'FOREIGN TABLE'),
                 'SEQUENCE': ('SEQUENCE',), 'FUNCTION': ('FUNCTION', 'AGGREGATE'),
                 'PROCEDURE': ('PROCEDURE',), 'TYPE': ('TYPE',),
                 'DOMAIN': ('DOMAIN',)}.get(keyword, ())
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
        self._place(new, self._place_of(owner) + 1)
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
        new.place = position
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


def _with_lines(section, lines):
    """``section`` with other lines, sorted and standing for what it did (``was``)."""
    other = copy.copy(section)
    other.lines = lines
    return other


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
    """A table as the dump shows it: its TABLE, CONSTRAINT, INDEX... sections, rendered
    from the catalogs, or None until ``pg_dump --table`` gives them."""

    oid: int
    schema: str
    name: str
    indexes: frozenset  # (oid, name) of its indexes
    sections: list
    sequence_names: frozenset = frozenset()
    members: frozenset = frozenset()  # oids of its toast table and index, its sequences
    acl_keys: frozenset = frozenset()  # the ACL sections it and its sequences may have
    qualified: str = None  # its name as pg_dump writes it, schema first
    parents: tuple = ()  # (type, schema, name) of the tables it inherits from
    # a partition's index -> the partitioned table's index it is attached to
    index_parents: dict = dataclasses.field(default_factory=dict)


def _literal(text):
    return "'%s'" % text.replace("'", "''")


def _identifier(name):
    """A name as pg_dump quotes it (fmtId): bare when it is a plain lower-case one."""
    if name.replace('_', 'a').isalnum() and name == name.lower() and not name[0].isdigit():
        return name
    return '"%s"' % name.replace('"', '""')

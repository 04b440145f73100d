"""A table with its constraints, indexes, sequences, triggers, policies, comments
and grants, as pg_dump writes them.
"""
from .grants import _acl, acl_items, default_acl
from .snapshot import TOAST_MEMBERS, Table, _literal, _section


# One table as pg_dump would write it: its own flags, then its columns,
# constraints and indexes as JSON arrays, in one round trip.  The columns of
# ``c`` (pg_class) and ``n`` (its pg_namespace row): a step's STEP reads
# the tables it wrote with them too.
TABLE_COLUMNS = '''n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       pg_get_userbyid(c.relowner), quote_ident(pg_get_userbyid(c.relowner)),
       c.relkind = 'r' AND NOT c.relispartition
       AND NOT c.relhassubclass AND NOT c.relhasrules AND c.relpersistence = 'p' AND c.reloptions IS NULL
       AND c.reltablespace = 0 AND c.reloftype = 0
       AND c.relreplident = 'd'
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_class tc
                        WHERE tc.oid = c.reltoastrelid AND tc.reloptions IS NOT NULL),
       array_to_json(ARRAY(SELECT json_build_array(
                quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,
                pg_get_expr(d.adbin, d.adrelid),
                a.attgenerated = '' AND a.attacl IS NULL
                AND a.attoptions IS NULL AND a.attfdwoptions IS NULL
                AND coalesce(a.attstattarget, -1) < 0
                AND a.attcompression = '' AND a.attstorage = t.typstorage AND a.attislocal
                AND a.attcollation = t.typcollation, a.attname, a.attnum)
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum)),
       array_to_json(ARRAY(SELECT json_build_array(
                k.conname, quote_ident(k.conname), k.contype, pg_get_constraintdef(k.oid),
                k.convalidated AND k.conislocal AND (k.contype NOT IN ('c', 'n') OR NOT k.connoinherit),
                k.conkey,
                (SELECT description FROM pg_description WHERE objoid = k.oid
                    AND classoid = 'pg_constraint'::regclass))
          FROM pg_constraint k WHERE k.conrelid = c.oid
         ORDER BY k.conname)),
       array_to_json(ARRAY(SELECT json_build_array(
                ic.relname, CASE WHEN ik.oid IS NULL THEN pg_get_indexdef(i.indexrelid) END,
                NOT i.indisclustered AND i.indisvalid AND ic.reltablespace = 0
                AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_class'::regclass
                                   AND objid = i.indexrelid AND deptype = 'x')
                AND NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = i.indexrelid
                                   AND coalesce(attstattarget, -1) >= 0),
                ik.oid IS NOT NULL,
                i.indexrelid::bigint, quote_ident(ic.relname),
                (SELECT description FROM pg_description WHERE objoid = ic.oid
                    AND classoid = 'pg_class'::regclass),
                (SELECT p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
                  WHERE h.inhrelid = i.indexrelid))
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
          LEFT JOIN pg_constraint ik ON ik.conrelid = i.indrelid AND ik.conindid = i.indexrelid
                AND ik.contype IN ('p', 'u', 'x')
         WHERE i.indrelid = c.oid)),
       array_to_json(ARRAY(SELECT json_build_array(
                sn.nspname, s.relname, quote_ident(sn.nspname) || '.' || quote_ident(s.relname),
                pg_get_userbyid(s.relowner), quote_ident(pg_get_userbyid(s.relowner)),
                a.attname, quote_ident(a.attname), d.deptype, a.attidentity,
                format_type(q.seqtypid, NULL), q.seqstart::text, q.seqincrement::text,
                q.seqmin::text, q.seqmax::text, q.seqcache::text, q.seqcycle,
                s.relpersistence = 'p'
                AND NOT EXISTS (SELECT 1 FROM pg_description WHERE objoid = s.oid)
                AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = s.oid),
                quote_ident(s.relname), ''' + acl_items('s.relacl', 's.relowner') + ''',
                s.oid::bigint)
          FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
          JOIN pg_namespace sn ON sn.oid = s.relnamespace
          JOIN pg_sequence q ON q.seqrelid = s.oid
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid = c.oid AND d.deptype IN ('a', 'i')
         ORDER BY a.attnum)),
       array_to_json(ARRAY(SELECT json_build_array(objsubid, description) FROM pg_description
         WHERE objoid = c.oid AND classoid = 'pg_class'::regclass)),
       quote_ident(c.relname), ''' + TOAST_MEMBERS + ''',
       array_to_json(ARRAY(SELECT json_build_array(
                g.tgname, pg_get_triggerdef(g.oid, false),
                g.tgenabled = 'O' AND g.tgparentid = 0
                AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_trigger'::regclass
                                   AND objid = g.oid AND deptype = 'x'), quote_ident(g.tgname),
                (SELECT description FROM pg_description WHERE objoid = g.oid
                    AND classoid = 'pg_trigger'::regclass))
          FROM pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal
         ORDER BY g.tgname)),
       ''' + acl_items('c.relacl', 'c.relowner') + ''',
       c.relrowsecurity, c.relforcerowsecurity,
       array_to_json(ARRAY(SELECT json_build_array(
                p.polname, quote_ident(p.polname), p.polpermissive, p.polcmd,
                CASE WHEN p.polroles <> '{0}' THEN array_to_string(ARRAY(
                     SELECT quote_ident(rolname) FROM pg_roles WHERE oid = ANY(p.polroles)
                      ORDER BY oid), ', ') END,
                pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid),
                (SELECT description FROM pg_description WHERE objoid = p.oid
                    AND classoid = 'pg_policy'::regclass))
          FROM pg_policy p WHERE p.polrelid = c.oid
         ORDER BY p.polname)),
       array_to_json(ARRAY(SELECT json_build_array(pn.nspname, p.relname)
          FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
          JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid
         ORDER BY i.inhseqno))'''
TABLE = 'SELECT ' + TABLE_COLUMNS + '''
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = %s::oid
'''


# pg_dump leaves out the limits a sequence of this type has by default.
LIMITS = {'smallint': (-2 ** 15, 2 ** 15 - 1), 'integer': (-2 ** 31, 2 ** 31 - 1),
          'bigint': (-2 ** 63, 2 ** 63 - 1)}


def _sequence_options(type_name, start, increment, minimum, maximum, cache, cycle):
    """A sequence's option lines as pg_dump writes them, leaving out default limits."""
    low, high = LIMITS[type_name]
    ascending = not increment.startswith('-')
    return ['    START WITH %s' % start, '    INCREMENT BY %s' % increment,
            '    NO MINVALUE' if int(minimum) == (1 if ascending else low)
            else '    MINVALUE %s' % minimum,
            '    NO MAXVALUE' if int(maximum) == (high if ascending else -1)
            else '    MAXVALUE %s' % maximum,
            '    CACHE %s' % cache] + (['    CYCLE'] if cycle else [])


def _sequence(qualified, row, default, server_version):
    """The sections of a serial or identity column's sequence as pg_dump writes them,
    and a serial column's DEFAULT line; None when pg_dump would write otherwise.
    ``default``: the owning column's default, as pg_get_expr() prints it."""
    (schema, name, seq_qualified, owner, quoted_owner, _, column, deptype, identity, type_name,
     start, increment, minimum, maximum, cache, cycle, plain, quoted_name, acl, _) = row
    grants = _acl('SEQUENCE', seq_qualified, quoted_owner, acl,
                  default_acl('SEQUENCE', quoted_owner, server_version))
    if not plain or grants is None or type_name not in LIMITS or (deptype == 'i') != (
            identity in ('a', 'd')):
        return None, None
    granted = [_section('ACL', schema, 'SEQUENCE %s' % quoted_name, owner,
                        grants + ['', ''])] if grants else []
    options = _sequence_options(type_name, start, increment, minimum, maximum, cache, cycle)
    if deptype == 'i':
        return [_section('SEQUENCE', schema, name, owner, [
            'ALTER TABLE %s ALTER COLUMN %s ADD GENERATED %s AS IDENTITY (' % (
                qualified, column, 'ALWAYS' if identity == 'a' else 'BY DEFAULT'),
            '    SEQUENCE NAME %s' % seq_qualified] + options + [');', '', ''])] + granted, None
    nextval = 'nextval(%s::regclass)' % _literal(seq_qualified)
    if default != nextval:
        return None, None
    return [
        _create_sequence(schema, name, seq_qualified, owner, quoted_owner, type_name, options),
        _section('SEQUENCE OWNED BY', schema, name, owner, [
            'ALTER SEQUENCE %s OWNED BY %s.%s;' % (seq_qualified, qualified, column), '', ''])
    ] + granted, [
        'ALTER TABLE ONLY %s ALTER COLUMN %s SET DEFAULT %s;' % (qualified, column, nextval),
        '', '']


def _create_sequence(schema, name, qualified, owner, quoted_owner, type_name, options):
    """The SEQUENCE section of a sequence pg_dump writes with CREATE SEQUENCE."""
    return _section('SEQUENCE', schema, name, owner, ['CREATE SEQUENCE %s' % qualified] + (
        ['    AS %s' % type_name] if type_name != 'bigint' else []) + options[:-1] + [
        options[-1] + ';', '', '', 'ALTER SEQUENCE %s OWNER TO %s;' % (qualified, quoted_owner),
        ''])


# A sequence of its own (no column owns it) as pg_dump writes it, whether it
# writes nothing more (logged, no label, not an extension's), and its comment.
SEQUENCE = '''
SELECT n.nspname, s.relname, quote_ident(n.nspname) || '.' || quote_ident(s.relname),
       pg_get_userbyid(s.relowner), quote_ident(pg_get_userbyid(s.relowner)),
       format_type(q.seqtypid, NULL), q.seqstart::text, q.seqincrement::text,
       q.seqmin::text, q.seqmax::text, q.seqcache::text, q.seqcycle,
       s.relpersistence = 'p' AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = s.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_class'::regclass
                          AND objid = s.oid AND deptype IN ('a', 'i', 'e')),
       quote_ident(s.relname), ''' + acl_items('s.relacl', 's.relowner') + ''',
       (SELECT description FROM pg_description WHERE objoid = s.oid
           AND classoid = 'pg_class'::regclass AND objsubid = 0)
  FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
  JOIN pg_sequence q ON q.seqrelid = s.oid
 WHERE s.oid = %s::oid AND s.relkind = 'S'
'''


def _sequence_of_its_own(row, server_version):
    """(section, needs, its ACL, its comments) of a sequence no column owns; None
    when pg_dump would write more than this does."""
    (schema, name, qualified, owner, quoted_owner, type_name, start, increment, minimum,
     maximum, cache, cycle, plain, quoted_name, acl, comment) = row
    grants = _acl('SEQUENCE', qualified, quoted_owner, acl,
                  default_acl('SEQUENCE', quoted_owner, server_version))
    if not plain or grants is None or type_name not in LIMITS:
        return None
    acl_name = 'SEQUENCE %s' % quoted_name
    granted = (('ACL', schema, acl_name),
               _section('ACL', schema, acl_name, owner, grants + ['', '']) if grants else None)
    remarks = [] if comment is None else [_comment(
        schema, owner, acl_name, 'SEQUENCE %s' % qualified, comment)]
    return _create_sequence(schema, name, qualified, owner, quoted_owner, type_name,
                            _sequence_options(type_name, start, increment, minimum, maximum,
                                              cache, cycle)), (), granted, remarks


POLICY_COMMANDS = {'*': None, 'r': 'SELECT', 'a': 'INSERT', 'w': 'UPDATE', 'd': 'DELETE'}


def _policy(qualified, row):
    """A row-level security policy's CREATE POLICY line, as pg_dump writes it."""
    name, quoted, permissive, command, roles, using, check, _ = row
    if command not in POLICY_COMMANDS:
        return None
    line = 'CREATE POLICY %s ON %s' % (quoted, qualified)
    line += '' if permissive else ' AS RESTRICTIVE'
    line += ' FOR %s' % POLICY_COMMANDS[command] if POLICY_COMMANDS[command] else ''
    line += ' TO %s' % roles if roles else ''
    line += ' USING (%s)' % using if using is not None else ''
    line += ' WITH CHECK (%s)' % check if check is not None else ''
    return line + ';'


def _render_table(reader, cursor, oid, row=None):
    """The table as pg_dump writes it; when it has what this module does not render,
    the same :class:`Table` without sections, for ``pg_dump --table`` to fill; None
    when those could not be put in one by one (see :func:`_sorted_by_name`).
    ``row``: its TABLE row, when the caller has it already."""
    [(schema, name, qualified, owner, quoted_owner, plain, columns, constraints,
      indexes, sequences, comments, quoted_name, members, triggers, acl,
      row_security, force_row_security, policies, parents)] = (
          [row] if row is not None else reader.execute(cursor, TABLE, oid))
    acl_keys = {('ACL', schema, 'TABLE %s' % quoted_name)} | {
        ('ACL', row[0], 'SEQUENCE %s' % row[17]) for row in sequences or ()}
    table = Table(oid, schema, name, frozenset((row[4], row[0]) for row in indexes or ()), None,
                  frozenset((row[0], row[1]) for row in sequences or ()),
                  frozenset(members) | {row[19] for row in sequences or ()},
                  frozenset(acl_keys), qualified,
                  tuple(('TABLE', schema, name) for schema, name in parents or ()),
                  {row[0]: row[7] for row in indexes or () if row[7] is not None})
    if not plain or parents:
        return table if _sorted_by_name(table, sequences) else None
    table.sections = _sections(cursor, table, owner, quoted_owner, quoted_name, columns,
                               constraints, indexes, sequences, dict(comments or ()), triggers, acl,
                               row_security, force_row_security, policies)
    if table.sections is None and not _sorted_by_name(table, sequences):
        return None
    return table


def _sorted_by_name(table, sequences):
    """Whether pg_dump's dependency sort leaves this table's sections in the order of
    their names, as they must be to be put in one by one: its parents before it,
    its sequences after it, its serial columns' defaults in column order, a
    (a partition's new indexes must also come after their parents': see
    :func:`dbmigrator.fastdiff.partial.fill`)."""
    me = (table.schema.encode(), table.name.encode())
    if any((schema.encode(), name.encode()) > me for _, schema, name in table.parents):
        return False
    if any((schema.encode(), name.encode()) < me for schema, name in table.sequence_names):
        return False
    serial = [row[5].encode() for row in sequences or () if row[7] == 'a']
    return all(a < b for a, b in zip(serial, serial[1:]))


def _comment(schema, owner, tag, target, text):
    return _section('COMMENT', schema, tag, owner, ('COMMENT ON %s IS %s;' % (
        target, _literal(text))).split('\n') + ['', ''])


def _sections(cursor, table, owner, quoted_owner, quoted_name, columns, constraints, indexes,
              sequences, comments, triggers, acl, row_security, force_row_security,
              policies):
    """The table's sections in the order pg_dump writes them; None when pg_dump would
    write something this module does not.  ``comments``: the table's and its
    columns' by column number (0 for the table's own)."""
    schema, name, qualified = table.schema, table.name, table.qualified
    server_version = cursor.connection.server_version
    columns = columns or ()
    defaults = {column[5]: column[3] for column in columns}
    attnames = {column[6]: column[5] for column in columns}
    owned, serial = [], {}
    for row in sequences or ():
        rendered = _sequence(qualified, row, defaults.get(row[5]), server_version)
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
    for conname, quoted, contype, definition, plain_constraint, conkey, remark in (
            constraints or ()):
        if not plain_constraint:
            return None
        if contype in ('n', 'c') and remark is not None:
            return None  # pg_dump writes it after the table's own comments
        if contype == 'n':
            if len(conkey or []) != 1 or conname != '%s_%s_not_null' % (
                    name, attnames.get(conkey[0])):
                return None
            not_null.add(attnames.get(conkey[0]))
        elif contype == 'c':
            checks.append('    CONSTRAINT %s %s' % (quoted, definition))
        elif contype in ('p', 'u', 'f'):
            keyed.append(_section('FK CONSTRAINT' if contype == 'f' else 'CONSTRAINT', schema,
                                  '%s %s' % (name, conname), owner, [
                'ALTER TABLE ONLY %s' % qualified,
                '    ADD CONSTRAINT %s %s;' % (quoted, definition), '', ''], sort_name=conname))
            if remark is not None:
                keyed.append(_comment(schema, owner, 'CONSTRAINT %s ON %s' % (quoted, quoted_name),
                                      'CONSTRAINT %s ON %s' % (quoted, qualified), remark))
        else:
            return None
    body = []
    remarks = [] if 0 not in comments else [('TABLE %s' % quoted_name, 'TABLE %s' % qualified,
                                             comments[0])]
    for quoted, type_name, attnotnull, default, plain_column, attname, attnum in columns:
        remark = comments.get(attnum)
        if remark is not None:
            remarks.append(('COLUMN %s.%s' % (quoted_name, quoted),
                             'COLUMN %s.%s' % (qualified, quoted), remark))
        if attname in serial:
            default = None
        if not plain_column or (default and 'nextval(' in default):
            return None
        if attnotnull and server_version >= 180000 and attname not in not_null:
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
        _comment(schema, owner, tag, target, text) for tag, target, text in remarks] + keyed
    for index_name, definition, plain_index, for_constraint, _, quoted, remark, _ in (
            indexes or ()):
        if not plain_index or (for_constraint and remark is not None):
            return None
        if not for_constraint:
            sections.append(_section('INDEX', schema, index_name, owner,
                                     [definition + ';', '', '']))
            if remark is not None:
                quoted_schema = qualified[:-len(quoted_name) - 1]
                sections.append(_comment(schema, owner, 'INDEX %s' % quoted,
                                         'INDEX %s.%s' % (quoted_schema, quoted), remark))
    grants = _acl('TABLE', qualified, quoted_owner, acl,
                  default_acl('TABLE', quoted_owner, server_version))
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
        if row[7] is not None:
            sections.append(_comment(schema, owner, 'POLICY %s ON %s' % (row[1], quoted_name),
                                     'POLICY %s ON %s' % (row[1], qualified), row[7]))
    if row_security:
        sections.append(_section('ROW SECURITY', schema, name, owner, [
            'ALTER TABLE %s ENABLE ROW LEVEL SECURITY;' % qualified, '']))
    for trigger_name, definition, plain_trigger, quoted, remark in triggers or ():
        if not plain_trigger:
            return None
        sections.append(_section('TRIGGER', schema, '%s %s' % (name, trigger_name), owner,
                                 [definition + ';', '', ''], sort_name=trigger_name))
        if remark is not None:
            sections.append(_comment(schema, owner, 'TRIGGER %s ON %s' % (quoted, quoted_name),
                                     'TRIGGER %s ON %s' % (quoted, qualified), remark))
    for rendered in owned:
        sections += rendered
    sections += serial.values()
    return sections

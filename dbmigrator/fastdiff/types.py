"""Schemas, domains, enum and composite types, views and materialized views, as
pg_dump writes them.
"""
import json

from .grants import _acl, acl_items, default_acl
from .snapshot import ROUTINE_TAG, TYPES_OWN, _identifier, _literal, _section


# An object's comment, and how many comments on it this transaction wrote.
_COMMENT = '''(SELECT description FROM pg_description WHERE objoid = {oid}
           AND classoid = '{catalog}'::regclass AND objsubid = 0),
       (SELECT count(*) FROM pg_description WHERE objoid = {oid}
           AND classoid = '{catalog}'::regclass AND age(xmin) <= 0)'''


def _comments(schema, owner, keyword, quoted_name, qualified, text, columns=()):
    """The COMMENT sections pg_dump writes after an object: its own (``text``, when
    there is one), then its columns' (``(quoted column, text)``)."""
    remarks = ([('%s %s' % (keyword, quoted_name), '%s %s' % (keyword, qualified), text)]
               if text is not None else []) + [
        ('COLUMN %s.%s' % (quoted_name, column), 'COLUMN %s.%s' % (qualified, column), remark)
        for column, remark in columns or ()]
    return [_section('COMMENT', schema, name, owner, ('COMMENT ON %s IS %s;' % (
        on, _literal(remark))).split('\n') + ['', '']) for name, on, remark in remarks]


# The schemas this transaction wrote.
OURS_SCHEMAS = 'SELECT oid FROM pg_namespace WHERE age(xmin) <= 0 ORDER BY oid'


# A schema as pg_dump writes it, its comment and how many comments this
# transaction wrote on it, and whether pg_dump writes nothing more: not public
# (pg_dump leaves it out), no grants, label, not an extension's.
SCHEMA = '''
SELECT n.nspname, quote_ident(n.nspname), pg_get_userbyid(n.nspowner),
       quote_ident(pg_get_userbyid(n.nspowner)),
       n.nspname <> 'public' AND n.nspacl IS NULL
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = n.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_namespace'::regclass
                          AND objid = n.oid AND deptype = 'e'),
       ''' + _COMMENT.format(oid='n.oid', catalog='pg_namespace') + '''
  FROM pg_namespace n WHERE n.oid = %s::oid
'''


def _schema(row):
    """(the SCHEMA section, its comments, comments written); None first if not plain."""
    name, quoted, owner, quoted_owner, plain, comment, written = row
    if not plain:
        return None, [], 0
    return _section('SCHEMA', '-', name, owner, [
        'CREATE SCHEMA %s;' % quoted, '', '', 'ALTER SCHEMA %s OWNER TO %s;' % (quoted, quoted_owner),
        '']), _comments('-', owner, 'SCHEMA', quoted, quoted, comment), written


# Schemas, types (their pg_type rows; a composite type's relation) and
# extended statistics on which this transaction wrote comments.
OURS_OBJECT_COMMENTS = '''
SELECT DISTINCT CASE d.classoid WHEN 'pg_namespace'::regclass THEN 'pg_namespace'
                                WHEN 'pg_statistic_ext'::regclass THEN 'pg_statistic_ext'
                                ELSE 'pg_type' END, d.objoid, t.typtype, t.typrelid
  FROM pg_description d
  LEFT JOIN pg_type t ON d.classoid = 'pg_type'::regclass AND t.oid = d.objoid
 WHERE age(d.xmin) <= 0 AND d.classoid IN ('pg_type'::regclass, 'pg_namespace'::regclass,
                                           'pg_statistic_ext'::regclass)
 ORDER BY 1, 2
'''


# Domains, enums and range types whose pg_type rows this transaction wrote
# (CREATE DOMAIN, ALTER TYPE ... OWNER TO), and domains whose constraints it
# wrote (ALTER DOMAIN ... ADD, VALIDATE or RENAME CONSTRAINT).
OURS_TYPES = '''
SELECT oid, typtype FROM pg_type WHERE typtype IN ('d', 'e', 'r') AND age(xmin) <= 0
UNION SELECT contypid, 'd' FROM pg_constraint WHERE contypid <> 0 AND age(xmin) <= 0
ORDER BY 1
'''


# Which of these domains (that the dump has, with this many constraints)
# have another number of constraints now.
DOMAINS_RECOUNTED = '''
SELECT d.o FROM unnest(%s::oid[], %s::bigint[]) AS d (o, n)
 WHERE (SELECT count(*) FROM pg_constraint WHERE contypid = d.o) <> d.n
   AND EXISTS (SELECT 1 FROM pg_type WHERE oid = d.o)
 ORDER BY 1
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
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k JOIN pg_description d
                         ON d.objoid = k.oid AND d.classoid = 'pg_constraint'::regclass
                        WHERE k.contypid = t.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = t.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_type'::regclass
                          AND objid = t.oid AND deptype = 'e')
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k JOIN pg_depend d
                         ON d.classid = 'pg_constraint'::regclass AND d.objid = k.oid
                        WHERE k.contypid = t.oid AND d.refclassid = 'pg_proc'::regclass
                          AND d.refobjid >= 16384),
       ''' + _COMMENT.format(oid='t.oid', catalog='pg_type') + ''', quote_ident(t.typname),
       (SELECT count(*) FROM pg_constraint k WHERE k.contypid = t.oid)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  JOIN pg_type b ON b.oid = t.typbasetype
  LEFT JOIN pg_collation co ON co.oid = t.typcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
 WHERE t.oid = %s::oid
'''


def _domain(row):
    """(the DOMAIN section, pg_type rows and constraints it explains, its comments,
    comments written, the constraints it has); None first if not plain."""
    (schema, name, qualified, owner, quoted_owner, base, collation, not_null, default,
     constraints, types_written, constraints_written, plain, comment, written, quoted_name,
     count) = row
    if not plain:
        return None, 0, 0, [], 0, 0
    head = 'CREATE DOMAIN %s AS %s' % (qualified, base)
    head += ' COLLATE %s' % collation if collation else ''
    checks = []
    for conname, quoted, contype, definition, validated in constraints or ():
        if contype == 'n' and conname == '%s_not_null' % name and not_null:
            continue
        if contype != 'c' or not validated:
            return None, 0, 0, [], 0, 0
        checks.append('\tCONSTRAINT %s %s' % (quoted, definition))
    head += ' NOT NULL' if not_null else ''
    head += ' DEFAULT %s' % default if default is not None else ''
    lines = [head] + checks
    lines[-1] += ';'
    return _section('DOMAIN', schema, name, owner, lines + [
        '', '', 'ALTER DOMAIN %s OWNER TO %s;' % (qualified, quoted_owner), '']), \
        types_written, constraints_written, _comments(
            schema, owner, 'DOMAIN', quoted_name, qualified, comment), written, count


# The enum types whose labels this transaction wrote.
OURS_ENUMS = 'SELECT DISTINCT enumtypid FROM pg_enum WHERE age(xmin) <= 0 ORDER BY 1'


# Enum types whose labels this transaction changed (renamed, or renumbered
# around a new one) that anything but their array type uses: a default, a
# check or a view may spell a label, and would read differently.
ENUMS_IN_USE = '''
SELECT count(*) FROM (SELECT DISTINCT enumtypid FROM pg_enum WHERE age(xmin) <= 0) e
 WHERE EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.refclassid = 'pg_type'::regclass AND d.refobjid = e.enumtypid
                  AND NOT (d.classid = 'pg_type'::regclass AND d.deptype = 'i'))
'''


# An enum type as pg_dump writes it, whether it writes nothing more (no
# comment, no ACL, not an extension's), and how many of its pg_type rows
# (itself, its array type) this transaction wrote.
ENUM = '''
SELECT n.nspname, t.typname, quote_ident(n.nspname) || '.' || quote_ident(t.typname),
       pg_get_userbyid(t.typowner), quote_ident(pg_get_userbyid(t.typowner)),
       ARRAY(SELECT quote_literal(enumlabel) FROM pg_enum WHERE enumtypid = t.oid
              ORDER BY enumsortorder),
       t.typacl IS NULL
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = t.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_type'::regclass
                          AND objid = t.oid AND deptype = 'e'),
       (SELECT count(*) FROM pg_type a WHERE a.oid IN (t.oid, t.typarray) AND age(a.xmin) <= 0),
       ''' + _COMMENT.format(oid='t.oid', catalog='pg_type') + ''', quote_ident(t.typname)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.oid = %s::oid AND t.typtype = 'e'
'''


def _enum(row):
    """(the TYPE section of an enum type, pg_type rows it explains, its comments,
    comments written); None first if not plain."""
    (schema, name, qualified, owner, quoted_owner, labels, plain, types_written, comment,
     written, quoted_name) = row
    if not plain:
        return None, 0, [], 0
    return _section('TYPE', schema, name, owner, ['CREATE TYPE %s AS ENUM (' % qualified] + [
        '    %s%s' % (label, ',' if i < len(labels) - 1 else '')
        for i, label in enumerate(labels)] + [
        ');', '', '', 'ALTER TYPE %s OWNER TO %s;' % (qualified, quoted_owner), '']), \
        types_written, _comments(schema, owner, 'TYPE', quoted_name, qualified, comment), written


# How many casts this transaction made that are not a type's own (a range's
# to its multirange type).
TYPE_CASTS = '''
SELECT count(*) FROM pg_cast c
 WHERE age(c.xmin) <= 0 AND NOT ''' + TYPES_OWN.format(catalog='pg_cast', oid='c.oid') + '''
'''


# A range type as pg_dump writes it (its multirange type's name always; the
# operator class and collation when not its subtype's own), whether it writes
# nothing more (a built-in subtype, no canonical function, a built-in
# difference function if any, no ACL, label, not an extension's), and how
# many of its pg_type rows (itself, its multirange type, their array types)
# this transaction wrote.
RANGE = '''
SELECT n.nspname, t.typname, quote_ident(n.nspname) || '.' || quote_ident(t.typname),
       pg_get_userbyid(t.typowner), quote_ident(pg_get_userbyid(t.typowner)),
       format_type(r.rngsubtype, NULL), format_type(r.rngmultitypid, NULL),
       CASE WHEN NOT o.opcdefault THEN quote_ident(oc.nspname) || '.' || quote_ident(o.opcname) END,
       CASE WHEN r.rngcollation <> st.typcollation THEN
            quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END,
       CASE WHEN r.rngsubdiff <> 0 THEN r.rngsubdiff::regproc::text END,
       st.typnamespace = 'pg_catalog'::regnamespace AND r.rngcanonical = 0
       AND (r.rngsubdiff = 0 OR (SELECT pronamespace FROM pg_proc WHERE oid = r.rngsubdiff)
                                = 'pg_catalog'::regnamespace)
       AND t.typacl IS NULL
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = t.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_type'::regclass
                          AND objid = t.oid AND deptype = 'e'),
       (SELECT count(*) FROM pg_type a WHERE a.oid IN (t.oid, t.typarray, r.rngmultitypid,
               (SELECT typarray FROM pg_type WHERE oid = r.rngmultitypid)) AND age(a.xmin) <= 0),
       ''' + _COMMENT.format(oid='t.oid', catalog='pg_type') + ''', quote_ident(t.typname)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  JOIN pg_range r ON r.rngtypid = t.oid JOIN pg_type st ON st.oid = r.rngsubtype
  JOIN pg_opclass o ON o.oid = r.rngsubopc JOIN pg_namespace oc ON oc.oid = o.opcnamespace
  LEFT JOIN pg_collation co ON co.oid = r.rngcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
 WHERE t.oid = %s::oid AND t.typtype = 'r'
'''


def _range(row):
    """(the TYPE section of a range type, pg_type rows it explains, its comments,
    comments written); None first if not plain."""
    (schema, name, qualified, owner, quoted_owner, subtype, multirange, opclass, collation,
     difference, plain, types_written, comment, written, quoted_name) = row
    if not plain:
        return None, 0, [], 0
    options = ['subtype = %s' % subtype, 'multirange_type_name = %s' % multirange] + [
        '%s = %s' % pair for pair in (('subtype_opclass', opclass), ('collation', collation),
                                      ('subtype_diff', difference)) if pair[1] is not None]
    return _section('TYPE', schema, name, owner, ['CREATE TYPE %s AS RANGE (' % qualified] + [
        '    %s%s' % (option, ',' if i < len(options) - 1 else '')
        for i, option in enumerate(options)] + [
        ');', '', '', 'ALTER TYPE %s OWNER TO %s;' % (qualified, quoted_owner), '']), \
        types_written, _comments(schema, owner, 'TYPE', quoted_name, qualified, comment), written


# A view, a materialized view or a composite type as pg_dump writes it, with
# the dumped objects it depends on, its comments, and whether pg_dump writes
# nothing more: no options, ACL, rules of its own, column defaults or indexes.
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
                     CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE'
                                   ELSE 'FUNCTION' END
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
       (c.reloptions IS NULL OR c.relkind = 'v') AND NOT c.relhasindex
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_attrdef WHERE adrelid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = c.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_class'::regclass
                          AND objid = c.oid AND deptype IN ('e', 'x'))
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
                          AND t.typnamespace <> 'pg_catalog'::regnamespace
                          AND t.typtype NOT IN ('d', 'e')),
       quote_ident(c.relname), ''' + acl_items('c.relacl', 'c.relowner') + ''',
       (SELECT json_agg(DISTINCT json_build_array(
                CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, tn.nspname, t.typname,
                false)::text)
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          JOIN pg_namespace tn ON tn.oid = t.typnamespace
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND t.typtype IN ('d', 'e')
           AND t.typnamespace <> 'pg_catalog'::regnamespace),
       (SELECT description FROM pg_description
         WHERE objsubid = 0 AND CASE c.relkind WHEN 'c' THEN
               objoid = c.reltype AND classoid = 'pg_type'::regclass
               ELSE objoid = c.oid AND classoid = 'pg_class'::regclass END),
       (SELECT json_agg(json_build_array(quote_ident(a.attname), d.description)
                        ORDER BY a.attnum)
          FROM pg_description d JOIN pg_attribute a
            ON a.attrelid = d.objoid AND a.attnum = d.objsubid
         WHERE d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid > 0),
       (SELECT count(*) FROM pg_description WHERE objoid = c.reltype
           AND classoid = 'pg_type'::regclass AND age(xmin) <= 0),
       array_remove(array_remove(c.reloptions, 'check_option=local'), 'check_option=cascaded'),
       CASE WHEN 'check_option=local' = ANY (c.reloptions) THEN 'LOCAL'
            WHEN 'check_option=cascaded' = ANY (c.reloptions) THEN 'CASCADED' END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = %s::oid
'''
VIEW_KINDS = {'v': 'VIEW', 'm': 'MATERIALIZED VIEW'}


def _render_relation(row, server_version):
    """(section, the sections it needs, its ACL, its comments, comments written on its
    type) of a view, materialized view or composite type; None when pg_dump would
    write more than this does."""
    (kind, schema, name, qualified, owner, quoted_owner, definition, columns, needs,
     plain, quoted_name, acl, types, comment, column_comments, written, options,
     check_option) = row
    grants = _acl('TABLE', qualified, quoted_owner, acl,
                  default_acl('TABLE', quoted_owner, server_version))
    if not plain or grants is None or kind not in ('v', 'm', 'c') or (kind == 'c' and grants):
        return None
    acl = (('ACL', schema, 'TABLE %s' % quoted_name),
           _section('ACL', schema, 'TABLE %s' % quoted_name, owner, grants + ['', ''])
           if grants else None)
    # What it reads, and the domains and enums of its columns, come before it.
    needs = [tuple(json_need) for json_need in map(json.loads, (needs or []) + (types or []))]
    if kind == 'c':
        if not all(same_collation for _, _, same_collation in columns or ()):
            return None
        body = ['CREATE TYPE %s AS (' % qualified] + [
            '\t%s %s%s' % (column, type_name, ',' if i < len(columns) - 1 else '')
            for i, (column, type_name, _) in enumerate(columns or ())] + [');']
        return _section('TYPE', schema, name, owner, body + [
            '', '', 'ALTER TYPE %s OWNER TO %s;' % (qualified, quoted_owner), '']), needs, \
            None, _comments(schema, owner, 'TYPE', quoted_name, qualified, comment,
                            column_comments), written
    keyword = VIEW_KINDS[kind]
    definition = definition.rstrip().rstrip(';')
    # A view's options as pg_dump writes them: name='value', the check option apart.
    pairs = [option.partition('=') for option in options or ()]
    head = 'CREATE %s %s' % (keyword, qualified)
    if pairs:
        head += ' WITH (%s)' % ', '.join('%s=%s' % (_identifier(option_name), _literal(value))
                                         for option_name, _, value in pairs)
    tail = '\n  WITH NO DATA' if kind == 'm' else (
        '\n  WITH %s CHECK OPTION' % check_option if check_option else '')
    body = ('%s AS\n%s%s;' % (head, definition, tail)).split('\n')
    return _section(keyword, schema, name, owner, body + [
        '', '', 'ALTER %s %s OWNER TO %s;' % (keyword, qualified, quoted_owner), '']), needs, \
        acl, _comments(schema, owner, keyword, quoted_name, qualified, comment,
                       column_comments), written

"""Functions and procedures, with their comments and grants, as pg_dump writes them.
"""
import json

from .grants import _acl, acl_items, default_acl
from .snapshot import (ROUTINE_ARGUMENTS, ROUTINE_TAG, TYPES_OWN, _identifier, _literal,
                       _section)


# The types (``t``) a routine ``p`` takes or returns, an array standing for
# its element type.
USED_TYPES = '''pg_type a
             JOIN pg_type t ON t.oid = CASE WHEN a.typcategory = 'A' AND a.typelem <> 0
                                            THEN a.typelem ELSE a.oid END
            WHERE a.oid = ANY (array_append(
                  coalesce(p.proallargtypes, p.proargtypes::oid[]), p.prorettype))'''


# An ordinary aggregate with no more than a state function and type, an
# initial state, a final and a combine function (each function named by
# regproc, as pg_dump's search path has it), of a built-in state type.
PLAIN_AGGREGATE = '''
SELECT 1 FROM pg_aggregate a JOIN pg_type st ON st.oid = a.aggtranstype
 WHERE a.aggfnoid = p.oid AND a.aggkind = 'n' AND a.aggtransspace = 0
   AND NOT a.aggfinalextra AND a.aggfinalmodify = 'r' AND a.aggserialfn = 0
   AND a.aggdeserialfn = 0 AND a.aggmtransfn = 0 AND a.aggminvtransfn = 0
   AND a.aggmtranstype = 0 AND a.aggmfinalfn = 0 AND a.aggminitval IS NULL
   AND a.aggsortop = 0 AND st.typnamespace = 'pg_catalog'::regnamespace'''


# A function, procedure or aggregate as pg_dump writes it, and whether it writes nothing
# more than this renders: no SUPPORT or TRANSFORM, not C or internal, not an
# extension's, and nothing that pg_dump's dependency sort would put after it
# but tables and views whose row types it takes or returns: its other types
# built in, enums, composite types or domains of built-in types whose checks
# call no function of the schema (all of them sort before functions), and a
# SQL-standard body that reads nothing of the schema.  Those tables and
# views are its needs (kind, schema, name, whether pg_dump may move it up:
# a plain table that calls no function of the schema).
ROUTINE = '''
SELECT n.nspname, ''' + ROUTINE_TAG + ''',
       p.prokind, quote_ident(n.nspname) || '.' || quote_ident(p.proname),
       pg_get_function_arguments(p.oid), pg_get_function_identity_arguments(p.oid),
       pg_get_function_result(p.oid), quote_ident(l.lanname), p.provolatile, p.proisstrict,
       p.prosecdef, p.proleakproof, p.procost::text, p.prorows::text, p.proretset,
       p.proparallel, p.prosrc, pg_get_userbyid(p.proowner),
       quote_ident(pg_get_userbyid(p.proowner)),
       (p.prokind IN ('f', 'p') AND l.lanname NOT IN ('c', 'internal')
        OR p.prokind = 'a' AND EXISTS (''' + PLAIN_AGGREGATE + '''))
       AND p.prosupport = 0 AND p.protrftypes IS NULL
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE p.prosqlbody IS NOT NULL AND d.classid = 'pg_proc'::regclass
                          AND d.objid = p.oid AND d.deptype = 'n' AND d.refobjid >= 16384
                          AND d.refclassid <> 'pg_type'::regclass)
       AND NOT EXISTS (SELECT 1 FROM pg_seclabel WHERE objoid = p.oid)
       AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_proc'::regclass
                          AND objid = p.oid AND deptype IN ('e', 'x'))
       AND NOT EXISTS (
           SELECT 1 FROM ''' + USED_TYPES + '''
              AND t.typnamespace <> 'pg_catalog'::regnamespace
              AND NOT (t.typtype = 'e'
                       OR (t.typtype = 'c' AND EXISTS (
                               SELECT 1 FROM pg_class r WHERE r.oid = t.typrelid
                                  AND r.relkind IN ('c', 'r', 'p', 'v', 'm', 'f')))
                       OR (t.typtype = 'd' AND EXISTS (
                               SELECT 1 FROM pg_type b WHERE b.oid = t.typbasetype
                                  AND b.typnamespace = 'pg_catalog'::regnamespace)
                           AND NOT EXISTS (
                               SELECT 1 FROM pg_constraint k JOIN pg_depend d
                                 ON d.classid = 'pg_constraint'::regclass AND d.objid = k.oid
                                WHERE k.contypid = t.oid AND d.refclassid = 'pg_proc'::regclass
                                  AND d.refobjid >= 16384)))),
       quote_ident(p.proname), ''' + acl_items('p.proacl', 'p.proowner') + ''',
       (SELECT description FROM pg_description WHERE objoid = p.oid
           AND classoid = 'pg_proc'::regclass AND objsubid = 0),
       (SELECT count(*) FROM pg_description WHERE objoid = p.oid
           AND classoid = 'pg_proc'::regclass AND age(xmin) <= 0),
       p.proconfig, pg_get_function_sqlbody(p.oid), ''' + ROUTINE_ARGUMENTS + ''',
       (SELECT json_agg(DISTINCT json_build_array(
                CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                               WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                rn.nspname, r.relname,
                r.relkind = 'r' AND NOT r.relispartition
                AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = r.oid)
                AND NOT EXISTS (
                    SELECT 1 FROM pg_depend d
                     WHERE d.refclassid = 'pg_proc'::regclass AND d.refobjid >= 16384
                       AND (d.classid = 'pg_class'::regclass AND d.objid = r.oid
                            OR d.classid = 'pg_constraint'::regclass AND d.objid IN (
                                   SELECT oid FROM pg_constraint WHERE conrelid = r.oid)
                            OR d.classid = 'pg_attrdef'::regclass AND d.objid IN (
                                   SELECT oid FROM pg_attrdef WHERE adrelid = r.oid))))::text)
          FROM pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace
         WHERE r.relkind <> 'c' AND r.oid IN (SELECT t.typrelid FROM ''' + USED_TYPES + ''')),
       CASE WHEN p.prokind = 'a' THEN (
            SELECT json_build_array(a.aggtransfn::text, format_type(a.aggtranstype, NULL),
                                    a.agginitval,
                                    CASE WHEN a.aggfinalfn <> 0 THEN a.aggfinalfn::text END,
                                    CASE WHEN a.aggcombinefn <> 0 THEN a.aggcombinefn::text END)
              FROM pg_aggregate a WHERE a.aggfnoid = p.oid) END
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = %s::oid
'''
# The routines this transaction wrote, and whether each is a type's own.
OURS_ROUTINES = '''
SELECT p.oid, ''' + TYPES_OWN.format(catalog='pg_proc', oid='p.oid') + '''
  FROM pg_proc p WHERE age(p.xmin) <= 0 ORDER BY 1
'''
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
    rows = reader.execute(cursor, OURS_ROUTINES)
    if not rows or len(rows) > inserted + updated:
        return None
    return _render_routines(reader, cursor, [oid for oid, of_type in rows if not of_type])


def _render_routines(reader, cursor, oids):
    """(oid, section, ACL, comment, comments written, needs) of each routine; None if
    one is not plain."""
    found = []
    for oid in oids:
        rendered = _routine(reader.execute(cursor, ROUTINE, oid)[0],
                            cursor.connection.server_version)
        if rendered is None:
            return None
        found.append((oid,) + rendered)
    return found


# Settings whose value is a list, each item quoted apart (pg_dump's
# variable_is_guc_list_quote()).
LIST_SETTINGS = {'local_preload_libraries', 'search_path', 'session_preload_libraries',
                 'shared_preload_libraries', 'temp_tablespaces', 'unix_socket_directories'}


def _guc_list(value):
    """The items of a list setting as the server keeps it: comma-separated, each
    double-quoted when it needs to be."""
    items, i = [], 0
    while True:
        while i < len(value) and value[i] == ' ':
            i += 1
        if i < len(value) and value[i] == '"':
            item, i = [], i + 1
            while i < len(value) and not (value[i] == '"' and value[i + 1:i + 2] != '"'):
                item.append(value[i])
                i += 2 if value[i] == '"' else 1
            items.append(''.join(item))
            i += 1
        else:
            end = value.find(',', i)
            end = len(value) if end < 0 else end
            items.append(value[i:end].rstrip())
            i = end
        while i < len(value) and value[i] == ' ':
            i += 1
        if i >= len(value) or value[i] != ',':
            return items
        i += 1


def _dollar_quoted(text):
    """pg_dump's dollar quoting: the shortest $_..$ tag that is not in the text."""
    tag = '$'
    while tag in text:
        tag += '_'
    return tag + '$' + text + tag + '$'


def _routine(row, server_version):
    """(section, (ACL key, ACL section or None), its COMMENT section or None, comments
    written, the sections it needs) of a function, procedure or aggregate; None
    if pg_dump would write more."""
    (schema, tag, kind, qualified, arguments, identity, result, language, volatility, strict,
     definer, leakproof, cost, rows, returns_set, parallel, source, owner, quoted_owner,
     plain, quoted_name, acl, comment, comments_written, settings, sql_body,
     name, count, types, needs, aggregate) = row
    keyword = 'PROCEDURE' if kind == 'p' else 'FUNCTION'
    # A grant is on the FUNCTION, an aggregate too (of no arguments: "name()").
    grants = _acl(keyword, '%s(%s)' % (qualified, identity), quoted_owner, acl,
                  default_acl(keyword, quoted_owner, server_version))
    if not plain or grants is None or (aggregate is not None and needs):
        return None
    acl_name = '%s %s(%s)' % (keyword, quoted_name, identity)
    granted = _section('ACL', schema, acl_name, owner, grants + ['', '']) if grants else None
    if aggregate is not None:
        # Elsewhere an aggregate of no arguments is "name(*)".
        keyword, identity = 'AGGREGATE', arguments or '*'
        body = _aggregate(qualified, identity, parallel, *aggregate)
    else:
        body = _function(keyword, qualified, arguments, result, language, volatility, strict,
                         definer, leakproof, cost, rows, returns_set, parallel, source,
                         settings, sql_body)
    signature = '%s %s(%s)' % (keyword, quoted_name, identity)
    remark = None if comment is None else _section('COMMENT', schema, signature, owner, (
        'COMMENT ON %s %s(%s) IS %s;' % (keyword, qualified, identity, _literal(comment))
    ).split('\n') + ['', ''])
    section = _section(keyword, schema, tag, owner, body.split('\n') + [
        '', '', 'ALTER %s %s(%s) OWNER TO %s;' % (keyword, qualified, identity, quoted_owner),
        ''])
    section.sorted_by(tag, (name, count, types))
    return section, (('ACL', schema, acl_name), granted), remark, comments_written, sorted(
        tuple(json.loads(need)) for need in needs or ())


# How pg_dump spells an aggregate's PARALLEL option (unsafe, the default, not at all).
PARALLEL = {'s': 'safe', 'r': 'restricted'}


def _aggregate(qualified, arguments, parallel, state_function, state_type, initial, final,
               combine):
    """CREATE AGGREGATE as pg_dump writes it, its options in pg_dump's order."""
    options = ['SFUNC = %s' % state_function, 'STYPE = %s' % state_type]
    if initial is not None:
        options.append('INITCOND = %s' % _literal(initial))
    if final is not None:
        options.append('FINALFUNC = %s' % final)
    if combine is not None:
        options.append('COMBINEFUNC = %s' % combine)
    if parallel in PARALLEL:
        options.append('PARALLEL = %s' % PARALLEL[parallel])
    return 'CREATE AGGREGATE %s(%s) (\n%s\n);' % (
        qualified, arguments, ',\n'.join('    ' + option for option in options))



def _function(keyword, qualified, arguments, result, language, volatility, strict, definer,
              leakproof, cost, rows, returns_set, parallel, source, settings, sql_body):
    """CREATE FUNCTION or PROCEDURE as pg_dump writes it."""
    head = 'CREATE %s %s(%s)' % (keyword, qualified, arguments)
    if keyword != 'PROCEDURE':
        head += ' RETURNS %s' % result
    options = '    LANGUAGE %s' % language
    options += {'i': ' IMMUTABLE', 's': ' STABLE'}.get(volatility, '')
    options += ' STRICT' if strict else ''
    options += ' SECURITY DEFINER' if definer else ''
    options += ' LEAKPROOF' if leakproof else ''
    options += ' COST %s' % cost if cost not in ('0', '100') else ''
    options += ' ROWS %s' % rows if returns_set and rows not in ('0', '1000') else ''
    options += {'s': ' PARALLEL SAFE', 'r': ' PARALLEL RESTRICTED'}.get(parallel, '')
    for setting in settings or ():
        name, _, value = setting.partition('=')
        options += '\n    SET %s TO %s' % (_identifier(name), ', '.join(
            _literal(item) for item in _guc_list(value)) if name.lower() in LIST_SETTINGS
            else _literal(value))
    return '%s\n%s\n    %s' % (head, options, sql_body + ';' if sql_body is not None
                                 else 'AS %s;' % _dollar_quoted(source))

"""A migration that creates extensions: pg_dump shows each as one CREATE
EXTENSION line and its comment, and none of the objects its script made.
"""
from .catalogs import DOMAIN_CONSTRAINTS, EXTENSION_DEPENDENCIES
from .snapshot import _literal, _section


# The extensions this transaction created.
NEW_EXTENSIONS = '''
SELECT e.oid, e.extname, quote_ident(e.extname), quote_ident(n.nspname),
       (SELECT description FROM pg_description
         WHERE objoid = e.oid AND classoid = 'pg_extension'::regclass)
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE age(e.xmin) <= 0 ORDER BY e.extname
'''


# The pg_depend rows naming an extension that this transaction wrote, and those
# of them that the new extensions account for: their members, and
# their own dependencies on the extensions they require.
NAMED_BY_NEW = '''
SELECT count(*), count(*) FILTER (
       WHERE (deptype = 'e' AND refobjid = ANY(%s::oid[]))
          OR (classid = 'pg_extension'::regclass AND objid = ANY(%s::oid[])))
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND age(xmin) <= 0
'''


# Whether the object (classid, objid) belongs to one of the extensions $1: a
# member, or what goes with a member (an array type, a table's index, an
# operator family's operators).
MEMBER = '''EXISTS (SELECT 1 FROM pg_depend d
 WHERE d.classid = {classid} AND d.objid = {objid}
   AND ((d.deptype = 'e' AND d.refclassid = 'pg_extension'::regclass AND d.refobjid = ANY({exts}))
        OR (d.deptype IN ('a', 'i') AND EXISTS (
            SELECT 1 FROM pg_depend e WHERE e.classid = d.refclassid AND e.objid = d.refobjid
               AND e.deptype = 'e' AND e.refclassid = 'pg_extension'::regclass
               AND e.refobjid = ANY({exts})))))'''


# Catalogs whose rows are objects of their own, by oid.
OBJECTS = {'pg_class', 'pg_type', 'pg_proc', 'pg_namespace', 'pg_operator', 'pg_opclass',
           'pg_opfamily', 'pg_amop', 'pg_amproc', 'pg_cast', 'pg_collation', 'pg_conversion',
           'pg_ts_config', 'pg_ts_dict', 'pg_ts_parser', 'pg_ts_template', 'pg_constraint',
           'pg_trigger', 'pg_rewrite', 'pg_attrdef', 'pg_policy', 'pg_language',
           'pg_foreign_data_wrapper', 'pg_foreign_server', 'pg_transform', 'pg_am',
           'pg_event_trigger', 'pg_statistic_ext'}
# Catalogs whose rows belong to an object of another: catalog, column.
BELONGING = {'pg_attribute': ('pg_class', 'attrelid'), 'pg_index': ('pg_class', 'indexrelid'),
             'pg_aggregate': ('pg_proc', 'aggfnoid'), 'pg_range': ('pg_type', 'rngtypid'),
             'pg_sequence': ('pg_class', 'seqrelid'), 'pg_enum': ('pg_type', 'enumtypid'),
             'pg_ts_config_map': ('pg_ts_config', 'mapcfg')}
# Catalogs pg_dump does not show, or shows only through the rest (domain
# constraints are pg_constraint rows, checked there).
UNSEEN = {'pg_extension', 'pg_depend', 'pg_shdepend', 'pg_init_privs', 'pg_statistic',
          DOMAIN_CONSTRAINTS, EXTENSION_DEPENDENCIES}


def _others(delta, extensions):
    """One query: how many rows the migration wrote that belong to none of these new
    extensions, per catalog; and the catalogs it wrote to that are not known here."""
    exts = 'ARRAY[%s]::oid[]' % ', '.join(str(int(oid)) for oid in extensions)
    parts, unknown = [], []
    for catalog in sorted(delta):
        if catalog in OBJECTS:
            member = MEMBER.format(classid="'%s'::regclass" % catalog, objid='x.oid', exts=exts)
        elif catalog in BELONGING:
            owner, column = BELONGING[catalog]
            member = MEMBER.format(classid="'%s'::regclass" % owner, objid='x.' + column,
                                   exts=exts)
        elif catalog == 'pg_description':
            member = "((x.classoid = 'pg_extension'::regclass AND x.objoid = ANY(%s)) OR %s)" % (
                exts, MEMBER.format(classid='x.classoid', objid='x.objoid', exts=exts))
        elif catalog in UNSEEN:
            continue
        else:
            unknown.append(catalog)
            continue
        parts.append("SELECT '%s', count(*) FROM pg_catalog.%s x WHERE age(x.xmin) <= 0 "
                     'AND NOT %s' % (catalog, catalog, member))
    return ' UNION ALL '.join(parts), unknown


def render_extensions(cursor, snapshot, delta):
    """Put the extensions the migration created into the snapshot; the undo log, or
    None (``snapshot.why``) when it also did anything else, or altered one."""
    inserted, _, deleted = delta['pg_extension']
    cursor.execute(NEW_EXTENSIONS)
    rows = cursor.fetchall()
    # Rows it wrote and then updated are still its own; one more is an older one.
    if deleted or len(rows) != inserted:
        snapshot.why = 'it altered or dropped an extension'
        return None
    extensions = [oid for oid, *_ in rows]
    cursor.execute(NAMED_BY_NEW, (extensions, extensions))
    written, theirs = cursor.fetchone()
    if written != theirs or theirs != delta.get(EXTENSION_DEPENDENCIES, (0, 0, 0))[0]:
        snapshot.why = ('it created an extension and changed what depends on one (DEPENDS ON '
                        'EXTENSION, or ALTER EXTENSION ADD or DROP)')
        return None
    query, unknown = _others(delta, extensions)
    if unknown:
        snapshot.why = 'it created an extension and wrote to %s, which this path does not ' \
                       'know' % ', '.join(unknown)
        return None
    if query:
        cursor.execute(query)
        others = [catalog for catalog, count in cursor.fetchall() if count]
        if others:
            snapshot.why = 'it created an extension and changed more (%s)' % ', '.join(others)
            return None
    sections = []
    for _, name, quoted, schema, comment in rows:
        sections.append(_section('EXTENSION', '-', name, '-', [
            'CREATE EXTENSION IF NOT EXISTS %s WITH SCHEMA %s;' % (quoted, schema), '', '']))
        if comment is not None:
            sections.append(_section('COMMENT', '-', 'EXTENSION %s' % quoted, '', (
                'COMMENT ON EXTENSION %s IS %s;' % (quoted, _literal(comment))).split('\n') + [
                '', '']))
    return snapshot.put_sections(sections)

"""Extended statistics (``CREATE STATISTICS``) as pg_dump writes them."""
from .snapshot import _section
from .types import _COMMENT, _comments


# The extended statistics this transaction wrote (created, altered, or owned
# by a new role); the scan is whole, pg_statistic_ext being small.
OURS_STATISTICS = 'SELECT oid FROM pg_statistic_ext WHERE age(xmin) <= 0 ORDER BY oid'


# One statistics object as pg_dump writes it, whether it writes nothing more
# (not an extension's), and its comment.
STATISTICS = '''
SELECT n.nspname, s.stxname, quote_ident(n.nspname) || '.' || quote_ident(s.stxname),
       pg_get_userbyid(s.stxowner), quote_ident(pg_get_userbyid(s.stxowner)),
       pg_get_statisticsobjdef(s.oid), s.stxstattarget,
       NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_statistic_ext'::regclass
                      AND objid = s.oid AND deptype = 'e'),
       ''' + _COMMENT.format(oid='s.oid', catalog='pg_statistic_ext') + ''', quote_ident(s.stxname)
  FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
 WHERE s.oid = %s::oid
'''


def _statistics(row):
    """(the STATISTICS section, its comments, comments written); None first if not plain.

    pg_dump sets a statistics target only when one was set (PostgreSQL 17
    keeps NULL for the default, older servers -1)."""
    (schema, name, qualified, owner, quoted_owner, definition, target, plain, comment, written,
     quoted_name) = row
    if not plain:
        return None, [], 0
    body = ['%s;' % definition]
    if target is not None and target >= 0:
        body.append('ALTER STATISTICS %s SET STATISTICS %d;' % (qualified, target))
    body += ['', '', 'ALTER STATISTICS %s OWNER TO %s;' % (qualified, quoted_owner), '']
    return _section('STATISTICS', schema, name, owner, body), _comments(
        schema, owner, 'STATISTICS', quoted_name, qualified, comment), written

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

A table with what it does not render (a rule, inheritance, a NOT VALID
constraint...) is left to ``pg_dump --table`` after the migration commits
(:mod:`.partial`).  Anything else -- a catalog it does not know, a rename,
a place in the dump it cannot be sure of -- makes :func:`render` return
None, and the caller runs pg_dump for that migration.  A non-atomic
migration, which commits as it goes, is read after it committed
(:mod:`.committed`).  The output is never different from pg_dump's; at
worst it is as slow.
"""
from .catalogs import ROW_COUNTS, UNSHOWN, CatalogReader, touched
from .committed import horizon, render_committed
from .partial import fill, patterns
from .render import render
from .schema_dump import confined, fill_schema, pattern
from .snapshot import Snapshot, relations

__all__ = ['ROW_COUNTS', 'UNSHOWN', 'CatalogReader', 'Snapshot', 'confined', 'fill',
           'fill_schema', 'horizon', 'pattern', 'patterns', 'relations', 'render',
           'render_committed', 'touched']

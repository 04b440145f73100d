"""dbmigrator's own tables, as found: absent, dbmigrator's, or someone else's.

A table of the same name made by another tool (or by hand) must be named as
such before anything runs, not met as ``UndefinedColumn`` half-way.
"""
from .errors import SettingsError

_COLUMNS = ('SELECT array_agg(attname::text) FROM pg_attribute'
            ' WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped')


def found(cursor, table, columns, what, advice):
    """True when ``table`` exists with ``columns``, False when absent; else refuse."""
    cursor.execute(_COLUMNS, (table,))
    present = cursor.fetchone()[0]
    if present is None:
        return False
    missing = [c for c in columns if c not in present]
    if missing:
        raise SettingsError('%s exists but is not %s (it has no column%s %s): %s' % (
            table, what, 's' if len(missing) > 1 else '', ', '.join(missing), advice))
    return True

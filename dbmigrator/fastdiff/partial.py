"""Tables the fast path does not render (a rule, inheritance, a NOT VALID
constraint, storage options...), from ``pg_dump --table`` after the migration
committed: a dump of those tables alone, each of its sections put where the
whole dump has it.  It costs a fraction of a whole dump on a large schema:
pg_dump still reads the catalogs' lists, but writes and reads back only these.
"""
from .snapshot import ATTACHED, LAST_RANK, NAMED_ON_TABLE, Snapshot, _trailing_sets


def patterns(tables):
    """``--table`` patterns that name exactly these tables: within double quotes
    pg_dump takes every character literally."""
    return ['"%s"."%s"' % (table.schema.replace('"', '""'), table.name.replace('"', '""'))
            for table in tables]


def fill(snapshot, tables, lines):
    """Put the tables of a ``pg_dump --table`` dump (``lines``) into the snapshot; the
    undo log, or None with ``snapshot.why`` (then the snapshot is as it was)."""
    owners = _owners(tables)
    for table in tables:
        table.sections = []
    owner = None
    for section in Snapshot(lines).sections:
        if section.type == 'COMMENT':
            if owner is None:
                return _refuse(snapshot, section)
            owner.sections.append(section)
            continue
        owner, sort_name = _owner(owners, tables, section)
        if owner is None or (section.rank is None and section.type not in ATTACHED):
            return _refuse(snapshot, section)
        tail = _trailing_sets(section.lines)
        if tail:  # they belong to the first table of this dump, not of the whole one
            section.lines = section.lines[:-len(tail)]
        section.sorted_by(sort_name)
        owner.sections.append(section)
    for table in tables:
        attached = {(s.type, s.name) for s in table.sections if s.type.endswith(' ATTACH')}
        if any(snapshot.position(kind, table.schema, name) is not None
               and (kind, name) not in attached
               for kind, name in [('TABLE ATTACH', table.name)] + [
                   ('INDEX ATTACH', name) for _, name in table.indexes]):
            snapshot.why = 'it detached %s, whose indexes pg_dump then puts elsewhere' % (
                table.qualified)
            return None
        if not any(section.type == 'TABLE' for section in table.sections):
            snapshot.why = 'pg_dump --table did not show %s' % table.qualified
            return None
        keys = [s.key for s in table.sections if s.type not in ATTACHED and s.rank < LAST_RANK]
        if any(a >= b for a, b in zip(keys, keys[1:])):
            snapshot.why = 'pg_dump orders the sections of %s by more than their names' % (
                table.qualified)
            return None
    owed = snapshot.owed
    log = snapshot.edit(tables)
    if log is None:
        return None
    why = _misplaced(snapshot, tables) or (
        snapshot.removed('COMMENT') != owed and
        'it took away a comment on something other than the tables dumped')
    if why:
        snapshot.undo(log)
        snapshot.why = why
        return None
    return log


def _misplaced(snapshot, tables):
    """Why pg_dump's dependency sort would not put these tables where their names
    did: a parent table after its child, a partitioned table's index after a
    partition's, or a sequence before its table."""
    for table in tables:
        mine = snapshot.position('TABLE', table.schema, table.name)
        for kind, schema, name in table.parents:
            theirs = snapshot.position(kind, schema, name)
            if theirs is None or theirs > mine:
                return '%s inherits from a table pg_dump must put first' % table.qualified
        for index, parent in table.index_parents.items():
            theirs = snapshot.position('INDEX', table.schema, parent)
            if theirs is None or theirs > snapshot.position('INDEX', table.schema, index):
                return 'the index %s comes after that of a partition of its table' % parent
        for schema, name in table.sequence_names:
            theirs = snapshot.position('SEQUENCE', schema, name)
            if theirs is not None and theirs < mine:
                return 'a sequence of %s sorts before it, which pg_dump does not do' % (
                    table.qualified)
    return None


def _owners(tables):
    """Section key -> the table it belongs to, for sections named apart from their table."""
    owners = {}
    for table in tables:
        owners[('TABLE', table.schema, table.name)] = table
        owners[('ROW SECURITY', table.schema, table.name)] = table
        owners[('TABLE ATTACH', table.schema, table.name)] = table
        owners.update(((kind, table.schema, name), table) for _, name in table.indexes
                      for kind in ('INDEX', 'INDEX ATTACH'))
        for schema, name in table.sequence_names:
            owners[('SEQUENCE', schema, name)] = table
            owners[('SEQUENCE OWNED BY', schema, name)] = table
        owners.update((key, table) for key in table.acl_keys)
    return owners


def _owner(owners, tables, section):
    """The table a section belongs to, and the name pg_dump sorts it by."""
    owner = owners.get((section.type, section.schema, section.name))
    if owner is not None or section.type not in NAMED_ON_TABLE + ('DEFAULT',):
        return owner, section.name
    found = [table for table in tables if table.schema == section.schema
             and section.name.startswith(table.name + ' ')]
    if len(found) != 1:
        return None, section.name
    return found[0], (section.name if section.type == 'DEFAULT'
                      else section.name[len(found[0].name) + 1:])


def _refuse(snapshot, section):
    snapshot.why = 'pg_dump --table wrote %s %s, which this path does not place' % (
        section.type, section.name)
    return None

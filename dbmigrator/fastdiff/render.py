"""The fast path's entry: edit the snapshot to what one migration changed, or say
why pg_dump must show it.
"""
from .catalogs import (DOMAIN_CONSTRAINTS, OBJECT_LOCKS, ROUTINE_READERS, TABLE_READERS,
                       TYPE_READERS, _dropped, _locate, _scan, gone, read_elsewhere,
                       unsupported)
from .extensions import render_extensions
from .routines import OURS_ROUTINE_COMMENTS, _render_routines, _routines
from .statistics import OURS_STATISTICS, STATISTICS, _statistics
from .tables import SEQUENCE, _render_table, _sequence_of_its_own
from .types import (DOMAIN, DOMAINS_RECOUNTED, ENUM, ENUMS_IN_USE, OURS_ENUMS,
                    OURS_OBJECT_COMMENTS, OURS_SCHEMAS, OURS_TYPES, RANGE, RELATION, SCHEMA,
                    TYPE_CASTS, _domain, _enum, _range, _render_relation, _schema)


def render(reader, cursor, snapshot, delta, read=None):
    """Edit the snapshot to the migration whose catalog writes are ``delta``: the undo
    log of :meth:`Snapshot.edit`, or None for pg_dump.  ``read``: what
    :meth:`CatalogReader.step` read with ``delta``, when the caller has it.

    Runs on the migration's own cursor, inside its transaction, after its
    code and after :meth:`CatalogReader.plan_with_indexes`: it sees exactly
    what the migration changed.  It only reads; the caller rolls back to a
    savepoint taken before, which also undoes the settings.
    """
    if not snapshot.begin_render():
        return None
    if 'pg_extension' in delta:
        return render_extensions(cursor, snapshot, delta)
    snapshot.why = unsupported(delta)
    if snapshot.why:
        return None
    # A cast dropped leaves no row: with none in the dump, it was a type's own.
    if 'pg_cast' in delta and (delta['pg_cast'][2] and snapshot.has('CAST') or (
            reader.execute(cursor, TYPE_CASTS)[0][0])):
        snapshot.why = 'it made or dropped a cast, which this path does not render'
        return None
    routines = []
    if 'pg_proc' in delta:
        routines = _routines(reader, cursor, delta['pg_proc'])
        if routines is None:
            snapshot.why = 'it made a function or procedure this path does not render'
            return None
    objects, found, owners = [], {}, {}
    found['pg_description'] = sum(r[4] for r in routines)
    domains = 0  # how many more domain constraints there are, by what was rendered

    def add(catalog, oid, kind=None, relid=None):
        """Render a schema or a type into ``objects``; False if it is not plain."""
        nonlocal domains
        made = _object(reader, cursor, catalog, oid, kind, relid)
        if made is None:
            return False
        entry, explains = made
        objects.append(entry)
        for name, count in explains.items():
            found[name] = found.get(name, 0) + count
        if entry[-1] is not None:
            domains += entry[-1] - snapshot.relations.domain_constraints.get(oid, 0)
        return True

    if any(delta.get('pg_namespace', (0, 0, 0))[:2]):
        for (oid,) in reader.execute(cursor, OURS_SCHEMAS):
            if not add('pg_namespace', oid):
                snapshot.why = 'it changed a schema this path does not render'
                return None
    if 'pg_enum' in delta:
        if delta['pg_enum'][1] and reader.execute(cursor, ENUMS_IN_USE)[0][0]:
            snapshot.why = 'it renamed a value of an enum type that something uses'
            return None
        for oid in [oid for (oid,) in reader.execute(cursor, OURS_ENUMS)]:
            if not add('pg_type', oid, 'e'):
                snapshot.why = 'it changed an enum type this path does not render'
                return None
    if any(delta.get('pg_statistic_ext', (0, 0, 0))[:2]):
        for (oid,) in reader.execute(cursor, OURS_STATISTICS):
            if not add('pg_statistic_ext', oid):
                snapshot.why = 'it changed extended statistics this path does not render'
                return None
    changed = _locate(reader, cursor, delta, dict(found), read, owners)
    if changed is None and ('pg_type' in delta or 'pg_constraint' in delta):
        # Types no relation stands for: new domains, and enums written without
        # labels (a new owner), found by a pass over pg_type.
        done = {ident for ident, *_ in objects}
        for oid, kind in reader.execute(cursor, OURS_TYPES):
            if ('pg_type', oid) not in done and not add('pg_type', oid, kind):
                snapshot.why = 'it changed a type this path does not render'
                return None
        if len(objects) > len(done):
            changed = _locate(reader, cursor, delta, dict(found), read, owners)
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
        # And on schemas and types (COMMENT ON TYPE locks no relation).
        done = {ident for ident, *_ in objects}
        commented = [row for row in reader.execute(cursor, OURS_OBJECT_COMMENTS)
                     if (row[0], row[1]) not in done]
        for catalog, oid, kind, relid in commented:
            if not add(catalog, oid, kind, relid):
                snapshot.why = ('it commented on a type, a schema or statistics this path '
                                'does not render')
                return None
        if more or commented:
            changed = _locate(reader, cursor, delta, dict(found), read, owners)
    if delta.get('pg_description', (0, 0, 0))[2]:
        # Comments taken away leave no row; COMMENT locked what they were on.
        # Those that pg_dump writes as this path does are rendered again.
        rendered_oids = {r[0] for r in routines}
        done = {ident for ident, *_ in objects}
        for catalog, oid, kind, relid in reader.execute(cursor, OBJECT_LOCKS):
            if catalog == 'pg_proc':
                if oid in snapshot.relations.routines and oid not in rendered_oids:
                    routines = routines + (_render_routines(reader, cursor, [oid]) or [])
            elif (catalog, oid) in snapshot.relations.objects and (catalog, oid) not in done:
                add(catalog, oid, kind, relid)
    if changed is None and 'pg_description' in delta:
        snapshot.why = 'it commented on something other than a table or what belongs to it'
        return None
    if changed is None:
        changed = _scan(cursor, delta)
        if changed is None:
            snapshot.why = 'it changed more than tables and their own sequences'
            return None
    if 'pg_depend' in delta and changed is not None:
        # OWNED BY writes only pg_depend: the tables of the sequences it may
        # have moved are rendered again, and a move between tables is pg_dump's.
        for sequence, (owner, kind) in owners.items():
            if sequence in snapshot.relations.known:
                if snapshot.relations.table_owning(sequence) != (
                        None if owner == sequence else owner):
                    snapshot.why = 'it changed which table owns a sequence'
                    return None
                if owner != sequence:
                    changed.setdefault(owner, kind)
    # Only a relation the dump has can have had readers before this migration.
    known = [oid for oid, kind in changed.items() if kind in ('r', 'p', 'm', 'v', 'c') and (
        oid in snapshot.relations.tables or ('pg_class', oid) in snapshot.relations.objects)]
    renamed = [column for column in read_elsewhere(reader, cursor, delta, known)
               if not snapshot.has_column(*column)]
    if renamed:
        snapshot.why = 'it renamed a column that a view, a function or another table reads'
        return None
    rendered, pending = [], []
    for oid, kind in sorted(changed.items()):
        if kind in ('r', 'p'):
            table = _render_table(reader, cursor, oid, read and read.tables.get(oid))
            if table is not None and table.sections is not None:
                rendered.append(table)
                continue
            if table is not None and snapshot.relations.tables.get(oid, (
                    table.schema, table.name)) == (table.schema, table.name) and (
                    table.parents or snapshot.position(
                        'TABLE ATTACH', table.schema, table.name) is None):
                pending.append(table)
                continue
        elif kind == 'S':
            made = _sequence_of_its_own(reader.execute(cursor, SEQUENCE, oid)[0],
                                        cursor.connection.server_version)
            if made is not None:
                objects.append((('pg_class', oid),) + made + (None,))
                continue
        else:
            made = _render_relation(reader.execute(cursor, RELATION, oid)[0],
                                    cursor.connection.server_version)
            if made is not None:
                objects.append((('pg_class', oid),) + made[:4] + (None,))
                continue
        snapshot.why = '%s has features not rendered here' % _name(cursor, oid)
        return None
    snapshot.why = _renamed_and_named(reader, cursor, snapshot.relations, rendered, objects,
                                      routines)
    if snapshot.why:
        return None
    dropped_routines = []
    if delta.get('pg_proc', (0, 0, 0))[2]:
        # The snapshot knows every routine the dump has; the others that went
        # were a type's own (a range's constructors) or made by the migration.
        dropped_routines = gone(reader, cursor, 'pg_proc', snapshot.relations.routines)
    dropped = _dropped(reader, cursor, snapshot.relations, delta, changed)
    if dropped is None:
        snapshot.why = 'it dropped a relation or a type this path does not know, or rewrote a table'
        return None
    domains -= sum(snapshot.relations.domain_constraints.get(key[1], 0)
                   for kind, key in dropped if kind == 'object' and key[0] == 'pg_type')
    if delta.get(DOMAIN_CONSTRAINTS, (0, 0, 0))[0] != domains:
        # A constraint dropped alone leaves no row, and ALTER DOMAIN locks
        # nothing: the domains whose constraints no longer number what the
        # dump had are rendered again.
        taken_out = {key for kind, key in dropped if kind == 'object'}
        done = {ident for ident, *_ in objects}
        counted = sorted((oid, n) for oid, n in snapshot.relations.domain_constraints.items()
                         if ('pg_type', oid) not in taken_out | done)
        recounted = reader.execute(cursor, DOMAINS_RECOUNTED, [oid for oid, _ in counted],
                                   [n for _, n in counted]) if counted else []
        if not all(add('pg_type', oid, 'd') for (oid,) in recounted) or (
                delta.get(DOMAIN_CONSTRAINTS, (0, 0, 0))[0] != domains):
            snapshot.why = 'it changed the constraints of a domain this path did not render'
            return None
    log = snapshot.edit(rendered, routines, objects, dropped_routines, dropped)
    # Comments written were all found on what was rendered; the deleted ones
    # must be the COMMENT sections that went, net of those that came (the
    # tables pg_dump --table shows take out and put in the rest).
    inserted, _, deleted = delta.get('pg_description', (0, 0, 0))
    if log is None:
        return None
    snapshot.owed = deleted - inserted - snapshot.removed('COMMENT')
    if snapshot.owed and not pending:
        snapshot.undo(log)
        snapshot.why = ('it took away a comment on something other than a table or what '
                        'belongs to it')
        return None
    if pending:
        snapshot.leave_pending(pending)
    return log


def _renamed_and_named(reader, cursor, relations, tables, objects, routines):
    """Why renamed (or moved) objects are pg_dump's to show: something else names
    them, whose text changes too; None when nothing does.  A renamed object
    is otherwise taken out of the dump and put in again."""
    def renamed(known, key, where):
        return known.get(key, where) != where

    def of(catalog):
        return [ident[1] for ident, section, *_ in objects if ident[0] == catalog and renamed(
            relations.objects, ident, (section.type, section.schema, section.name))]

    checks = [
        (TABLE_READERS, [table.oid for table in tables if renamed(
            relations.tables, table.oid, (table.schema, table.name))] + of('pg_class'),
         'it renamed a table or view that a view, a function or another table names'),
        (TYPE_READERS, of('pg_type'), 'it renamed a type that a column, a function or a view uses'),
        (ROUTINE_READERS, [oid for oid, section, *_ in routines if renamed(
            relations.routines, oid, (section.schema, section.name))],
         'it renamed a function that a trigger, a default, a check or a view calls')]
    for query, oids, why in checks:
        if oids and reader.execute(cursor, query, oids)[0][0]:
            return why
    return None


def _object(reader, cursor, catalog, oid, kind, relid):
    """A schema, an enum, a domain, a composite type or extended statistics: (its
    entry for :meth:`Snapshot.edit`, catalog name -> the rows it explains); None
    if pg_dump would write more than this renders."""
    needs, acl, explains, constraints = (), None, {}, None
    if catalog == 'pg_namespace':
        section, comments, explains['pg_description'] = _schema(
            reader.execute(cursor, SCHEMA, oid)[0])
    elif catalog == 'pg_statistic_ext':
        section, comments, explains['pg_description'] = _statistics(
            reader.execute(cursor, STATISTICS, oid)[0])
    elif kind == 'e':
        section, explains['pg_type'], comments, explains['pg_description'] = _enum(
            reader.execute(cursor, ENUM, oid)[0])
    elif kind == 'r':
        section, explains['pg_type'], comments, explains['pg_description'] = _range(
            reader.execute(cursor, RANGE, oid)[0])
    elif kind == 'd':
        (section, explains['pg_type'], explains['pg_constraint'], comments,
         explains['pg_description'], constraints) = _domain(
             reader.execute(cursor, DOMAIN, oid)[0])
    elif kind == 'c':
        made = _render_relation(reader.execute(cursor, RELATION, relid)[0],
                                cursor.connection.server_version)
        if made is None:
            return None
        section, needs, acl, comments, explains['pg_description'] = made
        catalog, oid = 'pg_class', relid
    else:
        return None
    if section is None:
        return None
    return ((catalog, oid), section, needs, acl, comments, constraints), explains


def _name(cursor, oid):
    cursor.execute('SELECT %s::oid::regclass::text', (oid,))
    return cursor.fetchone()[0]

"""Statements a run sends again and again, parsed and planned once per session.

Parsing and planning the few statements of each step (its lock, its row
check, its schema_migrations change, its history row) cost the server about
as much as running them.  A prepared statement lives in one server session,
and a transaction pooler hands the next transaction to whichever server
connection is free: behind one, statements go as they are.
"""
import itertools
import os
import re

_PLACEHOLDER = re.compile(r'%%|%s')


def _numbered(sql):
    """psycopg2's ``%s`` placeholders as PREPARE's ``$1, $2...``."""
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(lambda m: '%' if m.group() == '%%' else '$%d' % next(numbers), sql)


class Statements:
    """PREPAREs each SQL text at its first use, then EXECUTEs it.

    A statement that is already an EXECUTE goes as it is.  A PREPARE sent
    in a transaction that failed before it may never have run, so after an
    error :meth:`forget` makes the next uses prepare again, under new names.
    """

    _runs = itertools.count()

    def __init__(self, enabled=True):
        self.enabled = enabled
        self.prefix = 'dbmigrator_%d_%d' % (os.getpid(), next(self._runs))
        self._names = {}
        self._numbers = itertools.count()

    def execute(self, execute, sql, params=()):
        """Send ``sql`` through the cursor method ``execute``, prepared when it can be."""
        if not self.enabled or sql.startswith('EXECUTE '):
            if params:
                execute(sql, params)
            else:
                execute(sql)
            return
        prepared = self._names.get(sql)
        if prepared is None:
            name = '%s_%d' % (self.prefix, next(self._numbers))
            execute('PREPARE %s AS %s' % (name, _numbered(sql) if params else sql))
            execution = 'EXECUTE ' + name
            if params:
                execution += '(%s)' % ', '.join(['%s'] * len(params))
            prepared = self._names[sql] = name, execution
        execution = prepared[1]
        if params:
            execute(execution, params)
        else:
            execute(execution)

    def forget(self):
        self._names.clear()

    def replan(self):
        """The DEALLOCATEs of every statement prepared so far, each then prepared and
        planned again at its next use.

        A generic plan keeps the join order of the table sizes it was made
        for: the catalog reads planned on an empty database walk every
        sequence of a schema of thousands.  Only for statements that ran:
        one not there makes DEALLOCATE fail.
        """
        statements = ['DEALLOCATE ' + name for name, _ in self._names.values()]
        self._names.clear()
        return statements

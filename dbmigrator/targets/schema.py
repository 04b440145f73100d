"""A schema of a database as a dbmigrator state of its own (a schema tenant).

Every connection of the process, pg_dump's and ``super_user()``'s included,
starts with ``search_path`` set to the schema (libpq's ``PGOPTIONS``): the
unqualified ``schema_migrations``, history and lock tables, and whatever the
migrations create without a schema, land in it.  The advisory lock keys are
the schema's own, so that two schemas of one database migrate side by side
while two runs on one schema still exclude each other.
"""
import os
import re

from .. import lock
from ..errors import SettingsError

NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_$]*$')


def check(name):
    """A schema name libpq's options can carry as it is; anything else is refused."""
    if not NAME.match(name or '') or len(name.encode()) > 63:
        raise SettingsError('schema %r: a schema target must be a plain identifier (letters, '
                            'digits, _ and $, not starting with a digit, at most 63 bytes); '
                            'rename the schema or use a database target' % name)
    return name


def enter(name):
    """Make this process work on schema ``name`` (case as PostgreSQL folds it: the
    name is quoted, so ``Tenant`` means the schema "Tenant")."""
    check(name)
    option = '-c search_path="%s"' % name
    previous = os.environ.get('PGOPTIONS', '').strip()
    os.environ['PGOPTIONS'] = (previous + ' ' + option).strip()
    lock.use_scope(name)

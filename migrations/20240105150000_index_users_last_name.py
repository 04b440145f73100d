# Deferred: building this index on a big table is left for a quiet hour
# (dbmigrator migrate --run-deferred).
from dbmigrator import deferred


@deferred
def up(cursor):
    cursor.execute('CREATE INDEX users_last_name_idx ON users (last_name)')


def down(cursor):
    cursor.execute('DROP INDEX users_last_name_idx')

from dbmigrator import deferred


@deferred
def up(cursor):
    cursor.execute("CREATE TABLE cleanup_done (at TIMESTAMPTZ DEFAULT now())")


def down(cursor):
    cursor.execute('DROP TABLE cleanup_done')

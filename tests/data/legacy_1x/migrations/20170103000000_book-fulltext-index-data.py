# -*- coding: utf-8 -*-
from dbmigrator import deferred, logger

from _books import TITLES


def should_run(cursor):
    cursor.execute('SELECT count(*) FROM books WHERE fulltext IS NULL')
    return cursor.fetchone()[0] > 0


@deferred
def up(cursor):
    cursor.execute('SELECT id, title FROM books WHERE fulltext IS NULL LIMIT 2')
    rows = cursor.fetchall()
    for i, (id, title) in enumerate(rows):
        cursor.execute("UPDATE books SET fulltext = to_tsvector(%s) WHERE id = %s",
                       (title, id))
        logger.info('indexed book {} of {}'.format(i + 1, len(rows)))


def down(cursor):
    pass

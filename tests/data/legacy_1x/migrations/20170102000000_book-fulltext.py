# -*- coding: utf-8 -*-
import os

from dbmigrator import super_user

here = os.path.abspath(os.path.dirname(__file__))


def up(cursor):
    with open(os.path.join(here, 'fulltext.sql')) as f:
        cursor.execute(f.read())
    with super_user() as super_cursor:
        super_cursor.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')


def down(cursor):
    cursor.execute('DROP INDEX books_fulltext_idx')
    cursor.execute('ALTER TABLE books DROP COLUMN fulltext')

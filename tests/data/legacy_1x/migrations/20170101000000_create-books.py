# -*- coding: utf-8 -*-
def up(cursor):
    cursor.execute("""
        CREATE TABLE books (
            id SERIAL PRIMARY KEY,
            title TEXT NOT NULL
        )""")


def down(cursor):
    cursor.execute('DROP TABLE books')

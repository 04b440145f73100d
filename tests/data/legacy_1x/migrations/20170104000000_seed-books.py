from _books import TITLES


def up(cursor):
    for title in TITLES:
        cursor.execute('INSERT INTO books (title) VALUES (%s)', (title,))


def down(cursor):
    cursor.execute('DELETE FROM books')

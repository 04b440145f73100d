def up(cursor):
    cursor.execute('ALTER TABLE users ADD COLUMN karen TEXT')


def down(cursor):
    cursor.execute('ALTER TABLE users DROP COLUMN karen')

def up(cursor):
    cursor.execute('''
        CREATE TABLE settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )''')


def down(cursor):
    cursor.execute('DROP TABLE settings')

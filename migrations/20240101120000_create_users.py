def up(cursor):
    cursor.execute('''
        CREATE TABLE users (
            id SERIAL PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            first_name TEXT,
            last_name TEXT,
            created TIMESTAMPTZ NOT NULL DEFAULT now()
        )''')


def down(cursor):
    cursor.execute('DROP TABLE users')

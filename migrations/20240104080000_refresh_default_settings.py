# A repeat migration: runs on every migrate while should_run says so.
DEFAULTS = {'site_name': 'Example', 'items_per_page': '25'}


def should_run(cursor):
    cursor.execute('SELECT count(*) FROM settings WHERE name = ANY(%s)', (list(DEFAULTS),))
    return cursor.fetchone()[0] < len(DEFAULTS)


def up(cursor):
    for name, value in DEFAULTS.items():
        cursor.execute('INSERT INTO settings (name, value) VALUES (%s, %s)'
                       ' ON CONFLICT (name) DO NOTHING', (name, value))


def down(cursor):
    pass

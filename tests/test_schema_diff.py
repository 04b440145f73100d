"""The schema diff: a migration that changes no catalog row pays no pg_dump."""
import threading

import psycopg2

from dbmigrator import plan, settings, store
from dbmigrator.commands import open_database
from dbmigrator.discovery import discover
from dbmigrator.runner import Runner


def run_plan(db, migrations):
    resolved = settings.resolve(db_connection_string=db.dsn,
                                migrations_directories=[str(migrations.path)])
    with open_database(resolved, action='migrate') as conn:
        with conn.cursor() as cursor:
            records = store.read(cursor)
        conn.rollback()
        runner = Runner(conn, resolved)
        steps = runner.run(plan.for_migrate(discover(resolved.migrations_directories), records))
    return runner, steps


def test_data_only_migration_has_an_empty_diff_without_pg_dump(dbm, db, migrations):
    db.query('CREATE TABLE users (id INT, email TEXT); INSERT INTO users VALUES (1, NULL)')
    dbm('init', '--version=0')
    migrations.add('20200101000000', 'backfill', '''\
        def up(cursor):
            cursor.execute("UPDATE users SET email = 'a@example.com'")
        ''')
    migrations.add('20200102000000', 'nothing', '''\
        def up(cursor):
            cursor.execute('SELECT 1')
        ''')
    runner, steps = run_plan(db, migrations)
    assert [(s.version, s.diff) for s in steps] == [('20200101000000', ''), ('20200102000000', '')]
    assert runner.dumper.dumps == 1  # the snapshot at the start, nothing after
    assert db.query('SELECT email FROM users') == [('a@example.com',)]


def test_ddl_after_data_only_still_diffs_against_the_snapshot(dbm, db, migrations):
    db.query('CREATE TABLE users (id INT)')
    dbm('init', '--version=0')
    migrations.add('20200101000000', 'data', '''\
        def up(cursor):
            cursor.execute('INSERT INTO users VALUES (1)')
        ''')
    migrations.add('20200102000000', 'ddl', '''\
        def up(cursor):
            cursor.execute('ALTER TABLE users ADD COLUMN karen TEXT')
        ''')
    runner, steps = run_plan(db, migrations)
    assert steps[0].diff == ''
    assert '+    karen text' in steps[1].diff.splitlines()
    assert runner.dumper.dumps == 1  # the ALTER was rendered from the catalogs


def test_super_user_changes_are_seen(dbm, db, migrations):
    db.query('CREATE TABLE users (id INT)')
    dbm('init', '--version=0')
    migrations.add('20200101000000', 'su', '''\
        from dbmigrator import super_user


        def up(cursor):
            with super_user() as su:
                su.execute('CREATE TABLE made_by_super_user (id INT)')
        ''')
    runner, steps = run_plan(db, migrations)
    assert '+CREATE TABLE public.made_by_super_user (' in steps[0].diff.splitlines()


def test_truncate_and_comment_are_not_mistaken_for_data(dbm, db, migrations):
    db.query('CREATE TABLE users (id INT)')
    dbm('init', '--version=0')
    migrations.add('20200101000000', 'comment', '''\
        def up(cursor):
            cursor.execute("COMMENT ON TABLE users IS 'people'")
        ''')
    runner, steps = run_plan(db, migrations)
    assert "+COMMENT ON TABLE public.users IS 'people';" in steps[0].diff.splitlines()


def test_a_retried_migration_diffs_as_if_it_ran_once(dbm, db, migrations):
    """The fast path edits its snapshot inside the migration's transaction; when
    that transaction does not commit (here the history row waits past the
    lock timeout) the edit is undone, and the retry's diff is whole."""
    db.query('CREATE TABLE users (id INT)')
    dbm('init', '--version=0')
    migrations.add('20200101000000', 'invoices', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE invoices (id INT PRIMARY KEY, total NUMERIC(10, 2))')
        ''')
    holder = psycopg2.connect(db.dsn)
    with holder.cursor() as cursor:
        cursor.execute('LOCK TABLE dbmigrator_history IN EXCLUSIVE MODE')
    releaser = threading.Timer(1.5, holder.rollback)
    releaser.start()
    try:
        result = dbm('--lock-timeout', '1', '--lock-retries', '3', 'migrate')
    finally:
        releaser.join()
        holder.close()
    assert result.code == 0, result.err
    assert 'retrying' in result.err
    changed = [line for line in result.out.splitlines() if line.startswith('+')]
    assert '+CREATE TABLE public.invoices (' in changed
    assert '+    ADD CONSTRAINT invoices_pkey PRIMARY KEY (id);' in changed
    assert db.query("SELECT count(*) FROM dbmigrator_history WHERE version = '20200101000000'"
                    " AND diff LIKE '%%CREATE TABLE public.invoices%%'") == [(1,)]

"""The fast schema diff against pg_dump's: the same +/- lines for every DDL case.

Each case runs as one migration twice, on two fresh databases with the same
starting schema: once with --diff-engine pg_dump, once with the default
engine.  The fast path must either print exactly pg_dump's changed lines or
hand the migration to pg_dump.
"""
import uuid

import psycopg2
import pytest

from dbmigrator import plan, settings, store
from dbmigrator.commands import open_database
from dbmigrator.discovery import discover
from dbmigrator.runner import Runner
from tests.conftest import Migrations

BASE = '''
CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL, email TEXT);
CREATE TABLE orders (id INT PRIMARY KEY, user_id INT, total NUMERIC(10, 2) DEFAULT 0);
CREATE INDEX orders_user_idx ON orders (user_id);
CREATE TABLE "Zebra" (id INT);
CREATE SEQUENCE counter;
CREATE VIEW user_names AS SELECT name FROM users;
CREATE MATERIALIZED VIEW user_ids AS SELECT id FROM users;
'''

# (name, DDL, True when the fast path must render it itself)
CASES = [
    ('create table', 'CREATE TABLE invoices (id INT PRIMARY KEY, amount NUMERIC(12, 2) NOT NULL)', True),
    ('create table sorted first', 'CREATE TABLE "Aardvark" (id INT)', True),
    ('create table with defaults', "CREATE TABLE notes (id INT, body TEXT DEFAULT 'none', at TIMESTAMPTZ DEFAULT now())", True),
    ('create table with check', 'CREATE TABLE prices (amount INT CONSTRAINT positive CHECK (amount > 0))', True),
    ('create table with unique', 'CREATE TABLE codes (code TEXT UNIQUE, other TEXT, UNIQUE (other, code))', True),
    ('add column', 'ALTER TABLE users ADD COLUMN karen TEXT', True),
    ('add not null column', "ALTER TABLE users ADD COLUMN active BOOLEAN NOT NULL DEFAULT true", True),
    ('drop column', 'ALTER TABLE users DROP COLUMN email', True),
    ('set default', "ALTER TABLE users ALTER COLUMN email SET DEFAULT 'nobody@example.com'", True),
    ('set not null', 'ALTER TABLE users ALTER COLUMN email SET NOT NULL', True),
    ('drop not null', 'ALTER TABLE users ALTER COLUMN name DROP NOT NULL', True),
    ('add check', 'ALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total >= 0)', True),
    ('add unique', 'ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)', True),
    ('index', 'CREATE INDEX users_name_idx ON users (name)', True),
    ('partial index', 'CREATE INDEX users_email_partial ON users (email) WHERE email IS NOT NULL', True),
    ('expression index', 'CREATE INDEX users_lower_name ON users (lower(name))', True),
    ('include index', 'CREATE UNIQUE INDEX users_name_inc ON users (name) INCLUDE (email)', True),
    ('rename column', 'ALTER TABLE users RENAME COLUMN email TO mail', True),
    ('two tables', 'CREATE TABLE a1 (id INT); CREATE TABLE b1 (id INT PRIMARY KEY)', True),
    ('two alters of one table', 'ALTER TABLE users ADD COLUMN a TEXT; ALTER TABLE users ADD COLUMN b INT', True),
    ('alters of two tables', 'ALTER TABLE users ADD COLUMN x INT; ALTER TABLE orders ADD COLUMN y INT', True),
    ('create table and its index', 'CREATE TABLE logs (id INT, at TIMESTAMPTZ); CREATE INDEX logs_at ON logs (at)', True),
    ('inside a savepoint', 'SAVEPOINT s; CREATE TABLE saved (id INT); RELEASE SAVEPOINT s', True),
    ('after a rolled back savepoint', '''SAVEPOINT s; CREATE TABLE gone (id INT); ROLLBACK TO SAVEPOINT s;
                                         ALTER TABLE users ADD COLUMN kept TEXT''', True),
    ('table name with spaces', 'CREATE TABLE "my table" (id INT PRIMARY KEY, "a b" TEXT UNIQUE)', True),
    # Everything below is handed to pg_dump, which must still give the right text.
    ('toast options', 'ALTER TABLE users SET (toast.autovacuum_enabled = false)', False),
    ('index on a materialized view', 'CREATE INDEX user_ids_idx ON user_ids (id)', False),
    ('rename table', 'ALTER TABLE "Zebra" RENAME TO "Yak"', False),
    ('rename index', 'ALTER INDEX orders_user_idx RENAME TO orders_by_user', False),
    ('rename constraint', 'ALTER TABLE users RENAME CONSTRAINT users_pkey TO users_key', False),
    ('enum used by a new table', "CREATE TYPE color AS ENUM ('red'); CREATE TABLE paints (c color)", False),
    ('alter type (a rewrite)', 'ALTER TABLE users ALTER COLUMN email TYPE VARCHAR(200)', False),
    ('drop table', 'DROP TABLE "Zebra"', False),
    ('drop index', 'DROP INDEX orders_user_idx', False),
    ('foreign key', 'ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id)', False),
    ('identity', 'CREATE TABLE ident (id INT GENERATED ALWAYS AS IDENTITY)', False),
    ('generated', 'CREATE TABLE gen (a INT, b INT GENERATED ALWAYS AS (a * 2) STORED)', False),
    ('collation', 'CREATE TABLE coll (name TEXT COLLATE "C")', False),
    ('serial', 'CREATE TABLE ser (id SERIAL)', False),
    ('owned sequence', 'CREATE SEQUENCE s2 OWNED BY users.id', False),
    ('exclusion', 'CREATE TABLE ex (r INT4RANGE, EXCLUDE USING gist (r WITH &&))', False),
    ('view', 'CREATE VIEW v2 AS SELECT id FROM users', False),
    ('materialized view', 'CREATE MATERIALIZED VIEW mv AS SELECT id FROM users', False),
    ('function', 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', False),
    ('procedure', 'CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$', False),
    ('trigger', '''CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
                   CREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION tf()''', False),
    ('enum', "CREATE TYPE mood AS ENUM ('sad', 'happy')", False),
    ('domain', 'CREATE DOMAIN positive AS INT CHECK (VALUE > 0)', False),
    ('composite', 'CREATE TYPE pair AS (a INT, b INT)', False),
    ('schema', 'CREATE SCHEMA reporting', False),
    ('extension', 'CREATE EXTENSION pg_trgm', False),
    ('comment', "COMMENT ON TABLE users IS 'people'", False),
    ('column comment', "COMMENT ON COLUMN users.name IS 'full name'", False),
    ('grant', 'GRANT SELECT ON users TO PUBLIC', False),
    ('revoke', 'REVOKE ALL ON users FROM CURRENT_USER', False),
    ('owner', 'ALTER TABLE users OWNER TO diff_owner', True),
    ('deferrable (a trigger)', 'CREATE TABLE d (id INT, CONSTRAINT d_key UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)', False),
    ('row level security', 'ALTER TABLE users ENABLE ROW LEVEL SECURITY; CREATE POLICY mine ON users USING (true)', False),
    ('partitioned', '''CREATE TABLE events (at DATE, n INT) PARTITION BY RANGE (at);
                       CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')''', False),
    ('inheritance', 'CREATE TABLE admins (level INT) INHERITS (users)', False),
]


def changed_lines(diff):
    return [line for line in diff.splitlines()
            if line.startswith(('+', '-')) and not line.startswith(('+++', '---'))]


def run_migrations(server, folder_path, ddls, engine):
    """Each DDL as one migration, on a fresh database holding BASE: (steps, dumps run)."""
    name = 'diff_%s' % uuid.uuid4().hex[:10]
    admin = psycopg2.connect(server.get_uri('postgres'))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute('CREATE DATABASE %s' % name)
    try:
        conn = psycopg2.connect(server.get_uri(name))
        with conn.cursor() as cursor:
            cursor.execute(BASE)
        conn.commit()
        conn.close()
        folder = Migrations(folder_path)
        for i, ddl in enumerate(ddls):
            folder.add('202001010000%02d' % i, 'step_%d' % i,
                       'def up(cursor):\n    cursor.execute(%r)\n' % ddl)
        resolved = settings.resolve(db_connection_string=server.get_uri(name),
                                    migrations_directories=[str(folder.path)],
                                    diff_engine=engine)
        with open_database(resolved, action='migrate') as conn:
            with conn.cursor() as cursor:
                store.create(cursor)
                records = store.read(cursor)
            conn.commit()
            runner = Runner(conn, resolved)
            steps = runner.run(plan.for_migrate(discover(resolved.migrations_directories),
                                                records))
        return steps, runner.dumper.dumps
    finally:
        with admin.cursor() as cursor:
            cursor.execute('DROP DATABASE %s WITH (FORCE)' % name)
        admin.close()


def migrate_once(server, tmp_path, ddl, engine, label):
    [step], dumps = run_migrations(
        server, tmp_path / (label.replace(' ', '_') + '_' + engine), [ddl], engine)
    return step.diff, dumps


@pytest.fixture(scope='module')
def diff_owner(server):
    admin = psycopg2.connect(server.get_uri('postgres'))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute('CREATE ROLE diff_owner')
    yield
    with admin.cursor() as cursor:
        cursor.execute('DROP ROLE diff_owner')
    admin.close()


@pytest.mark.parametrize('label, ddl, fast', CASES, ids=[c[0] for c in CASES])
def test_fast_diff_prints_what_pg_dump_prints(server, diff_owner, tmp_path, label, ddl, fast):
    expected, full_dumps = migrate_once(server, tmp_path, ddl, 'pg_dump', label)
    actual, dumps = migrate_once(server, tmp_path, ddl, 'auto', label)
    assert full_dumps == 2
    assert changed_lines(expected), 'the case changes nothing pg_dump shows'
    assert changed_lines(actual) == changed_lines(expected)
    # 1 dump: the run's snapshot only, the fast path rendered the change itself;
    # 2: it handed the migration to pg_dump.
    assert dumps == (1 if fast else 2)


def test_data_only_migration_runs_no_pg_dump(server, tmp_path):
    diff, dumps = migrate_once(server, tmp_path, "UPDATE users SET name = 'x'", 'auto', 'data')
    assert diff == '' and dumps == 1


SEQUENCE = [
    'CREATE TABLE accounts (id INT PRIMARY KEY, name TEXT)',
    'ALTER TABLE accounts ADD COLUMN email TEXT',
    'CREATE INDEX accounts_email ON accounts (email)',
    'ALTER TABLE accounts RENAME TO members',
    'ALTER TABLE members ADD COLUMN joined DATE',
    "UPDATE users SET name = 'x'",
    'CREATE TABLE "Beta" (id INT); ALTER TABLE orders ADD COLUMN note TEXT',
    'ALTER TABLE members ALTER COLUMN name SET NOT NULL',
]


def run_sequence(server, tmp_path, engine):
    steps, dumps = run_migrations(server, tmp_path / ('sequence_' + engine), SEQUENCE, engine)
    return [changed_lines(step.diff) for step in steps], dumps


def test_a_run_of_migrations_diffs_each_step_as_pg_dump_does(server, tmp_path):
    expected, full_dumps = run_sequence(server, tmp_path, 'pg_dump')
    actual, dumps = run_sequence(server, tmp_path, 'auto')
    assert full_dumps == 1 + len(SEQUENCE) - 1  # the data-only step needs none
    assert actual == expected
    # The snapshot, the rename, and the two changes of the renamed table (its
    # NOT NULL constraint kept the old table's name, which the fast path
    # leaves to pg_dump); the other four came from the catalogs.
    assert dumps == 4

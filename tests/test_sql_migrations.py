"""Plain SQL migrations, beside Python ones, with real statements."""
import json
import os
import textwrap

import pytest


def sql(migrations, version, name, text):
    path = os.path.join(str(migrations.path), '%s_%s.sql' % (version, name))
    with open(path, 'w') as handle:
        handle.write(textwrap.dedent(text))
    return path


FUNCTION = """\
    -- dbmigrator: up
    CREATE TABLE notes (id INT PRIMARY KEY, body TEXT);
    CREATE FUNCTION shout(t TEXT) RETURNS TEXT LANGUAGE plpgsql AS $$
    BEGIN
      -- a ; in a comment, and 'quotes' in the body
      RETURN upper(t) || '!; done';
    END $$;
    DO $body$ BEGIN INSERT INTO notes VALUES (1, shout('a''b')); END $body$;
    INSERT INTO notes VALUES (2, '100% LIKE ''a%''');
    -- dbmigrator: down
    DROP FUNCTION shout(TEXT);
    DROP TABLE notes;
    """


def test_functions_do_blocks_and_percent_signs_run_as_written(dbm, db, migrations):
    sql(migrations, '20200101000000', 'notes', FUNCTION)
    result = dbm('migrate')
    assert result.code == 0, result
    assert 'Running migration 20200101000000 notes' in result.out
    assert '+CREATE TABLE public.notes (' in result.out
    assert db.query('SELECT id, body FROM notes ORDER BY id') == [
        (1, "A'B!; done"), (2, "100% LIKE 'a%'")]
    assert dbm('rollback', '--no-diff').code == 0
    assert not db.table_exists('notes')


def test_a_mixed_folder_runs_in_version_order(dbm, db, migrations):
    db.query('CREATE TABLE log (what TEXT, at SERIAL)')
    migrations.add('20200101000000', 'first_py', '''\
        def up(cursor):
            cursor.execute("INSERT INTO log (what) VALUES ('py 1')")
        ''')
    sql(migrations, '20200102000000', 'second_sql', '''\
        -- dbmigrator: up
        INSERT INTO log (what) VALUES ('sql 2');
        ''')
    migrations.add('20200103000000', 'third_py', '''\
        def up(cursor):
            cursor.execute("INSERT INTO log (what) VALUES ('py 3')")
        ''')
    dbm('init', '--version', '0')
    listed = dbm('list')
    assert [line.split()[1] for line in listed.out.splitlines()[2:]] == [
        'first_py', 'second_sql', 'third_py']
    assert dbm('migrate', '--no-diff').code == 0
    assert db.query('SELECT what FROM log ORDER BY at') == [('py 1',), ('sql 2',), ('py 3',)]


def test_one_version_space_for_both_kinds(dbm, migrations):
    migrations.add('20200101000000', 'as_py')
    sql(migrations, '20200101000000', 'as_sql', '-- dbmigrator: up\nSELECT 1;\n')
    result = dbm('list')
    assert result.code == 2
    assert 'two migrations have version 20200101000000' in result.err


def test_concurrent_index_and_a_second_statement_in_a_non_atomic_file(dbm, db, migrations):
    db.query('CREATE TABLE t (id INT, v TEXT); INSERT INTO t VALUES (1, $$x$$)')
    dbm('init', '--version', '0')
    sql(migrations, '20200101000000', 'index_t', '''\
        -- dbmigrator: up atomic=false
        CREATE INDEX CONCURRENTLY t_v ON t (v);
        UPDATE t SET v = 'y';
        -- dbmigrator: down atomic=false
        DROP INDEX CONCURRENTLY t_v;
        ''')
    result = dbm('migrate', '--no-diff')
    assert 'unknown option atomic=false' in result.err  # options go on the up line only
    sql(migrations, '20200101000000', 'index_t', '''\
        -- dbmigrator: up atomic=false
        CREATE INDEX CONCURRENTLY t_v ON t (v);
        UPDATE t SET v = 'y';
        -- dbmigrator: down
        DROP INDEX CONCURRENTLY t_v;
        ''')
    result = dbm('migrate', '--no-diff')
    assert result.code == 0, result
    assert db.query("SELECT indexname FROM pg_indexes WHERE tablename = 't'") == [('t_v',)]
    assert db.query('SELECT v FROM t') == [('y',)]
    assert json.loads(dbm('--format', 'json', 'list').out)['migrations'][0]['atomic'] is False
    assert dbm('rollback', '--no-diff').code == 0
    assert db.query("SELECT indexname FROM pg_indexes WHERE tablename = 't'") == []


def test_an_error_in_the_third_statement_names_its_line_and_nothing_is_applied(
        dbm, db, migrations):
    path = sql(migrations, '20200101000000', 'broken', '''\
        -- dbmigrator: up
        CREATE TABLE a (id INT);

        CREATE TABLE b (id INT);
        INSERT INTO a
          VALUES (no_such_column);
        ''')
    result = dbm('migrate', '--no-diff')
    assert result.code == 1, result
    assert ('Migration 20200101000000 broken failed: %s line 6, column 11: column '
            '"no_such_column" does not exist' % path) in result.err, result
    assert not db.table_exists('a') and not db.table_exists('b')
    assert db.query('SELECT count(*) FROM schema_migrations') == [(0,)]


def test_the_same_error_line_in_a_non_atomic_file(dbm, db, migrations):
    path = sql(migrations, '20200101000000', 'broken', '''\
        -- dbmigrator: up atomic=false
        CREATE TABLE a (id INT);
        CREATE TABLE b (id INT);
        SELECT * FROM
          nowhere;
        ''')
    result = dbm('migrate', '--no-diff')
    assert result.code == 1
    assert '%s line 5, column 3: relation "nowhere" does not exist' % path in result.err
    assert 'It is non-atomic (atomic = False): the statements that had completed stay' in (
        result.err)


@pytest.mark.parametrize('statement, message', [
    ('COMMIT;', 'line 3: COMMIT controls the transaction'),
    ('BEGIN;', 'line 3: BEGIN controls the transaction'),
    ('SAVEPOINT s;', 'line 3: SAVEPOINT controls the transaction'),
    ('\\i other.sql', 'line 3: a psql meta-command (\\i) is not SQL'),
    ('COPY t FROM STDIN;', 'line 3: COPY ... FROM STDIN needs data that only psql sends'),
    ('CREATE INDEX CONCURRENTLY t_id ON t (id);',
     'line 3: CREATE INDEX CONCURRENTLY cannot run inside a transaction block: put it in a '
     'migration of its own with -- dbmigrator: up atomic=false'),
    ("INSERT INTO t VALUES ('never closed);", 'a single quote is never closed'),
])
def test_what_cannot_run_is_refused_before_anything_is_applied(dbm, db, migrations,
                                                              statement, message):
    db.query('CREATE TABLE t (id INT)')
    dbm('init', '--version', '0')
    path = sql(migrations, '20200101000000', 'refused',
               '-- dbmigrator: up\nCREATE TABLE applied_first (id INT);\n%s\n' % statement)
    result = dbm('migrate', '--no-diff')
    assert result.code == 2, result
    assert result.err.startswith('dbmigrator: error: %s' % path), result
    assert message in result.err
    assert not db.table_exists('applied_first')


def test_semicolons_in_literals_do_not_split_and_a_begin_inside_a_body_is_fine(
        dbm, db, migrations):
    sql(migrations, '20200101000000', 'tricky', '''\
        -- dbmigrator: up atomic=false
        CREATE TABLE k (v TEXT);
        INSERT INTO k VALUES ('BEGIN; COMMIT;'), (E'it\\'s; ok');
        DO $$ BEGIN PERFORM 1; END $$;
        ''')
    result = dbm('migrate', '--no-diff')
    assert result.code == 0, result
    assert db.query('SELECT v FROM k ORDER BY v') == [('BEGIN; COMMIT;',), ("it's; ok",)]


def test_a_should_run_section_makes_a_repeat_migration(dbm, db, migrations):
    db.query('CREATE TABLE settings (name TEXT)')
    dbm('init', '--version', '0')
    sql(migrations, '20200101000000', 'seed', '''\
        -- dbmigrator: should_run
        SELECT count(*) < 2 FROM settings;
        -- dbmigrator: up
        INSERT INTO settings VALUES ('x');
        -- dbmigrator: down
        DELETE FROM settings;
        ''')
    assert dbm('list').out.splitlines()[2].split()[2] == 'False*'
    for _ in range(3):
        assert dbm('migrate', '--no-diff').code == 0
    assert db.query('SELECT count(*) FROM settings') == [(2,)]
    assert 'should_run is false' in dbm('migrate', '--no-diff').out


def test_deferred_and_no_down(dbm, db, migrations):
    dbm('init', '--version', '0')
    path = sql(migrations, '20200101000000', 'later', '''\
        -- dbmigrator: up deferred
        CREATE TABLE later (id INT);
        ''')
    assert 'Skipping deferred migration 20200101000000 later' in dbm('migrate').out
    assert dbm('migrate', '--run-deferred', '--no-diff').code == 0
    result = dbm('rollback')
    assert result.code == 2
    assert result.err.strip() == ('dbmigrator: error: %s has no -- dbmigrator: down section: '
                                  'it cannot be rolled back; nothing was changed' % path)
    assert db.table_exists('later')


def test_helper_sql_files_are_left_alone_and_a_named_one_gets_a_notice(dbm, migrations):
    sql(migrations, '20200101000000', 'helper', 'SELECT 1;\n')
    with open(os.path.join(str(migrations.path), 'fulltext.sql'), 'w') as handle:
        handle.write('CREATE INDEX ...;\n')
    result = dbm('list')
    assert result.code == 0
    assert len(result.out.splitlines()) == 2
    assert ('Notice: %s/20200101000000_helper.sql is named like a migration but does not '
            'start with a "-- dbmigrator: up" (or should_run) marker, so it is not one'
            % migrations.path) in result.err
    assert 'fulltext.sql' not in result.err


def test_an_edited_sql_file_is_flagged(dbm, migrations):
    path = sql(migrations, '20200101000000', 'edited', '-- dbmigrator: up\nSELECT 1;\n')
    dbm('migrate', '--no-diff')
    with open(path, 'a') as handle:
        handle.write('SELECT 2;\n')
    assert '(changed since applied)' in dbm('list').out


def test_generate_sql(dbm, migrations, tmp_path):
    result = dbm('generate', '--sql', 'add_notes')
    assert result.code == 0, result
    [name] = os.listdir(str(migrations.path))
    assert name.endswith('_add_notes.sql')
    text = open(os.path.join(str(migrations.path), name)).read()
    assert text.startswith('-- dbmigrator: up\n') and '-- dbmigrator: down' in text
    assert dbm('migrate', '--no-diff').code == 0  # the skeleton itself runs
    dbm('generate', '--sql', '--non-atomic', 'index_notes')
    second = [n for n in os.listdir(str(migrations.path)) if 'index_notes' in n][0]
    assert open(os.path.join(str(migrations.path), second)).read().startswith(
        '-- dbmigrator: up atomic=false\n')


def test_lint_traces_sql_migrations_too(dbm, db, migrations):
    db.query('CREATE TABLE big (id INT); INSERT INTO big SELECT generate_series(1, 100);'
             ' ANALYZE big')
    dbm('init', '--version', '0')
    sql(migrations, '20200101000000', 'index_big', '''\
        -- dbmigrator: up
        SELECT 1;
        CREATE INDEX big_id ON big (id);
        ''')
    document = json.loads(dbm('--format', 'json', 'lint', '--big-table-rows', '50').out)
    assert [(f['rule'], f['severity']) for f in document['findings']] == [
        ('blocking-index', 'error')]

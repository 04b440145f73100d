import re

LIST_HEADER = 'version        | name            | is applied | date applied'


def rows(output):
    """The list table's rows as lists of cells (split on runs of spaces)."""
    lines = output.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('-' * 70))
    return [re.split(r'\s{2,}', line.strip()) for line in lines[start + 1:]]


def test_init_marks_everything_applied_by_default(dbm, migrations, db):
    migrations.add('20151217170514', 'add_id_to_users')
    migrations.add('20151218145832', 'add_karen_to_users')
    result = dbm('init')
    assert result.code == 0, result
    assert 'Schema migrations initialized.' in result.out
    assert db.versions() == ['20151217170514', '20151218145832']
    assert db.columns('schema_migrations')[:2] == ['version', 'applied']


def test_init_version_zero_marks_none(dbm, migrations, db):
    migrations.add('20151217170514', 'add_id_to_users')
    assert dbm('init', '--version=0').code == 0
    assert db.versions() == []


def test_init_version_cutoff(dbm, migrations, db):
    migrations.add('20151217170514', 'add_id_to_users')
    migrations.add('20151218145832', 'add_karen_to_users')
    assert dbm('init', '--version', '20151217170514').code == 0
    assert db.versions() == ['20151217170514']


def test_second_init_says_already_initialized(dbm, migrations, db):
    migrations.add('20151217170514', 'add_id_to_users')
    dbm('init', '--version=0')
    result = dbm('init')
    assert result.code == 0
    assert 'Schema migrations already initialized.' in result.out
    assert db.versions() == []


def test_list_matches_seed_layout(dbm, migrations, db):
    migrations.add('20151217170514', 'add_id_to_users')
    migrations.add('20151218145832', 'add_karen_to_users', '''\
        def should_run(cursor):
            return False


        def up(cursor):
            pass


        def down(cursor):
            pass
        ''')
    migrations.add('20160107200351', 'blah', '''\
        from dbmigrator import deferred


        @deferred
        def up(cursor):
            pass
        ''')
    dbm('init', '--version', '20151217170514')
    result = dbm('list')
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == LIST_HEADER
    assert lines[1] == '-' * 70
    table = rows(result.out)
    assert table[0][:3] == ['20151217170514', 'add_id_to_users', 'True']
    assert re.match(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+\d\d:\d\d$', table[0][3])
    assert table[1] == ['20151218145832', 'add_karen_to_us', 'False*']
    assert table[2] == ['20160107200351', 'blah', 'deferred']


def test_list_wide_shows_full_names(dbm, migrations):
    migrations.add('20151218145832', 'add_karen_to_users')
    dbm('init', '--version=0')
    table = rows(dbm('list', '--wide').out)
    assert table[0] == ['20151218145832', 'add_karen_to_users', 'False']


def test_list_sort_by_applied(dbm, migrations, db):
    migrations.add('20200101000000', 'older')
    migrations.add('20200102000000', 'newer')
    migrations.add('20200103000000', 'pending')
    dbm('init', '--version=0')
    db.query("INSERT INTO schema_migrations VALUES ('20200102000000', '2020-01-01'),"
             " ('20200101000000', '2021-01-01')")
    by_version = [r[0] for r in rows(dbm('list').out)]
    by_applied = [r[0] for r in rows(dbm('list', '--sort', 'applied').out)]
    assert by_version == ['20200101000000', '20200102000000', '20200103000000']
    assert by_applied == ['20200102000000', '20200101000000', '20200103000000']


def test_list_before_init_warns_without_traceback(dbm, migrations, db):
    migrations.add('20151217170514', 'add_id_to_users')
    result = dbm('list')
    assert result.code == 0
    assert 'schema_migrations table not found' in result.err
    assert 'dbmigrator init' in result.err
    assert 'Traceback' not in result.output
    assert rows(result.out) == [['20151217170514', 'add_id_to_users', 'False']]
    assert not db.table_exists('schema_migrations')


def test_list_reads_original_tool_table_with_duplicates(dbm, migrations, db):
    migrations.add('20151217170514', 'add_id_to_users')
    migrations.add('20151218145832', 'add_karen_to_users')
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
    db.query("INSERT INTO schema_migrations VALUES ('20151217170514', '2016-01-31 00:15:01+01'),"
             " ('20151217170514', '2016-02-01 00:00:00+01'), ('20151218145832', NULL)")
    result = dbm('list')
    assert result.code == 0, result
    table = rows(result.out)
    assert table[0][:2] == ['20151217170514', 'add_id_to_users']
    assert table[0][2] == 'True'
    assert table[1] == ['20151218145832', 'add_karen_to_us', 'deferred']
    assert db.columns('schema_migrations') == ['version', 'applied']

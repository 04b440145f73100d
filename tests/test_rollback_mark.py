import re

from tests.test_init_list import rows
from tests.test_migrate import SEED_CONTEXT_BEFORE, seed  # noqa: F401 (fixture)


def test_seed_rollback_prints_reverse_diff(seed, dbm, db):  # noqa: F811
    dbm('migrate')
    assert dbm('migrate').out.strip() == 'No pending migrations.  Database is up to date.'
    result = dbm('rollback')
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == 'Rolling back migration 20151218145832 add_karen_to_users'
    assert lines[1:3] == ['---', '+++']
    assert re.match(r'^@@ -\d+,22 \+\d+,21 @@$', lines[3])
    assert lines[4:14] == SEED_CONTEXT_BEFORE
    assert lines[14:17] == ['-    is_moderated boolean,', '-    karen text',
                            '+    is_moderated boolean']
    assert 'karen' not in db.columns('users')
    assert db.versions() == ['20151217170514']


def test_seed_rollback_two_steps(seed, dbm, db):  # noqa: F811
    dbm('migrate')
    result = dbm('rollback', '--steps=2')
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == 'Rolling back migration 20151218145832 add_karen_to_users'
    assert lines[-1] == 'Rolling back migration 20151217170514 add_id_to_users'
    assert db.versions() == []


def test_rollback_goes_newest_applied_first(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')
    dbm('init', '--version=0')
    dbm('migrate', '--no-diff')
    assert dbm('mark', '-f', '20200101000000').code == 0
    db.query('DROP TABLE ta')
    dbm('migrate', '--no-diff')
    # a was applied again after b, so it is the newest
    result = dbm('rollback', '--no-diff')
    assert result.out.strip() == 'Rolling back migration 20200101000000 a'
    assert db.versions() == ['20200102000000']


def test_rollback_skips_deferred_and_says_when_nothing(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    dbm('init', '--version=0')
    dbm('mark', '-d', '20200101000000')
    result = dbm('rollback')
    assert result.code == 0
    assert result.out.strip() == 'No migrations to roll back.'


def test_rollback_to_version(dbm, migrations, db):
    for i in range(1, 4):
        migrations.table('2020010%d000000' % i, 'm%d' % i, 't%d' % i)
    dbm('migrate', '--no-diff')
    result = dbm('rollback', '--version', '20200101000000', '--no-diff')
    assert result.code == 0, result
    assert db.versions() == ['20200101000000']
    assert db.table_exists('t1') and not db.table_exists('t2')


def test_failing_rollback_changes_nothing(dbm, migrations, db):
    migrations.add('20200101000000', 'bad_down', '''\
        def up(cursor):
            cursor.execute('CREATE TABLE kept (id INT)')


        def down(cursor):
            cursor.execute('DROP TABLE kept')
            cursor.execute('SELECT no_such_function()')
        ''')
    dbm('migrate')
    result = dbm('rollback')
    assert result.code == 1
    assert 'Rollback of migration 20200101000000 bad_down failed' in result.err
    assert db.table_exists('kept')
    assert db.versions() == ['20200101000000']


def test_seed_mark_examples(dbm, migrations, db):
    migrations.add('20151217170514', 'add_id_to_users')
    migrations.add('20151218145832', 'add_karen_to_users')
    migrations.add('20160107200351', 'blah')
    dbm('init', '--version', '20151217170514')

    result = dbm('mark', '-f', '20151217170514')
    assert result.out.strip() == 'Migration 20151217170514 marked as not been run'
    assert [r[2] for r in rows(dbm('list').out)] == ['False', 'False', 'False']

    result = dbm('mark', '-t', '20151217170514')
    assert result.out.strip() == 'Migration 20151217170514 marked as completed'
    assert [r[2] for r in rows(dbm('list').out)] == ['True', 'False', 'False']

    result = dbm('mark', '-d', '20151217170514')
    assert result.out.strip() == 'Migration 20151217170514 marked as deferred'
    assert rows(dbm('list').out)[0] == ['20151217170514', 'add_id_to_users', 'deferred']
    assert db.query('SELECT applied FROM schema_migrations') == [(None,)]
    assert 'No pending' not in dbm('migrate', '--no-diff').out
    assert rows(dbm('list').out)[0][2] == 'deferred'


def test_mark_several_versions(dbm, migrations, db):
    migrations.add('20200101000000', 'a')
    migrations.add('20200102000000', 'b')
    dbm('init', '--version=0')
    result = dbm('mark', '-t', '20200101000000', '20200102000000')
    assert result.code == 0
    assert db.versions() == ['20200101000000', '20200102000000']


def test_mark_unknown_version_changes_nothing(dbm, migrations, db):
    migrations.add('20200101000000', 'a')
    dbm('init', '--version=0')
    result = dbm('mark', '-t', '20200101000000', '20990101000000')
    assert result.code == 2
    assert 'unknown migration version 20990101000000' in result.err
    assert db.versions() == []


def test_mark_needs_exactly_one_state(dbm, migrations):
    migrations.add('20200101000000', 'a')
    assert dbm('mark', '20200101000000').code == 2
    assert dbm('mark', '-t', '-f', '20200101000000').code == 2

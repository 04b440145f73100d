"""A migrations folder written for db-migrator 1.x runs unchanged.

tests/data/legacy_1x/migrations is written the way real 1.x projects write
theirs: ``from dbmigrator import deferred, logger``, a repeat migration whose
``up`` is ``@deferred``, ``super_user()``, a migration reading a ``.sql``
file beside it, a helper module imported by name, and a README.
"""
import os
import shutil

import pytest

import dbmigrator

LEGACY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'legacy_1x',
                      'migrations')


def table(out):
    return [line.split() for line in out.splitlines()[2:]]


@pytest.fixture
def legacy(tmp_path, run, db):
    folder = tmp_path / 'migrations'
    shutil.copytree(LEGACY, folder)

    def _dbm(*argv):
        return run('--db-connection-string', db.dsn, '--migrations-directory', folder, *argv)
    return _dbm


def test_public_names_of_1x():
    import logging
    assert dbmigrator.logger is logging.getLogger('dbmigrator')
    assert callable(dbmigrator.deferred) and callable(dbmigrator.super_user)
    assert dbmigrator.__version__


def test_init_list_migrate_as_1x_does(legacy, db):
    assert legacy('init', '--version=0').out.strip() == 'Schema migrations initialized.'
    assert table(legacy('list').out) == [
        ['20170101000000', 'create-books', 'False'],
        ['20170102000000', 'book-fulltext', 'False'],
        ['20170103000000', 'book-fulltext-i', 'deferred*'],
        ['20170104000000', 'seed-books', 'False'],
        ['20170105000000', 'old-data-cleanu', 'deferred'],
    ]
    result = legacy('migrate', '--no-diff')
    assert result.code == 0, result
    assert result.out.splitlines() == [
        'Running migration 20170101000000 create-books',
        'Running migration 20170102000000 book-fulltext',
        'Skipping deferred migration 20170103000000 book-fulltext-index-data',
        'Running migration 20170104000000 seed-books',
        'Skipping deferred migration 20170105000000 old-data-cleanup',
    ]
    assert db.query('SELECT count(*) FROM books WHERE fulltext IS NULL') == [(3,)]
    assert db.query("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'") == [
        ('pg_trgm',)]
    assert not db.table_exists('cleanup_done')
    # Routine deploys never start the deferred backfill, even with work left.
    again = legacy('migrate', '--no-diff')
    assert 'Running migration' not in again.out
    assert again.out.splitlines()[-1] == 'No pending migrations.  Database is up to date.'


def test_run_deferred_runs_the_backfill_while_should_run_and_logger_shows(legacy, db):
    legacy('init', '--version=0')
    legacy('migrate', '--no-diff')
    first = legacy('migrate', '--run-deferred', '--no-diff')
    assert first.code == 0, first
    assert first.out.splitlines() == [
        'Running migration 20170103000000 book-fulltext-index-data',
        'indexed book 1 of 2',
        'indexed book 2 of 2',
        'Running migration 20170105000000 old-data-cleanup',
    ]
    assert db.table_exists('cleanup_done')
    second = legacy('migrate', '--run-deferred', '--no-diff')
    assert second.out.splitlines() == [
        'Running migration 20170103000000 book-fulltext-index-data',
        'indexed book 1 of 1',
    ]
    third = legacy('migrate', '--run-deferred', '--no-diff')
    assert third.out.splitlines() == [
        'Skipping migration 20170103000000 book-fulltext-index-data: should_run is false',
        'No pending migrations.  Database is up to date.',
    ]
    rows = table(legacy('list').out)
    assert rows[2][:3] == ['20170103000000', 'book-fulltext-i', 'deferred*']
    assert rows[4][:3] == ['20170105000000', 'old-data-cleanu', 'True']


def test_rollback_takes_the_deferred_repeat_migration_that_ran_last(legacy, db):
    legacy('init', '--version=0')
    legacy('migrate', '--no-diff')
    legacy('migrate', '--run-deferred', '--no-diff')
    result = legacy('rollback', '--steps', '2', '--no-diff')
    assert result.code == 0, result
    assert result.out.splitlines() == [
        'Rolling back migration 20170105000000 old-data-cleanup',
        'Rolling back migration 20170103000000 book-fulltext-index-data',
    ]
    assert not db.table_exists('cleanup_done')


def test_mark_on_repeat_and_deferred_migrations(legacy, db):
    legacy('init', '--version=0')
    assert legacy('mark', '-t', '20170103000000').out.strip() == (
        'Migration 20170103000000 marked as completed')
    # Still deferred: its up is @deferred and it repeats.
    assert table(legacy('list').out)[2][2] == 'deferred*'
    assert legacy('mark', '-d', '20170101000000').out.strip() == (
        'Migration 20170101000000 marked as deferred')
    assert table(legacy('list').out)[0][2] == 'deferred'
    result = legacy('migrate', '--no-diff')
    assert 'Skipping deferred migration 20170101000000 create-books' in result.out
    assert legacy('mark', '-f', '20170101000000').out.strip() == (
        'Migration 20170101000000 marked as not been run')
    assert table(legacy('list').out)[0][2] == 'False'


def test_non_migration_files_are_left_alone(legacy, tmp_path):
    result = legacy('list')
    assert result.code == 0
    assert 'README' not in result.out and 'fulltext.sql' not in result.out
    assert '_books' not in result.out


def test_ini_without_app_section_reads_settings_as_1x(run, db, tmp_path):
    shutil.copytree(LEGACY, tmp_path / 'migrations')
    ini = tmp_path / 'development.ini'
    ini.write_text('[dbmigrator]\ndb-connection-string = %s\n\n[other]\n'
                   'migrations-directory = %s\n' % (db.dsn, tmp_path / 'migrations'))
    result = run('--config=%s' % ini, 'init', '--version=0')
    assert result.code == 0, result
    assert len(table(run('--config=%s' % ini, 'list').out)) == 5


def test_context_by_distribution_or_import_name(run, db, tmp_path, monkeypatch):
    """--context takes the distribution name or, as 1.x did, the import name."""
    site = tmp_path / 'site'
    package = site / 'cnxbooks'
    shutil.copytree(LEGACY, package / 'migrations')
    (package / '__init__.py').write_text(
        'import os\n\n\ndef migrations_directory():\n'
        '    return os.path.join(os.path.dirname(__file__), "migrations")\n')
    info = site / 'cnx_books-1.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: cnx-books\nVersion: 1.0\n')
    (info / 'top_level.txt').write_text('cnxbooks\n')
    (info / 'entry_points.txt').write_text(
        '[dbmigrator]\nmigrations_directory = cnxbooks:migrations_directory\n')
    monkeypatch.syspath_prepend(str(site))
    for context in ('cnx-books', 'cnxbooks'):
        result = run('--db-connection-string', db.dsn, '--context', context, 'list')
        assert result.code == 0, result
        assert len(table(result.out)) == 5
    wrong = run('--db-connection-string', db.dsn, '--context', 'no_such_package', 'list')
    assert wrong.code == 2
    assert "context 'no_such_package' is not an installed package" in wrong.err

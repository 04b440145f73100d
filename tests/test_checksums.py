"""Edited and missing migrations are reported by list and migrate."""
import json
import os
import re
import sys

from tests.test_init_list import rows


def test_changed_file_is_flagged_until_marked_again(dbm, migrations, db):
    path = migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')
    dbm('migrate', '--version', '20200101000000')
    stored = db.query('SELECT checksum FROM dbmigrator_checksums')[0][0]
    assert re.match(r'^[0-9a-f]{64}$', stored)
    assert '(changed' not in dbm('list').out

    path.write_text(path.read_text() + '\n# edited after it ran\n')
    listing = dbm('list')
    assert re.search(r'20200101000000\s+a\s+True\s+\S+ \S+\s+\(changed since applied\)',
                     listing.out)
    result = dbm('migrate', '--no-diff')
    assert 'Warning: migration 20200101000000 a was changed after it was applied' in result.err
    assert 'Running migration 20200102000000 b' in result.out

    applied = db.query("SELECT applied FROM schema_migrations WHERE version = '20200101000000'")
    assert dbm('mark', '-t', '20200101000000').code == 0
    assert '(changed' not in dbm('list').out
    assert 'changed' not in dbm('migrate').err
    # Accepting the edit keeps the date it was applied, and says so in the history.
    assert db.query("SELECT applied FROM schema_migrations WHERE version = '20200101000000'"
                    ) == applied
    history = json.loads(dbm('--format', 'json', 'history', '--version', '20200101000000').out)
    assert history['steps'][0]['action'] == 'mark completed'
    assert history['steps'][0]['state'] == 'completed'
    assert history['steps'][0]['output'] == (
        'accepted the file as it is now; the date applied is kept')
    assert 'mark completed' in dbm('history').out


def test_missing_file_of_applied_version(dbm, migrations):
    path = migrations.table('20200101000000', 'a', 'ta')
    dbm('migrate')
    path.unlink()
    migrations.add('20200102000000', 'b')
    table = rows(dbm('list').out)
    assert table[0][0] == '20200101000000'
    assert table[0][-1] == '(file missing)'
    assert table[1][:3] == ['20200102000000', 'b', 'False']
    result = dbm('migrate')
    assert 'migration 20200101000000 is applied but its file is missing' in result.err


def test_repeat_migrations_are_exempt(dbm, migrations):
    path = migrations.never_due('20200101000000', 'repeat')
    dbm('init')
    path.write_text(path.read_text() + '\n# tweaked\n')
    assert 'changed' not in dbm('list').out
    assert 'changed' not in dbm('migrate').err


def test_original_tool_table_is_left_as_1x_made_it(dbm, migrations, db):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)')
    db.query("INSERT INTO schema_migrations VALUES ('20200101000000', '2016-01-31')")
    db.query('CREATE TABLE ta (id INT)')
    result = dbm('migrate', '--no-diff')
    assert result.code == 0, result
    assert result.out.strip() == 'Running migration 20200102000000 b'
    assert db.columns('schema_migrations') == ['version', 'applied']
    checksums = dict(db.query('SELECT version, checksum FROM dbmigrator_checksums'))
    assert '20200101000000' not in checksums
    assert len(checksums['20200102000000']) == 64
    assert '(changed' not in dbm('list').out


def test_compiled_migrations_are_kept_and_never_stale(dbm, migrations, db, monkeypatch):
    monkeypatch.setattr(sys, 'dont_write_bytecode', False)  # as most users run it
    path = migrations.table('20200101000000', 'a', 'taaa')
    stat = path.stat()
    dbm('list')
    [cached] = (migrations.path / '__pycache__').iterdir()
    assert cached.name.startswith('20200101000000_a.')
    # Rewritten to the same size with the same mtime: a timestamp-checked
    # cache would run the old code.
    path.write_text(path.read_text().replace('taaa', 'tbbb'))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert dbm('migrate', '--no-diff').code == 0
    assert db.query("SELECT relname FROM pg_class WHERE relname LIKE 't___'") == [('tbbb',)]


def test_a_folder_where_no_cache_can_be_written_still_loads(dbm, migrations, db, monkeypatch):
    monkeypatch.setattr(sys, 'dont_write_bytecode', False)
    migrations.table('20200101000000', 'a', 'ta')
    # A plain file where the cache folder would go: nothing can be written
    # there, even by root, as in a read-only deploy.
    (migrations.path / '__pycache__').write_text('not a folder')
    result = dbm('migrate', '--no-diff')
    assert result.code == 0, result.err
    assert result.err == ''
    assert db.query("SELECT count(*) FROM pg_class WHERE relname = 'ta'") == [(1,)]


def test_an_earlier_releases_checksum_column_moves_out_with_its_values(dbm, migrations, db):
    path = migrations.table('20200101000000', 'a', 'ta')
    migrations.table('20200102000000', 'b', 'tb')
    db.query('CREATE TABLE schema_migrations (version TEXT NOT NULL,'
             ' applied TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP, checksum TEXT)')
    db.query("INSERT INTO schema_migrations VALUES ('20200101000000', '2016-01-31', 'old')")
    db.query('CREATE TABLE ta (id INT)')
    assert '(changed since applied)' in dbm('list').out
    assert dbm('migrate', '--no-diff').code == 0
    assert db.columns('schema_migrations') == ['version', 'applied']
    assert dict(db.query('SELECT version, checksum FROM dbmigrator_checksums'))[
        '20200101000000'] == 'old'
    assert '(changed since applied)' in dbm('list').out
    assert dbm('mark', '-t', path.name[:14]).code == 0
    assert '(changed' not in dbm('list').out


def test_a_step_re_applied_by_1x_is_not_taken_for_an_edit(dbm, migrations, db):
    path = migrations.table('20200101000000', 'a', 'ta')
    dbm('migrate')
    path.write_text(path.read_text() + '\n# edited, then re-applied by db-migrator 1.x\n')
    db.query("UPDATE schema_migrations SET applied = now() + interval '1 minute'")
    assert '(changed' not in dbm('list').out

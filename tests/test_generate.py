import re

from dbmigrator.commands import TEMPLATE


def test_generate_writes_skeleton(run, tmp_path):
    target = tmp_path / 'new' / 'migrations'
    result = run('--migrations-directory', target, 'generate', 'add_id_to_users')
    assert result.code == 0, result
    files = list(target.iterdir())
    assert len(files) == 1
    assert re.match(r'^\d{14}_add_id_to_users\.py$', files[0].name)
    content = files[0].read_text()
    assert '# def should_run(cursor):' in content
    assert 'def up(cursor):' in content and 'def down(cursor):' in content
    assert content == TEMPLATE
    assert str(files[0]) in result.out


def test_generated_file_is_a_runnable_migration(dbm, migrations, db):
    assert dbm('generate', 'first_step').code == 0
    result = dbm('migrate')
    assert result.code == 0, result
    assert re.search(r'Running migration \d{14} first_step', result.out)
    assert len(db.versions()) == 1


def test_generate_refuses_bad_names(run, tmp_path):
    for bad in ('add-id', '1abc', 'has space', 'dots.py', ''):
        result = run('--migrations-directory', tmp_path, 'generate', bad)
        assert result.code == 2, bad
        assert 'is not valid' in result.err
        assert 'Traceback' not in result.output
    assert list(tmp_path.iterdir()) == []

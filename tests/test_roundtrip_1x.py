"""The real db-migrator 1.1.0 and dbmigrator take turns on one database.

A team trying dbmigrator must be able to go back to 1.1.0, or run both
during a transition.  1.1.0 comes from PyPI, installed by the suite into a
folder of its own (its import name is ``dbmigrator`` too, so it runs in a
process of its own with that folder first on its path).
"""
import os
import shutil
import subprocess
import sys

import pytest

from dbmigrator import embedded
from tests.test_compat_1x import LEGACY


@pytest.fixture(scope='session')
def original(tmp_path_factory):
    target = tmp_path_factory.mktemp('db-migrator-1.1.0')
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                    '--disable-pip-version-check', '--target', str(target),
                    'db-migrator==1.1.0'], check=True, capture_output=True)
    return target


@pytest.fixture
def both(original, tmp_path, db, run):
    folder = tmp_path / 'migrations'
    shutil.copytree(LEGACY, folder)
    common = ['--db-connection-string', db.dsn, '--migrations-directory', str(folder)]
    env = dict(os.environ, PYTHONPATH=str(original),
               PATH=embedded.bin_dir() + os.pathsep + os.environ['PATH'])

    def old(*argv):
        result = subprocess.run(
            [sys.executable, '-c', 'import sys; from dbmigrator.cli import main; '
             'sys.exit(main())'] + common + list(argv),
            capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
        assert 'site-packages/dbmigrator' not in result.stderr
        return result

    def new(*argv):
        return run(*common, *argv)
    return old, new


def applied(listing):
    return [line.split()[0] for line in listing.splitlines()[2:]
            if len(line.split()) > 2 and line.split()[2] == 'True']


def test_1x_works_after_dbmigrator_and_back(both, db):
    old, new = both
    assert new('migrate', '--version', '20170102000000').code == 0
    listed = old('list')
    assert listed.returncode == 0, listed.stderr
    assert applied(listed.stdout) == ['20170101000000', '20170102000000']
    migrated = old('migrate')
    assert migrated.returncode == 0, migrated.stderr
    assert '20170104000000' in applied(old('list').stdout)
    rolled = old('rollback')
    assert rolled.returncode == 0, rolled.stderr
    assert new('list').code == 0
    assert new('migrate').code == 0
    assert new('rollback').code == 0
    final = old('list')
    assert final.returncode == 0, final.stderr
    assert applied(final.stdout) == applied(new('list').out)
    assert db.columns('schema_migrations') == ['version', 'applied']


def test_dbmigrator_works_after_1x(both, db):
    old, new = both
    assert old('init', '--version', '0').returncode == 0
    migrated = old('migrate')
    assert migrated.returncode == 0, migrated.stderr
    before = applied(old('list').stdout)
    assert new('rollback').code == 0
    assert new('migrate').code == 0
    assert applied(new('list').out) == before
    assert old('rollback').returncode == 0
    assert old('list').returncode == 0


def test_rollback_after_run_deferred_matches_1x(both, db):
    """1.1.0 rolls back the deferred repeat migration that --run-deferred just ran."""
    old, new = both
    left = {}
    for name, tool in (('1.1.0', lambda *a: old(*a).returncode),
                       ('dbmigrator', lambda *a: new(*a).code)):
        db.query('DROP TABLE IF EXISTS schema_migrations, dbmigrator_checksums,'
                 ' dbmigrator_history, dbmigrator_lock, books, cleanup_done CASCADE')
        for argv in (('init', '--version', '0'), ('migrate',), ('migrate', '--run-deferred'),
                     ('rollback', '--steps', '2')):
            assert tool(*argv) == 0, (name, argv)
        left[name] = db.query('SELECT version, applied IS NOT NULL FROM schema_migrations'
                              ' ORDER BY version')
    assert left['dbmigrator'] == left['1.1.0']
    assert ('20170103000000', False) not in left['1.1.0']

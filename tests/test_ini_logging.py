"""pserve-style config URIs and logging configured from the ini file."""
import textwrap

LOGGING = '''
[loggers]
keys = root, dbmigrator

[handlers]
keys = out

[formatters]
keys = tagged

[logger_root]
level = WARN
handlers = out

[logger_dbmigrator]
level = INFO
handlers =
qualname = dbmigrator

[handler_out]
class = StreamHandler
args = (sys.stdout,)
formatter = tagged

[formatter_tagged]
format = LOG %(levelname)s [%(name)s] %(message)s
'''


def ini(tmp_path, db, migrations, logging=True):
    path = tmp_path / 'app.ini'
    path.write_text(textwrap.dedent('''\
        [app:main]
        db-connection-string = %s
        migrations-directory = %s
        ''' % (db.dsn, migrations.path)) + (LOGGING if logging else ''))
    return path


def test_logging_sections_configure_output(spawn, tmp_path, db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    result = spawn(ini(tmp_path, db, migrations), 'migrate', '--no-diff')
    assert result.returncode == 0, result.stderr
    assert 'LOG INFO [dbmigrator.runner] Running migration 20200101000000 a' in result.stdout


def test_quiet_and_verbose_override_the_ini_level(spawn, tmp_path, db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    migrations.never_due('20200102000000', 'repeat')
    config = ini(tmp_path, db, migrations)
    quiet = spawn(config, '-q', 'migrate', '--no-diff')
    assert quiet.returncode == 0
    assert quiet.stdout == ''
    assert db.versions() == ['20200101000000']
    verbose = spawn(config, '-v', 'migrate', '--no-diff')
    assert 'LOG INFO [dbmigrator.runner] Skipping migration 20200102000000 repeat: should_run is false' in (
        verbose.stdout)


def test_without_logging_sections_output_is_plain(spawn, tmp_path, db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    result = spawn(ini(tmp_path, db, migrations, logging=False), 'migrate', '--no-diff')
    assert result.stdout == ('Created the schema_migrations table in the empty database.\n'
                             'Running migration 20200101000000 a\n')


def test_config_uri_with_section_as_first_argument(spawn, tmp_path, db, migrations):
    migrations.table('20200101000000', 'a', 'ta')
    path = tmp_path / 'multi.ini'
    path.write_text('[app:main]\ndb-connection-string = postgresql://x@/nowhere\n'
                    '[app:api]\ndb-connection-string = %s\nmigrations-directory = %s\n'
                    % (db.dsn, migrations.path))
    result = spawn('%s#api' % path, 'migrate', '--no-diff')
    assert result.returncode == 0, result.stderr
    assert db.versions() == ['20200101000000']

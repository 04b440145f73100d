"""lint: a corpus of statements, each with the rule it must raise (or none),
traced on a scratch copy of a target whose tables hold rows."""
import json
import subprocess
import textwrap

import pytest

from dbmigrator import embedded

SCHEMA = '''
CREATE TABLE other (id INT PRIMARY KEY);
INSERT INTO other SELECT generate_series(0, 9);
CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(10), n INT, t TEXT);
INSERT INTO big SELECT i, 'v' || (i % 100), i % 10, 't' FROM generate_series(1, 2000) i;
CREATE INDEX big_n_idx ON big (n);
CREATE UNIQUE INDEX big_id_unique ON big (id);
ALTER TABLE big ADD CONSTRAINT big_n_positive CHECK (n >= 0) NOT VALID;
CREATE TABLE checked (id INT, n INT, CONSTRAINT checked_n CHECK (n IS NOT NULL));
INSERT INTO checked SELECT i, i FROM generate_series(1, 2000) i;
CREATE TABLE keyless (id INT);
INSERT INTO keyless SELECT generate_series(1, 2000);
CREATE TABLE doomed (id INT);
INSERT INTO doomed SELECT generate_series(1, 2000);
CREATE TABLE tiny (id INT);
INSERT INTO tiny VALUES (1);
ANALYZE;
'''

ATOMIC = [
    ('ALTER TABLE big ADD COLUMN u uuid DEFAULT gen_random_uuid()', {'table-rewrite'}),
    ('ALTER TABLE big ADD COLUMN c INT', set()),
    ('ALTER TABLE big ADD COLUMN c INT DEFAULT 0', set()),
    ('ALTER TABLE big ADD COLUMN c TIMESTAMPTZ DEFAULT now()', set()),
    ('ALTER TABLE big ADD COLUMN s SERIAL', {'table-rewrite'}),
    ('ALTER TABLE big ADD COLUMN g INT GENERATED ALWAYS AS IDENTITY', {'table-rewrite'}),
    ('ALTER TABLE big ADD COLUMN g INT GENERATED ALWAYS AS (n * 2) STORED', {'table-rewrite'}),
    ('ALTER TABLE big ALTER COLUMN v TYPE VARCHAR(20)', set()),
    ('ALTER TABLE big ALTER COLUMN v TYPE TEXT', set()),
    ('ALTER TABLE big ALTER COLUMN n TYPE BIGINT', {'table-rewrite'}),
    ('ALTER TABLE big SET UNLOGGED', {'table-rewrite'}),
    ('CREATE INDEX big_v ON big (v)', {'blocking-index'}),
    ('CREATE UNIQUE INDEX big_v_id ON big (v, id)', {'blocking-index'}),
    ('DROP INDEX big_n_idx', {'blocking-index'}),
    ('REINDEX INDEX big_n_idx', {'blocking-index'}),
    ('ALTER TABLE big ADD CONSTRAINT big_n_small CHECK (n < 100)', {'validating-constraint'}),
    ('ALTER TABLE big ADD CONSTRAINT big_n_small CHECK (n < 100) NOT VALID', set()),
    ('ALTER TABLE big VALIDATE CONSTRAINT big_n_positive', set()),
    ('ALTER TABLE big ADD CONSTRAINT big_other FOREIGN KEY (n) REFERENCES other (id)',
     {'validating-constraint'}),
    ('ALTER TABLE big ADD CONSTRAINT big_other FOREIGN KEY (n) REFERENCES other (id) NOT VALID',
     set()),
    ('ALTER TABLE big ADD CONSTRAINT big_v_n UNIQUE (v, n, id)', {'validating-constraint'}),
    ('ALTER TABLE keyless ADD PRIMARY KEY (id)', {'validating-constraint'}),
    ('ALTER TABLE big ADD CONSTRAINT big_id_key UNIQUE USING INDEX big_id_unique', set()),
    ('ALTER TABLE big ADD CONSTRAINT big_no_overlap EXCLUDE USING btree (id WITH =)',
     {'validating-constraint'}),
    ('ALTER TABLE big ALTER COLUMN n SET NOT NULL', {'validating-constraint'}),
    ('ALTER TABLE checked ALTER COLUMN n SET NOT NULL', set()),
    ('DROP TABLE doomed', {'breaking-change'}),
    ('ALTER TABLE doomed RENAME TO renamed', {'breaking-change'}),
    ('ALTER TABLE big DROP COLUMN t', {'breaking-change'}),
    ('ALTER TABLE big RENAME COLUMN t TO t2', {'breaking-change'}),
    ('UPDATE big SET n = 0', {'whole-table-update'}),
    ('UPDATE big SET n = 0 WHERE id = 1', set()),
    ('DELETE FROM big', {'whole-table-update'}),
    ('INSERT INTO big VALUES (0, \'x\', 1, \'y\')', set()),
    ("COMMENT ON TABLE big IS 'the big one'", set()),
    ('CREATE VIEW big_view AS SELECT id, v FROM big', set()),
    ('ALTER TABLE big ALTER COLUMN n SET DEFAULT 5', set()),
    ('CREATE TABLE fresh (id INT PRIMARY KEY, n INT NOT NULL DEFAULT 0)', set()),
    (['CREATE TABLE fresh (id INT, n INT)', 'CREATE INDEX fresh_n ON fresh (n)',
      'ALTER TABLE fresh ADD CONSTRAINT fresh_n CHECK (n > 0)',
      'ALTER TABLE fresh ADD FOREIGN KEY (n) REFERENCES other (id)',
      'ALTER TABLE fresh ALTER COLUMN n SET NOT NULL'], set()),
    (['ALTER TABLE big ADD COLUMN c INT DEFAULT 0',
      'UPDATE big SET c = 1 WHERE id < 10'], {'held-exclusive-lock'}),
    (['ALTER TABLE big ADD COLUMN c INT', 'ALTER TABLE big ADD COLUMN d INT'],
     {'held-exclusive-lock'}),
]

NON_ATOMIC = [
    ('CREATE INDEX CONCURRENTLY big_v ON big (v)', set()),
    ('DROP INDEX CONCURRENTLY big_n_idx', set()),
    ('VACUUM FULL big', {'table-rewrite'}),
    ('CLUSTER big USING big_pkey', {'table-rewrite'}),
    ('CREATE INDEX big_v ON big (v)', {'blocking-index'}),
]


def body(statements, atomic):
    statements = [statements] if isinstance(statements, str) else statements
    lines = ['atomic = False', '', ''] if not atomic else []
    lines.append('def up(cursor):')
    lines.extend('    cursor.execute(%r)' % s for s in statements)
    return '\n'.join(lines) + '\n'


@pytest.fixture
def target(db, dbm):
    db.query(SCHEMA)
    assert dbm('init', '--version', '0').code == 0
    return db


def lint_json(dbm, *argv):
    result = dbm('--format', 'json', 'lint', '--big-table-rows', '1000', *argv)
    assert result.code in (0, 1), result
    return result.code, json.loads(result.out)


CASES = [(s, True, rules) for s, rules in ATOMIC] + [(s, False, r) for s, r in NON_ATOMIC]


@pytest.mark.parametrize('statements, atomic, expected', CASES,
                         ids=[(s if isinstance(s, str) else ' + '.join(s))[:60]
                              for s, _, _ in CASES])
def test_corpus(target, dbm, migrations, statements, atomic, expected):
    migrations.add('20300101000000', 'change', body(statements, atomic))
    code, document = lint_json(dbm)
    assert document['failure'] is None, document['failure']
    assert {f['rule'] for f in document['findings']} == expected, document['findings']
    errors = [f for f in document['findings'] if f['severity'] == 'error']
    assert code == (1 if errors else 0)
    assert [m['version'] for m in document['migrations']] == ['20300101000000']


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 40


def test_a_finding_names_everything_an_operator_needs(target, dbm, migrations):
    migrations.add('20300101000000', 'add_uuid', '''\
        def up(cursor):
            cursor.execute('SELECT 1')
            cursor.execute('ALTER TABLE big ADD COLUMN u uuid DEFAULT gen_random_uuid()')
        ''')
    code, document = lint_json(dbm)
    assert code == 1
    [finding] = document['findings']
    assert finding == {
        'version': '20300101000000', 'name': 'add_uuid', 'rule': 'table-rewrite',
        'severity': 'error', 'relation': 'public.big', 'lock': 'AccessExclusiveLock',
        'blocks': 'reads and writes', 'rewrite': True, 'scan': False,
        'rows': 2000, 'bytes': finding['bytes'],
        'statement': 'ALTER TABLE big ADD COLUMN u uuid DEFAULT gen_random_uuid()',
        'line': 3, 'advice': finding['advice'], 'accepted': False}
    assert finding['bytes'] > 100000
    assert 'backfill it in batches, then set the default' in finding['advice']
    assert document['ok'] is False
    assert '+    u uuid DEFAULT gen_random_uuid()' in document['migrations'][0]['diff']
    text = dbm('lint', '--big-table-rows', '1000')
    assert text.code == 1
    assert text.out.splitlines()[0] == (
        'error   table-rewrite 20300101000000 add_uuid line 3: public.big (2,000 rows, '
        '%s): rewritten under AccessExclusiveLock, which blocks reads and writes'
        % text.out.split('rows, ')[1].split(')')[0])
    assert text.out.splitlines()[-1].startswith(
        'lint: 1 error, 0 warnings in 1 migration traced on dbmigrator_lint_')


def test_below_the_threshold_it_is_a_warning_and_strict_fails_on_it(target, dbm, migrations):
    migrations.add('20300101000000', 'tiny_index', body('CREATE INDEX ON tiny (id)', True))
    code, document = lint_json(dbm)
    assert code == 0 and document['ok'] is True
    assert [(f['rule'], f['severity']) for f in document['findings']] == [
        ('blocking-index', 'warning')]
    assert dbm('lint', '--big-table-rows', '1000', '--strict').code == 1


def test_an_accepted_finding_is_shown_and_fails_nothing(target, dbm, migrations):
    migrations.add('20300101000000', 'accepted', "lint_accept = ['table-rewrite']\n\n\n"
                   + body('ALTER TABLE big ALTER COLUMN n TYPE BIGINT', True))
    code, document = lint_json(dbm)
    assert code == 0
    assert [(f['rule'], f['accepted']) for f in document['findings']] == [
        ('table-rewrite', True)]
    assert '(accepted)' in dbm('lint', '--big-table-rows', '1000').out


def test_a_super_user_cursor_is_traced_too(target, dbm, migrations):
    migrations.add('20300101000000', 'as_super_user', '''\
        from dbmigrator import super_user


        def up(cursor):
            with super_user() as su:
                su.execute('CREATE INDEX big_v ON big (v)')
        ''')
    code, document = lint_json(dbm)
    assert [f['rule'] for f in document['findings']] == ['blocking-index']
    assert document['findings'][0]['line'] == 6


def dump(db):
    out = subprocess.run([embedded.bin_dir() + '/pg_dump', '--schema-only', db.dsn],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if not line.startswith(('\\restrict',
                                                                      '\\unrestrict'))]


def test_the_target_is_never_written(target, dbm, migrations):
    migrations.add('20300101000000', 'rewrite',
                   body(['ALTER TABLE big ADD COLUMN u uuid DEFAULT gen_random_uuid()',
                         'DELETE FROM big', 'DROP TABLE doomed'], True))
    before = (dump(target), target.query('SELECT count(*), sum(id) FROM big'),
              target.query('SELECT * FROM schema_migrations ORDER BY version'),
              target.query("SELECT datname FROM pg_database WHERE datname LIKE 'dbmigrator_%'"))
    code, document = lint_json(dbm)
    assert code == 1 and len(document['findings']) >= 3
    after = (dump(target), target.query('SELECT count(*), sum(id) FROM big'),
             target.query('SELECT * FROM schema_migrations ORDER BY version'),
             target.query("SELECT datname FROM pg_database WHERE datname LIKE 'dbmigrator_%'"))
    assert after == before


def test_only_pending_migrations_are_traced_and_all_traces_every_one(target, dbm, migrations):
    migrations.add('20200101000000', 'old', body('CREATE TABLE t_old (id INT)', True))
    dbm('mark', '-t', '20200101000000')
    migrations.add('20300101000000', 'new', body('CREATE TABLE t_new (id INT)', True))
    _, document = lint_json(dbm)
    assert [m['version'] for m in document['migrations']] == ['20300101000000']
    code, document = lint_json(dbm, '--all')
    assert code == 0
    assert [m['version'] for m in document['migrations']] == ['20200101000000',
                                                              '20300101000000']


def test_a_migration_that_fails_on_the_copy_is_reported(target, dbm, migrations):
    migrations.add('20300101000000', 'broken', body('ALTER TABLE nowhere ADD COLUMN c INT',
                                                    True))
    code, document = lint_json(dbm)
    assert code == 1
    assert 'relation "nowhere" does not exist' in document['failure']


def test_an_embedded_scratch_server(target, dbm, migrations):
    migrations.add('20300101000000', 'index', body('CREATE INDEX big_v ON big (v)', True))
    code, document = lint_json(dbm, '--scratch', 'embedded')
    assert code == 1
    assert document['scratch']['where'] == 'a throwaway embedded server'
    assert [f['rule'] for f in document['findings']] == ['blocking-index']


def test_bad_arguments_exit_2(dbm, migrations):
    result = dbm('lint', '--big-table-rows', '-5')
    assert result.code == 2, result
    assert textwrap.dedent(result.err).startswith('dbmigrator: error: ')


@pytest.mark.parametrize('mode', ['refuse', 'warn'])
def test_migrate_lints_first_when_the_ini_says_so(target, run, tmp_path, migrations, mode):
    from tests.test_attacks import write_ini
    ini = write_ini(tmp_path, target, migrations,
                    'lint = %s\nlint-big-table-rows = 1000\n' % mode)
    migrations.add('20300101000000', 'add_uuid',
                   body('ALTER TABLE big ADD COLUMN u uuid DEFAULT gen_random_uuid()', True))
    result = run(str(ini), 'migrate', '--no-diff')
    assert ('Warning: lint: error   table-rewrite 20300101000000 add_uuid line 2: public.big '
            '(2,000 rows, ') in result.err, result
    if mode == 'refuse':
        assert result.code == 1
        assert ('lint found 1 unaccepted error (above), so nothing was changed (lint = refuse)'
                in result.err)
        assert 'u' not in target.columns('big')
        assert '20300101000000' not in target.versions()
    else:
        assert result.code == 0, result
        assert 'u' in target.columns('big')


def test_lint_off_is_the_default_and_a_typo_is_bad_input(target, run, tmp_path, migrations):
    from tests.test_attacks import write_ini
    migrations.add('20300101000000', 'add_uuid',
                   body('ALTER TABLE big ADD COLUMN u uuid DEFAULT gen_random_uuid()', True))
    result = run(str(write_ini(tmp_path, target, migrations, 'lint = refuze\n')), 'migrate')
    assert result.code == 2
    assert 'lint = refuze is not known: use one of off, warn, refuse' in result.err
    result = run(str(write_ini(tmp_path, target, migrations, '')), 'migrate', '--no-diff')
    assert result.code == 0 and 'lint' not in result.err

"""The rules: their names (a contract), what they say, and how severe they are."""
import dataclasses

TABLE_REWRITE = 'table-rewrite'
BLOCKING_INDEX = 'blocking-index'
VALIDATING_CONSTRAINT = 'validating-constraint'
HELD_EXCLUSIVE_LOCK = 'held-exclusive-lock'
WHOLE_TABLE_UPDATE = 'whole-table-update'
BREAKING_CHANGE = 'breaking-change'

ADVICE = {
    TABLE_REWRITE: 'add the column without a default (or with a constant one), backfill it in '
                   'batches, then set the default; for a type change, add a new column, '
                   'backfill it and switch over',
    BLOCKING_INDEX: 'use CREATE INDEX CONCURRENTLY (DROP INDEX / REINDEX ... CONCURRENTLY) in '
                    'a migration of its own with atomic = False',
    VALIDATING_CONSTRAINT: 'add it NOT VALID now and VALIDATE CONSTRAINT in a later migration; '
                           'for SET NOT NULL, validate a CHECK (col IS NOT NULL) first; for '
                           'UNIQUE or PRIMARY KEY, build the index CONCURRENTLY and add the '
                           'constraint USING INDEX',
    HELD_EXCLUSIVE_LOCK: 'move this statement to a migration of its own, or before the one '
                         'that takes the ACCESS EXCLUSIVE lock, which is held until COMMIT',
    WHOLE_TABLE_UPDATE: 'update in batches of a few thousand rows, each committed on its own '
                        '(a non-atomic migration with a loop)',
    BREAKING_CHANGE: 'first deploy code that no longer uses it; drop or rename it in a later '
                     'release (for a rename: add the new name, write both, drop the old)',
}
RULES = tuple(ADVICE)

# Rules that say something about the migration's shape, whatever the size.
ALWAYS_WARNINGS = (HELD_EXCLUSIVE_LOCK, BREAKING_CHANGE)

BLOCKS = {'AccessExclusiveLock': 'reads and writes', 'ExclusiveLock': 'writes',
          'ShareRowExclusiveLock': 'writes', 'ShareLock': 'writes',
          'ShareUpdateExclusiveLock': 'other schema changes',
          'RowExclusiveLock': 'writes to the rows it changes'}

ERROR, WARNING = 'error', 'warning'


@dataclasses.dataclass
class Finding:
    version: str
    name: str
    rule: str
    relation: str
    lock: str
    statement: str
    line: int
    rewrite: bool = False
    scan: bool = False
    rows: int = None
    bytes: int = None
    severity: str = WARNING
    accepted: bool = False

    @property
    def blocks(self):
        return BLOCKS.get(self.lock, 'nothing')

    @property
    def advice(self):
        return ADVICE[self.rule]

    def where(self):
        if self.rows is None:
            return '%s (not in the target)' % self.relation
        return '%s (%s rows, %s)' % (self.relation, format(self.rows, ','),
                                     _size(self.bytes or 0))

    def __str__(self):
        """Its first line: severity, rule, migration, line, table, lock."""
        return '%-7s %s %s %s%s: %s: %s under %s, which blocks %s%s' % (
            self.severity, self.rule, self.version, self.name,
            ' line %d' % self.line if self.line else '', self.where(),
            'rewritten' if self.rewrite else 'scanned' if self.scan else 'held',
            self.lock, self.blocks, ' (accepted)' if self.accepted else '')


def _size(count):
    for limit, suffix in ((1 << 40, 'TB'), (1 << 30, 'GB'), (1 << 20, 'MB'), (1 << 10, 'kB')):
        if count >= limit:
            return '%.1f %s' % (count / limit, suffix)
    return '%d bytes' % count


def severity(rule, rows, big_table_rows):
    """error from the big-table threshold up, in the target; warning below it."""
    if rule in ALWAYS_WARNINGS or rows is None or rows < big_table_rows:
        return WARNING
    return ERROR

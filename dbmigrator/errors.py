"""Exceptions that carry the exit code the console script reports."""

EXIT_MIGRATION_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCK_TIMEOUT = 3
EXIT_CHECK_PENDING = 4
EXIT_DRIFT = 5
EXIT_INTERRUPTED = 130


class DBMigratorError(Exception):
    """A problem the user can fix; shown as one line, without a traceback."""

    exit_code = EXIT_USAGE


class SettingsError(DBMigratorError):
    """Settings, arguments or migration files are not usable."""


class DatabaseUnavailable(DBMigratorError):
    """The database could not be reached or refused the login."""


class DatabaseReadOnly(DBMigratorError):
    """The database refuses writes: read-only setting or a standby."""


class NotInitialized(DBMigratorError):
    """The schema_migrations table is missing."""


class MigrationFailed(DBMigratorError):
    """A migration raised; its transaction was rolled back."""

    exit_code = EXIT_MIGRATION_FAILED

    def __init__(self, message, steps=()):
        super().__init__(message)
        self.steps = list(steps)


class LockTimeout(DBMigratorError):
    """Another run kept the migration lock longer than --lock-wait."""

    exit_code = EXIT_LOCK_TIMEOUT


class Interrupted(DBMigratorError):
    """Ctrl-C: the running statement was cancelled and rolled back."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message, steps=()):
        super().__init__(message)
        self.steps = list(steps)


class Drift(DBMigratorError):
    """``--strict``: applied migrations were edited since, or their files are gone."""

    exit_code = EXIT_DRIFT

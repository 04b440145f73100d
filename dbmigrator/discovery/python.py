"""Python migration files: loaded by path under unique module names.

Their code is compiled once and kept in ``__pycache__`` beside them, as
db-migrator 1.x's ``__import__`` kept it, checked against the source's hash.
"""
import functools
import hashlib
import importlib.util
import inspect
import marshal
import os
import sys
import tempfile
import types

from ..errors import SettingsError
from . import error_line, read as _read


def load(version, name, path, data, checksum, source):
    """The module of one ``.py`` migration, run once; its functions checked."""
    module_name = 'dbmigrator._migrations.m%s_%s' % (
        version, hashlib.sha1(path.encode('utf-8', 'surrogateescape')).hexdigest()[:8])
    module = types.ModuleType(module_name)
    module.__file__ = path
    try:
        code = _code(path, data, source)
    except SyntaxError as exc:
        raise SettingsError('%s line %s: syntax error: %s' % (path, exc.lineno, exc.msg))
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)
    except KeyboardInterrupt:
        sys.modules.pop(module_name, None)
        raise
    except BaseException as exc:  # sys.exit() at module level must not end dbmigrator
        sys.modules.pop(module_name, None)
        what = 'it called sys.exit(%s)' % ('' if exc.code is None else repr(exc.code)) if (
            isinstance(exc, SystemExit)) else '%s: %s' % (type(exc).__name__, exc)
        raise SettingsError('%s line %s: cannot load the migration: %s' % (
            path, error_line(exc, path), what))
    if not callable(getattr(module, 'up', None)):
        raise SettingsError('%s has no up(cursor) function: every migration needs one' % path)
    for function in ('up', 'down', 'should_run'):
        code_of = getattr(getattr(module, function, None), '__code__', None)
        if code_of is not None and code_of.co_flags & (
                inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_GENERATOR):
            raise SettingsError(
                '%s: %s is an async function or a generator, so calling it would not run its '
                'body: write it as a plain def %s(cursor)' % (path, function, function))
    return module


# A PEP 552 pyc checked against the source's hash, never its mtime: a file
# rewritten within the same second at the same size is still recompiled.
_CHECKED_HASH = (0b11).to_bytes(4, 'little')


def _code(path, data, source):
    """The migration's code, from ``__pycache__`` when the cached file matches its source.

    db-migrator 1.x imported migrations with ``__import__``, which keeps
    ``__pycache__`` beside them too; compiling thousands of files on every
    run is most of what ``list`` and ``migrate`` cost on a large project.
    """
    cache = _cache_path(path)
    header = importlib.util.MAGIC_NUMBER + _CHECKED_HASH + importlib.util.source_hash(data)
    code = _read_cache(cache, header, path) if cache is not None else None
    if code is not None:
        return code
    code = compile(source, path, 'exec', dont_inherit=True)
    if cache is not None and not sys.dont_write_bytecode:
        _write_cache(cache, header + marshal.dumps(code), path)
    return code


@functools.lru_cache(maxsize=None)
def _cache_folder(directory):
    """Where the pycs of a folder's files go, and how their names end: asked of
    importlib once per folder (it honours PYTHONPYCACHEPREFIX), not once per file."""
    try:
        cache = importlib.util.cache_from_source(os.path.join(directory, 'm.py'))
    except (NotImplementedError, ValueError):
        return None
    folder, name = os.path.split(cache)
    return folder, name[1:]


def _cache_path(path):
    directory, filename = os.path.split(path)
    where = _cache_folder(directory)
    return None if where is None else os.path.join(where[0], filename[:-3] + where[1])


def _read_cache(cache, header, path):
    """The cached code when the file is there and its header matches; else None."""
    try:
        cached = _read(cache)
    except OSError:
        return None
    if cached[:16] != header:
        return None
    try:
        code = marshal.loads(cached[16:])
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, types.CodeType) and code.co_filename == path else None


def _write_cache(cache, content, source_path):
    """Write a cache file whole or not at all; a read-only folder just goes without."""
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(cache), suffix='.tmp')
        try:
            with os.fdopen(handle, 'wb') as out:
                out.write(content)
            os.chmod(temporary, os.stat(source_path).st_mode & 0o666)
            os.replace(temporary, cache)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        pass

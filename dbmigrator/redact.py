"""Keeping database passwords out of every message, log line and page.

Redaction is structural: it masks passwords where they can occur, never by
replacing a string everywhere, which corrupts output (a password ``true``
would turn ``"atomic": true`` into invalid JSON) and shows the password by
contrast (``***lied_at`` for a password ``app``).

* Connection strings (URIs' ``user:password@``, ``password=...`` pairs,
  ``PGPASSWORD=...``) and SQL ``PASSWORD '...'`` literals are masked in any
  text: :func:`redact`.
* Free text that the database, libpq or a migration produced (error
  messages, the lines migrations log) may quote a password anywhere, so a
  password registered when its connection string was resolved is masked
  there too, as a whole token only: :func:`scrub`.
* dbmigrator's own lines (versions, names, diffs, the ``list`` table, JSON
  keys and values) get :func:`redact` only: dbmigrator never writes a password
  into them.
"""
import functools
import logging
import os
import re
from urllib.parse import urlsplit, urlunsplit

MASK = '***'

_secrets = set()

_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)
_URI_PASSWORD = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s/@:?#]*:)([^\s@/?#]*)(@)")
_SQL_PASSWORD = re.compile(r"(\bPASSWORD\s+)('(?:[^']|'')*'|\$\$.*?\$\$)", re.I | re.S)

#: Keys of a JSON document whose values are free text (messages).
MESSAGE_KEYS = frozenset(['error', 'message', 'problem', 'output', 'warnings'])


def register_secret(value):
    """Remember a password so that scrub() masks it in free text."""
    if value:
        _secrets.add(value)
        _secret_pattern.cache_clear()


def register_environment():
    register_secret(os.environ.get('PGPASSWORD'))


def redact(text):
    """Mask passwords in connection strings and SQL password literals."""
    text = str(text)
    # Each step's lines pass here; most have neither a URI nor a password.
    if '://' in text:
        text = _URI_PASSWORD.sub(r'\1' + MASK + r'\3', text)
    if 'password' in text.lower():
        text = _KEYWORD_PASSWORD.sub(r'\1' + MASK, text)
        text = _SQL_PASSWORD.sub(r'\1' + MASK, text)
    return text


@functools.lru_cache(maxsize=1)
def _secret_pattern():
    if not _secrets:
        return None
    alternatives = '|'.join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True))
    return re.compile(r'(?<![A-Za-z0-9_])(?:%s)(?![A-Za-z0-9_])' % alternatives)


def scrub(text):
    """Free text with passwords masked: structurally, and as whole tokens."""
    text = redact(text)
    pattern = _secret_pattern()
    return pattern.sub(MASK, text) if pattern is not None else text


def scrub_document(value, key=None):
    """A JSON-able document with its message values scrubbed, the rest redacted."""
    if isinstance(value, dict):
        return {k: scrub_document(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_document(v, key) for v in value]
    if isinstance(value, str):
        return scrub(value) if key in MESSAGE_KEYS else redact(value)
    return value


def passwords_in(dsn):
    """Passwords a connection string holds, found without libpq.

    Used before parsing so that even a malformed string cannot leak through
    libpq's error message.
    """
    found = [m.group(2).strip("'") for m in _KEYWORD_PASSWORD.finditer(dsn)]
    if '://' in dsn:
        netloc = dsn.split('://', 1)[1].split('/', 1)[0].split('?', 1)[0]
        userinfo = netloc.rpartition('@')[0]
        if ':' in userinfo:
            found.append(userinfo.split(':', 1)[1])
    return [p for p in found if p]


def redact_dsn(dsn):
    """The connection string with its password masked, for display."""
    if '://' in dsn:
        parts = urlsplit(dsn)
        userinfo, at, hostport = parts.netloc.rpartition('@')
        if at and ':' in userinfo:
            userinfo = userinfo.split(':', 1)[0] + ':' + MASK
        netloc = userinfo + at + hostport
        query = _KEYWORD_PASSWORD.sub(r'\1' + MASK, parts.query)
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    return _KEYWORD_PASSWORD.sub(r'\1' + MASK, dsn)


def _is_own(record):
    """A line dbmigrator's own modules wrote (not a migration's)."""
    return record.name.startswith('dbmigrator.') and not record.name.startswith(
        'dbmigrator._migrations')


class ScrubFilter(logging.Filter):
    """Logging filter: dbmigrator's own lines are redacted, free text scrubbed.

    An exception given as an argument of dbmigrator's own line is free text.
    """

    def filter(self, record):
        if _is_own(record):
            args = record.args
            if isinstance(args, tuple):
                args = tuple(scrub(a) if isinstance(a, BaseException) else a for a in args)
            message = redact(record.msg % args if args else record.msg)
        else:
            message = scrub(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True

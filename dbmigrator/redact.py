"""Keeping database passwords out of every message, log line and page.

Passwords are registered once when a connection string is resolved; every
output path (the CLI's log handlers and error line, the web pages) passes its
text through :func:`scrub`.
"""
import logging
import os
import re
from urllib.parse import urlsplit, urlunsplit

MASK = '***'

_secrets = set()

_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def register_secret(value):
    """Remember a password so that scrub() removes it from any text."""
    if value:
        _secrets.add(value)


def register_environment():
    register_secret(os.environ.get('PGPASSWORD'))


def scrub(text):
    text = str(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


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


class ScrubFilter(logging.Filter):
    """Logging filter that masks registered passwords in a record."""

    def filter(self, record):
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(
                logging.Formatter().formatException(record.exc_info))
        return True

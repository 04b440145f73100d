"""Splitting SQL into statements the way PostgreSQL reads it.

The lexer knows single-quoted strings (``''`` inside, and backslashes in
``E'...'``), double-quoted identifiers, dollar quotes (``$$`` and
``$tag$``), ``--`` comments and nested ``/* */`` comments, so a semicolon in
a function body or a literal never ends a statement.  It also finds what a
migration file must not hold: psql meta-commands, which only psql runs.
"""
import dataclasses
import re

_DOLLAR = re.compile(r'\$([A-Za-z_][A-Za-z0-9_]*)?\$')
_WORDS = re.compile(r'[A-Za-z_]+')


@dataclasses.dataclass
class Statement:
    text: str
    line: int    # where it starts, counted from the text's first line (1)
    column: int

    @property
    def words(self):
        """Its leading keywords, upper-cased, comments and literals aside."""
        return [w.upper() for w in _WORDS.findall(_code_only(self.text))[:6]]


class LexError(ValueError):
    def __init__(self, message, line):
        super().__init__(message)
        self.line = line


def split(text):
    """The statements of ``text``, each with where it starts; a psql
    meta-command or an unterminated quote or comment is a :class:`LexError`."""
    statements, start, i, line, n = [], 0, 0, 1, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if c == '\n':
            line, at_line_start = line + 1, True
            i += 1
            continue
        if at_line_start and c == '\\':
            raise LexError('a psql meta-command (%s) is not SQL: only psql runs those; write '
                           'the SQL it stands for' % text[i:].split()[0], line)
        if not c.isspace():
            at_line_start = False
        if text.startswith('--', i):
            i = text.find('\n', i)
            i = n if i < 0 else i
        elif text.startswith('/*', i):
            depth, i = 1, i + 2
            while depth and i < n:
                if text.startswith('/*', i):
                    depth, i = depth + 1, i + 2
                elif text.startswith('*/', i):
                    depth, i = depth - 1, i + 2
                else:
                    line += text[i] == '\n'
                    i += 1
            if depth:
                raise LexError('a /* comment is never closed', line)
        elif c in '\'"':
            escapes = c == "'" and i > 0 and text[i - 1] in 'eE' and (
                i < 2 or not (text[i - 2].isalnum() or text[i - 2] == '_'))
            j = i + 1
            while True:
                if j >= n:
                    raise LexError('a %s quote is never closed' % (
                        'single' if c == "'" else 'double'), line)
                if escapes and text[j] == '\\':
                    j += 2
                    continue
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                line += text[j] == '\n'
                j += 1
            i = j + 1
        elif c == '$' and _DOLLAR.match(text, i) and (i == 0 or not (
                text[i - 1].isalnum() or text[i - 1] == '_')):
            tag = _DOLLAR.match(text, i).group(0)
            end = text.find(tag, i + len(tag))
            if end < 0:
                raise LexError('a %s quote is never closed' % tag, line)
            line += text.count('\n', i, end)
            i = end + len(tag)
        elif c == ';':
            _add(statements, text[start:i], line, text, start)
            i += 1
            start = i
        else:
            i += 1
    _add(statements, text[start:], line, text, start)
    return statements


def _add(statements, chunk, line, text, offset):
    """A statement from ``text[offset:]``: its text from its first non-blank
    character (comments kept, so that the server's error positions match),
    and that character's line and column in ``text``."""
    if not _code_only(chunk).strip():
        return
    first = offset + len(chunk) - len(chunk.lstrip())
    line = text.count('\n', 0, first) + 1
    column = first - text.rfind('\n', 0, first)
    statements.append(Statement(chunk.strip(), line, column))


def locate(statement, position):
    """Line and column in the file of the server's 1-based error ``position``."""
    before = statement.text[:max(position - 1, 0)]
    if '\n' not in before:
        return statement.line, statement.column + len(before)
    return statement.line + before.count('\n'), len(before) - before.rfind('\n')


def _code_only(sql):
    """``sql`` without its comments and literals, for reading its keywords."""
    sql = re.sub(r'--[^\n]*', ' ', sql)
    sql = re.sub(r'/\*.*?\*/', ' ', sql, flags=re.S)
    sql = re.sub(r"'(?:[^']|'')*'", "''", sql)
    return re.sub(r'\$([A-Za-z_][A-Za-z0-9_]*)?\$.*?\$\1\$', "''", sql, flags=re.S)

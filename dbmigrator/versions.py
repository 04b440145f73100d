"""What a migration version is: ASCII digits, and not absurdly many.

``str.isdigit`` also accepts ``²`` and other Unicode digits, which ``int``
then refuses or reads differently; and Python refuses to convert integers of
more than 4300 digits.
"""
import re

MAX_DIGITS = 64

_VERSION = re.compile(r'[0-9]{1,%d}' % MAX_DIGITS)


def is_version(value):
    return isinstance(value, str) and _VERSION.fullmatch(value) is not None

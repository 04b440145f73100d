"""Salted password hashes for the standalone admin app (``dbmigrator hash-password``)."""
import base64
import hashlib
import hmac
import os

ALGORITHM = 'pbkdf2_sha256'
ITERATIONS = 260000


def _b64(data):
    return base64.b64encode(data).decode('ascii').rstrip('=')


def _unb64(text):
    return base64.b64decode(text + '=' * (-len(text) % 4))


def hash_password(password, salt=None, iterations=ITERATIONS):
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac('sha256', password.encode('utf-8'), salt, iterations)
    return '%s$%d$%s$%s' % (ALGORITHM, iterations, _b64(salt), _b64(digest))


def check_password(password, encoded):
    """True when ``password`` matches a hash made by :func:`hash_password`."""
    try:
        algorithm, iterations, salt, digest = encoded.strip().split('$')
        if algorithm != ALGORITHM:
            return False
        expected = _unb64(digest)
        actual = hashlib.pbkdf2_hmac('sha256', password.encode('utf-8'), _unb64(salt),
                                     int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)

"""dbmigrator: PostgreSQL schema migrations for Python teams.

Only the names migration files and host applications use live here; the
Pyramid pieces are imported on demand so the console script never pays for
them.
"""
import logging

from .migration_helpers import deferred, super_user

#: The ``dbmigrator`` logger, as db-migrator 1.x exported it: migrations
#: write progress lines with ``logger.info(...)``.
logger = logging.getLogger('dbmigrator')

#: setup.py reads it from here: asking importlib.metadata would cost every
#: run of the console script some 40 ms.
__version__ = '1.0.0'

__all__ = ['__version__', 'deferred', 'logger', 'super_user', 'includeme', 'main']


def includeme(config):
    """Pyramid add-on hook: ``config.include('dbmigrator')``."""
    from .web import includeme as web_includeme
    web_includeme(config)


def main(global_config, **settings):
    """Paste app factory for the standalone admin app (``pserve``)."""
    from .web.app import make_app
    return make_app(global_config, **settings)

"""Sphinx configuration for the dbmigrator documentation (``python -m sphinx -W docs OUT``)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '_ext'))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dbmigrator import __version__  # noqa: E402

project = 'dbmigrator'
author = 'the dbmigrator authors'
copyright = 'the dbmigrator authors, MIT licence'
release = version = __version__
extensions = ['myst_parser', 'cliref']
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
exclude_patterns = ['_build']
html_theme = 'alabaster'
myst_heading_anchors = 3
suppress_warnings = ['myst.header']

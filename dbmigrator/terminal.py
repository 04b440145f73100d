"""What only a person at a terminal sees: coloured diffs and a closing summary.

Nothing here shows when stdout is not a terminal, under ``--format json``,
or with ``NO_COLOR`` set (https://no-color.org), so logs, pipes and
playbooks get the plain text they always got.
"""
import logging
import os

COLOURS = (('+++', '\033[1m'), ('---', '\033[1m'), ('@@', '\033[36m'), ('+', '\033[32m'),
           ('-', '\033[31m'))
RESET = '\033[0m'


def wanted(stream):
    return not os.environ.get('NO_COLOR') and hasattr(stream, 'isatty') and stream.isatty()


def colour_diff(text):
    """A unified diff with its headers, hunks, additions and removals coloured."""
    lines = []
    for line in text.split('\n'):
        colour = next((c for prefix, c in COLOURS if line.startswith(prefix)), None)
        lines.append(colour + line + RESET if colour else line)
    return '\n'.join(lines)


class DiffColours(logging.Formatter):
    """Colours the messages that are schema diffs (they start with ``---``)."""

    def format(self, record):
        text = super().format(record)
        return colour_diff(text) if text.startswith('---') else text


def summary(steps, action):
    """``3 migrations applied in 4.2s (slowest: V NAME 3.1s)``, or None for none."""
    done = [s for s in steps if s.outcome == 'ok']
    if not done:
        return None
    verb = 'rolled back' if action == 'rollback' else 'applied'
    slowest = max(done, key=lambda s: s.duration)
    text = '%d migration%s %s in %.1fs' % (len(done), '' if len(done) == 1 else 's', verb,
                                         sum(s.duration for s in done))
    if len(done) > 1:
        text += ' (slowest: %s %s %.1fs)' % (slowest.version, slowest.name, slowest.duration)
    return text

"""What kind of migration a file is, read from its source without running it.

Pages served to anyone must not import migration files: importing runs their
module-level code.  The names a migration's kind hangs on (``should_run``,
``@deferred`` on ``up``, ``atomic = False``) are almost always written
literally at the top of the file, so the syntax tree tells them.
"""
import ast


def _names(target):
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for element in target.elts for n in _names(element)]
    return []


def _called(node, name):
    func = node.func if isinstance(node, ast.Call) else node
    return (isinstance(func, ast.Name) and func.id == name) or (
        isinstance(func, ast.Attribute) and func.attr == name)


def kind(tree):
    """(is_repeat, is_deferred, is_atomic) of a parsed migration module."""
    is_repeat, is_deferred, is_atomic = False, False, True
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            is_repeat = is_repeat or node.name == 'should_run'
            if node.name == 'up':
                is_deferred = any(_called(d, 'deferred') for d in node.decorator_list)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n for t in targets for n in _names(t)]
            is_repeat = is_repeat or 'should_run' in names
            if 'up' in names:
                is_deferred = isinstance(node.value, ast.Call) and _called(node.value, 'deferred')
            if 'atomic' in names and isinstance(node.value, ast.Constant):
                is_atomic = node.value.value is not False
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            is_repeat = is_repeat or any(
                (a.asname or a.name) == 'should_run' for a in node.names)
    return is_repeat, is_deferred, is_atomic

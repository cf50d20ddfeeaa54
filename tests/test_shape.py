"""The house keeps its shape (issue 18): no class with more than 25 methods, no module over 500 lines,
in every package that ships. A room that grows past either is split by job, or listed below with why."""

import ast

import pytest

from tests.conftest import ROOT

PACKAGES = ("sticktionary", "offline", "bots", "jobs", "core", "storage")
MAX_METHODS = 25
MAX_LINES = 500

# Modules allowed over MAX_LINES, by path (a folder: everything under it), with the reason.
LONG_MODULES = {
    "storage/migrations/": "migrations are history: each one is written once and never split",
    "offline/sandbox/server.py": "the sandbox is one fake Bot API server: a handler per Bot API method it answers",
}
# Classes allowed over MAX_METHODS, by "path:Class", with the reason.
BIG_CLASSES = {
    "offline/sandbox/server.py:Sandbox": "the fake Bot API: one method per Bot API method and test hook",
}


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def _excused(name: str, allowed: dict) -> bool:
    return any(name == key or (key.endswith("/") and name.startswith(key)) for key in allowed)


def _methods(node: ast.ClassDef) -> int:
    return sum(isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) for item in node.body)


def test_no_module_is_over_500_lines():
    long = {name: lines for name, path in _modules()
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
            and not _excused(name, LONG_MODULES)}
    assert not long, f"split these by job, or list them in LONG_MODULES with the reason: {long}"


def test_no_class_has_more_than_25_methods():
    big = {}
    for name, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and _methods(node) > MAX_METHODS \
                    and f"{name}:{node.name}" not in BIG_CLASSES:
                big[f"{name}:{node.name}"] = _methods(node)
    assert not big, f"split these by job, or list them in BIG_CLASSES with the reason: {big}"


@pytest.mark.parametrize("name", [*LONG_MODULES, *BIG_CLASSES])
def test_every_exception_names_something_that_exists(name):
    """An exception outlives its reason unnoticed if what it names was moved or renamed."""
    path, _, cls = name.partition(":")
    assert (ROOT / path).exists(), name
    if cls:
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        assert any(isinstance(node, ast.ClassDef) and node.name == cls for node in ast.walk(tree)), name


def test_the_check_finds_a_class_too_big_and_a_module_too_long():
    """The counts the tests above rely on: methods directly in the class body, lines of the file."""
    source = "class Big:\n" + "".join(f"    def m{i}(self): ...\n" for i in range(MAX_METHODS + 1))
    (node,) = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef)]
    assert _methods(node) == MAX_METHODS + 1
    assert _excused("storage/migrations/versions/0001_x.py", LONG_MODULES)
    assert not _excused("storage/models.py", LONG_MODULES)

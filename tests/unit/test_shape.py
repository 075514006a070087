"""The shape the code keeps (docs/architecture.md): small units, and shells that only translate.

A feature that grows a class past 300 lines or a function past 60 lines or 15 branch points
finds its code a home (a module of its own, a helper with a name) instead of growing the core;
the few exceptions are named here with the reason they stand. The shells turn ASGI and WSGI into
the entry's input and its answer back: they import nothing from ``web/`` but the entry and the
step types, and no function of theirs branches much, so no decision can hide in them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "adapter"
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 60
MAX_BRANCHES = 15
MAX_SHELL_BRANCHES = 12
SHELLS = ("asgi.py", "wsgi.py")
SHELL_IMPORTS_FROM_WEB = {"adapter.web.entry", "adapter.web._steps"}
# (module relative to adapter/, qualified name): why it stays as it is. At most three.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def branch_points(node: ast.AST) -> int:
    """Decisions in ``node``: if/elif, loops, handlers, conditional expressions, comprehension
    loops, match cases, and each extra operand of ``and``/``or``."""
    count = 0
    for child in ast.walk(node):
        if isinstance(
            child,
            ast.If | ast.For | ast.AsyncFor | ast.While | ast.IfExp | ast.ExceptHandler
            | ast.match_case | ast.comprehension,
        ):  # fmt: skip
            count += 1
        elif isinstance(child, ast.BoolOp):
            count += len(child.values) - 1
    return count


def units(tree: ast.AST, prefix: str = "") -> list[tuple[str, ast.AST]]:
    """Every class and function with its qualified name (methods as ``Class.method``)."""
    found: list[tuple[str, ast.AST]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            found.append((name, node))
            found.extend(units(node, f"{name}."))
        else:
            found.extend(units(node, prefix))
    return found


def lines(node: ast.AST) -> int:
    end = getattr(node, "end_lineno", None) or 0
    return end - getattr(node, "lineno", 0) + 1


def oversized() -> dict[tuple[str, str], str]:
    problems: dict[tuple[str, str], str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = str(path.relative_to(PACKAGE))
        for name, node in units(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                if lines(node) > MAX_CLASS_LINES:
                    problems[(module, name)] = f"class of {lines(node)} lines"
            elif lines(node) > MAX_FUNCTION_LINES or branch_points(node) > MAX_BRANCHES:
                size = f"{lines(node)} lines, {branch_points(node)} branch points"
                problems[(module, name)] = f"function of {size}"
    return problems


def test_no_class_or_function_outgrows_its_bound() -> None:
    problems = oversized()
    unexpected = {key: what for key, what in problems.items() if key not in EXCEPTIONS}
    assert not unexpected, "\n".join(
        f"adapter/{module}: {name} is a {what}; give part of it a home of its own"
        for (module, name), what in unexpected.items()
    )


def test_the_exceptions_are_few_and_still_needed() -> None:
    assert len(EXCEPTIONS) <= 3
    stale = set(EXCEPTIONS) - set(oversized())
    assert not stale, f"these fit their bounds now; drop them from EXCEPTIONS: {sorted(stale)}"


def test_the_measure_counts_what_it_says() -> None:
    source = "def f(a, b):\n    if a and b or a:\n        return [x for x in a if x]\n"
    (_, function), *_ = units(ast.parse(source))
    assert branch_points(function) == 1 + 2 + 1  # the if, two extra operands, the loop


@pytest.mark.parametrize("shell", SHELLS)
def test_a_shell_takes_from_web_only_the_entry_and_the_step_types(shell: str) -> None:
    tree = ast.parse((PACKAGE / shell).read_text())
    from_web = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adapter.web")
    }
    plain = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.startswith("adapter.web")
    }
    assert from_web | plain <= SHELL_IMPORTS_FROM_WEB, sorted(from_web | plain)


@pytest.mark.parametrize("shell", SHELLS)
def test_no_shell_function_branches_much(shell: str) -> None:
    tree = ast.parse((PACKAGE / shell).read_text())
    counts = {
        name: branch_points(node)
        for name, node in units(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    largest = max(counts, key=counts.__getitem__)
    assert counts[largest] <= MAX_SHELL_BRANCHES, (largest, counts[largest])

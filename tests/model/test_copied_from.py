"""`# Copied from model.<module>.<name>` blocks stay identical to their source (diffusers' check_copies idea).

vae22.py repeats the causal-conv machinery and key-map helpers of vae21.py so each VAE reads as one file;
this check keeps the copies from drifting. Code is compared as syntax trees (comments and formatting
may differ); a marker ending in "(docstring adapted)" also lets the docstring differ.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^\s*# Copied from (model(?:\.\w+)+?)\.([A-Za-z_][\w.]*)\s*(\(docstring adapted\))?\s*$")


def _starts(tree: ast.Module) -> dict[int, ast.stmt]:
    """First line (decorators included) -> statement, for module level and class bodies."""
    out: dict[int, ast.stmt] = {}
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        decos = getattr(node, "decorator_list", [])
        out[min([node.lineno] + [d.lineno for d in decos])] = node
        if isinstance(node, ast.ClassDef):
            todo.extend(node.body)
    return out


def _name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
    return target.id if isinstance(target, ast.Name) else None


def _find(tree: ast.Module, qualname: str) -> ast.stmt | None:
    body: list[ast.stmt] = tree.body
    node: ast.stmt | None = None
    for part in qualname.split("."):
        node = next((n for n in body if _name(n) == part), None)
        if node is None:
            return None
        body = node.body if isinstance(node, ast.ClassDef) else []
    return node


def _shape(node: ast.stmt, *, drop_docstring: bool) -> str:
    node = ast.parse(ast.unparse(node)).body[0]  # a detached copy
    if drop_docstring and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            node.body = node.body[1:]
    return ast.dump(node, include_attributes=False)


def out_of_sync(source: str, read_module: Callable[[str], str]) -> list[str]:
    """Problems with the `# Copied from` blocks of `source`; `read_module(dotted)` returns a module's text."""
    problems: list[str] = []
    starts = _starts(ast.parse(source))
    for lineno, line in enumerate(source.splitlines(), start=1):
        m = MARKER.match(line)
        if not m:
            continue
        module, qualname, adapted = m.groups()
        copy = starts.get(lineno + 1)
        if copy is None or _name(copy) != qualname.split(".")[-1]:
            problems.append(f"line {lineno}: the marker is not followed by a definition of {qualname}")
            continue
        original = _find(ast.parse(read_module(module)), qualname)
        if original is None:
            problems.append(f"line {lineno}: {module}.{qualname} does not exist")
        elif _shape(copy, drop_docstring=bool(adapted)) != _shape(original, drop_docstring=bool(adapted)):
            problems.append(f"line {lineno}: differs from {module}.{qualname}")
    return problems


def _read(module: str) -> str:
    return (ROOT / (module.replace(".", "/") + ".py")).read_text()


FILES = sorted(p for p in (ROOT / "model").rglob("*.py") if "# Copied from" in p.read_text())


def test_some_files_carry_copies() -> None:
    assert ROOT / "model" / "vae22.py" in FILES


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_copies_match_their_source(path: Path) -> None:
    assert out_of_sync(path.read_text(), _read) == []


def test_a_drifted_copy_is_caught_and_formatting_is_not() -> None:
    text = (ROOT / "model" / "vae22.py").read_text()
    line = "        tail = torch.cat([prev[:, :, -1:].to(tail), tail], dim=2)\n"
    assert text.count(line) == 1, "vae22.frame_tail changed; update this test's probe"
    drifted = text.replace(line, line.replace("-1:", "-2:"))
    assert [p for p in out_of_sync(drifted, _read) if "frame_tail" in p]
    spaced = line.replace(", dim=2", ", dim = 2")
    reformatted = text.replace(line, "        # a comment the source lacks\n" + spaced)
    assert out_of_sync(reformatted, _read) == []

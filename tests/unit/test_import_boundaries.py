"""Import boundaries (docs/architecture.md, "The arrows"): ``app.api → app.core ← worker → model``.

Each rule is checked twice:

- at run time, in a fresh interpreter whose meta-path finder refuses the forbidden packages, so a
  transitive import anywhere below the entry point fails the import;
- statically, over every ``import`` statement (also those inside functions, which an import at run
  time never reaches, e.g. the worker's lazy ``import torch``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs in the child: refuse every module named in BLOCKED (and its submodules).
_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class _Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if any(fullname == b or fullname.startswith(b + ".") for b in BLOCKED):
                raise ModuleNotFoundError(f"import of {fullname!r} is forbidden here", name=fullname)
            return None

    sys.meta_path.insert(0, _Refuse())
    """
)


def _modules(package: str, *, skip: tuple[str, ...] = ("__main__",)) -> list[str]:
    base = ROOT / package.replace(".", "/")
    out = []
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] in skip:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def _run(blocked: list[str], body: str) -> subprocess.CompletedProcess[str]:
    code = f"BLOCKED = {blocked!r}\n{_BLOCKER}\n{textwrap.dedent(body)}"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"


def test_gateway_builds_without_torch_or_model(tmp_path: Path) -> None:
    proc = _run(
        ["torch", "model", "diffusers", "worker"],
        f"""
        import os, sys
        os.environ["WANSERVE_DATA_DIR"] = {str(tmp_path)!r}
        from app.api.main import create_app
        from app.core.config import Settings
        app = create_app(Settings())
        assert app.openapi()["paths"], "no routes"
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "model", "worker"))
        assert not leaked, leaked
        """,
    )
    _assert_ok(proc)


def test_every_app_module_imports_without_torch_or_model() -> None:
    proc = _run(
        ["torch", "model", "diffusers"],
        f"""
        import importlib
        for name in {_modules("app")!r}:
            importlib.import_module(name)
        """,
    )
    _assert_ok(proc)


def test_app_core_imports_without_fastapi() -> None:
    proc = _run(
        ["fastapi", "starlette", "torch", "model", "worker", "app.api"],
        f"""
        import importlib
        for name in {_modules("app.core")!r}:
            importlib.import_module(name)
        """,
    )
    _assert_ok(proc)


def test_model_imports_nothing_from_the_service() -> None:
    proc = _run(
        ["app", "worker"],
        f"""
        import importlib, json, sys
        bad = {{}}
        for name in {_modules("model")!r}:
            importlib.import_module(name)
            leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("app", "worker"))
            if leaked:
                bad[name] = leaked
        print(json.dumps(bad))
        """,
    )
    _assert_ok(proc)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}


def test_worker_never_imports_app_api() -> None:
    proc = _run(
        ["app.api", "app.cli", "fastapi", "starlette"],
        f"""
        import importlib
        for name in {_modules("worker")!r}:
            importlib.import_module(name)
        """,
    )
    _assert_ok(proc)


# --- static: every import statement, including lazy ones inside functions ---------------------


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for each import in ``path``; relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # `from app import api` names a submodule
            out += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return out


def _hits(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


# Serving code never imports training code (`training/` builds checkpoints, `model/` loads them).
# app/cli may start the worker processes (`wanserve worker`, `wanserve webhooks`), lazily; the
# gateway and the shared core never import the worker side.
RULES = [
    ("app", ("torch", "diffusers", "model", "training")),
    ("app/api", ("worker",)),
    ("app/core", ("fastapi", "starlette", "app.api", "app.cli", "worker")),
    ("model", ("app", "worker", "training")),
    ("worker", ("app.api", "app.cli", "fastapi", "starlette", "training")),
    ("training", ("app", "worker")),
]


@pytest.mark.parametrize(("folder", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_no_forbidden_import_statement(folder: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, name in _imports(path)
        if _hits(name, forbidden)
    ]
    assert not bad, "\n".join(bad)

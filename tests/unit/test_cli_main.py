"""`wanserve`: one parser, each verb bound to one function; `keys` starts nothing but key management."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.cli import main as cli
from app.cli.client import COMMANDS as CLIENT_VERBS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "func", "fields"),
    [
        (["serve", "--no-worker"], cli.cmd_serve, {"no_worker": True}),
        (["gateway"], cli.cmd_gateway, {}),
        (
            ["worker", "--pool", "solo", "--extra-queue", "q"],
            cli.cmd_worker,
            {"pool": "solo", "extra_queue": ["q"]},
        ),
        (["webhooks", "--concurrency", "3"], cli.cmd_webhooks, {"concurrency": 3}),
        (["keys", "create", "--name", "acme"], cli.cmd_keys, {"keys_command": "create", "name": "acme"}),
        (["keys", "revoke", "acme"], cli.cmd_keys, {"keys_command": "revoke", "name": "acme"}),
        (["calibrate", "--model", "m", "--steps", "4"], cli.cmd_calibrate, {"model": "m", "steps": 4}),
    ],
)
def test_each_service_verb_has_its_function(argv: list[str], func: object, fields: dict[str, object]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert args.func is func
    assert {k: getattr(args, k) for k in fields} == fields


def test_client_verbs_are_on_the_same_parser() -> None:
    parser = cli.build_parser()
    for verb in CLIENT_VERBS:
        argv = [verb] if verb in ("list", "models") else [verb, "video_1"]
        args = parser.parse_args([*argv, "--url", "http://h:1"])
        assert args.command == verb and callable(args.func) and args.url == "http://h:1"


def test_unknown_verb_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_keys_module_never_reaches_the_worker() -> None:
    tree = ast.parse((ROOT / "app/cli/keys.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n == "worker" or n.startswith("worker.")]


def test_calibrate_runs_the_model_side_entry_point_with_this_python() -> None:
    import sys

    from app.cli import calibrate
    from app.core.config import Settings

    args = cli.build_parser().parse_args(["calibrate", "--prompt", "a", "--prompt", "b", "--out", "/x"])
    argv = calibrate.command(args, Settings(model="wanserve-demo", model_path="/weights/demo"))
    assert argv[:3] == [sys.executable, "-m", "model.cache_calibrate"]
    assert argv[3:] == ["--model", "/weights/demo", "--out", "/x", "--prompt", "a", "--prompt", "b"]
    args = cli.build_parser().parse_args(["calibrate", "--target-skip", "0.4"])
    argv = calibrate.command(args, Settings(model="wanserve-demo"))
    assert argv[3:] == ["--model", "wanserve-demo", "--target-skip", "0.4"]


def test_calibrate_module_never_imports_the_model_side() -> None:
    tree = ast.parse((ROOT / "app/cli/calibrate.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] in ("model", "worker", "torch")]

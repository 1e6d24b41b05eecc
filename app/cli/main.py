"""The ``wanserve`` console script: a dispatcher.

Own commands: ``serve`` (everything on one machine), ``gateway``, ``worker``. Other modules add
commands without editing this file's logic: each module in `COMMAND_MODULES` exposes ``COMMANDS``
(a collection of command names) and ``main(argv) -> int``; ``wanserve NAME ...`` hands the whole
argv (starting with NAME) to the first module whose ``COMMANDS`` holds NAME.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

COMMAND_MODULES = ("app.cli.client", "app.cli.keys")


def _modules() -> list[ModuleType]:
    out = []
    for name in COMMAND_MODULES:
        try:
            out.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return out


def _parser(extra: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wanserve",
        description="Wan2.2 video generation service.",
        epilog="more commands: " + ", ".join(extra) if extra else None,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run redis (if needed), a worker and the gateway on this machine")
    s.add_argument("--no-worker", action="store_true", help="do not start a worker")
    sub.add_parser("gateway", help="run the HTTP gateway")
    w = sub.add_parser("worker", help="run one Celery worker for WANSERVE_MODEL")
    w.add_argument("--pool", choices=("prefork", "solo"), default="prefork")
    w.add_argument("--extra-queue", action="append", default=[], help="also consume this queue")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    modules = _modules()
    if args_list:
        for mod in modules:
            if args_list[0] in getattr(mod, "COMMANDS", ()):
                code: int = mod.main(args_list)
                return code
    extra = sorted(c for m in modules for c in getattr(m, "COMMANDS", ()))
    args = _parser(extra).parse_args(args_list)

    from app.core.config import Settings

    settings = Settings()
    if args.command == "serve":
        from app.cli.serve import serve

        return serve(settings, worker=not args.no_worker)
    if args.command == "gateway":
        from app.cli.serve import run_gateway

        run_gateway(settings)
        return 0
    from worker.main import run_worker  # the worker side; app.api is never imported there

    run_worker(settings, pool=args.pool, extra_queues=args.extra_queue)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

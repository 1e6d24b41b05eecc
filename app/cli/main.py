"""The ``wanserve`` console script: one parser, one function per verb.

Service verbs: ``serve`` (everything on one machine), ``gateway``, ``worker``, ``webhooks``.
Admin: ``keys`` (`app.cli.keys`), ``calibrate`` (`app.cli.calibrate`: a model's step-cache
calibration, computed in a child process). Client of a running gateway: ``generate``, ``status``,
``list``, ``cancel``, ``models`` (`app.cli.client`). Each verb's subparser sets ``func``; `main` parses once
and calls it. Worker-side code is imported lazily, only by the verbs that start a worker.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app.cli import calibrate, keys
from app.cli.client.parser import add_commands as add_client_commands
from app.core.config import Settings


def cmd_serve(args: argparse.Namespace) -> int:
    from app.cli.serve import serve

    return serve(Settings(), worker=not args.no_worker)


def cmd_gateway(args: argparse.Namespace) -> int:
    from app.cli.serve import run_gateway

    run_gateway(Settings())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.main import start_worker  # the worker side; app.api is never imported there

    flags = {"devices": args.devices, "ulysses": args.ulysses, "expert_devices": args.expert_devices}
    settings = Settings()
    update: dict[str, object] = {k: v for k, v in flags.items() if v is not None}
    if args.cfg_parallel:
        update["cfg_parallel"] = True
    return start_worker(settings.model_copy(update=update), pool=args.pool, extra_queues=args.extra_queue)


def cmd_webhooks(args: argparse.Namespace) -> int:
    from worker.webhooks import run_webhook_worker

    settings = Settings()
    run_webhook_worker(settings, concurrency=args.concurrency, loglevel=settings.log_level)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    return calibrate.run(args, Settings())  # the model side runs in a child: no torch here


def cmd_keys(args: argparse.Namespace) -> int:
    import asyncio

    code: int = asyncio.run(keys._run(args, Settings()))
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wanserve", description="Wan2.2 video generation service.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run redis (if needed), a worker and the gateway on this machine")
    s.add_argument("--no-worker", action="store_true", help="do not start a worker")
    s.set_defaults(func=cmd_serve)

    sub.add_parser("gateway", help="run the HTTP gateway").set_defaults(func=cmd_gateway)

    w = sub.add_parser("worker", help="run one Celery worker for WANSERVE_MODEL")
    w.add_argument("--pool", choices=("prefork", "solo"), default="prefork")
    w.add_argument("--extra-queue", action="append", default=[], help="also consume this queue")
    w.add_argument(
        "--devices",
        default=None,
        metavar="D0,D1,...",
        help="a worker group: one job on these devices, one process each (cuda:0,cuda:1 or cpu,cpu)",
    )
    w.add_argument("--ulysses", type=int, default=None, help="sequence-parallel size of a worker group")
    w.add_argument("--cfg-parallel", action="store_true", help="cond and uncond forwards on two rank groups")
    w.add_argument(
        "--expert-devices",
        default=None,
        metavar="D0,D1",
        help="two-expert models, one process: high-noise expert resident on D0, low-noise on D1",
    )
    w.set_defaults(func=cmd_worker)

    h = sub.add_parser("webhooks", help="run the webhook delivery worker (Celery queue `webhooks`)")
    h.add_argument("--concurrency", type=int, default=8)
    h.set_defaults(func=cmd_webhooks)

    calibrate.add_parser(sub).set_defaults(func=cmd_calibrate)

    k = sub.add_parser("keys", help="manage API keys (create, revoke, list)")
    keys.build_parser(k)
    k.set_defaults(func=cmd_keys)

    add_client_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

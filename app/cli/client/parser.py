"""The client's argument parser and entry point (exit codes in `app.cli.client.commands`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

import httpx

from app.cli.client.api import ApiError
from app.cli.client.commands import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    cmd_cancel,
    cmd_generate,
    cmd_list,
    cmd_models,
    cmd_status,
    warn,
)

DEFAULT_URL = "http://127.0.0.1:8000"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("WANSERVE_API_URL", DEFAULT_URL),
        help="gateway URL (env WANSERVE_API_URL, default %(default)s)",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("WANSERVE_API_KEY"),
        help="API key sent as a Bearer token (env WANSERVE_API_KEY)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds")


def build_parser(prog: str = "wanserve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="wanserve API client")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the client verbs to the `wanserve` parser; each verb's ``func`` is its guarded ``cmd_*``."""
    g = sub.add_parser("generate", help="submit a prompt, show progress, download the MP4")
    _common(g)
    g.add_argument("prompt")
    g.add_argument("--image", help="input image (image-to-video models)")
    g.add_argument("--model", help="model id (see `wanserve models`)")
    g.add_argument("--size", help="WIDTHxHEIGHT, e.g. 1280x704")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--seconds", help="duration; mapped to frames with the model's fps")
    length.add_argument("--frames", type=int, help="exact frame count (4n+1)")
    g.add_argument("--fps", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--steps", type=int, help="denoising steps (num_inference_steps)")
    g.add_argument("--guidance-scale", type=float, help="classifier-free guidance (both experts)")
    g.add_argument("--guidance-high-noise", type=float, help="A14B: guidance of the high-noise expert")
    g.add_argument("--guidance-low-noise", type=float, help="A14B: guidance of the low-noise expert")
    g.add_argument("--shift", type=float)
    g.add_argument("--sampler", choices=("unipc", "dpm++", "euler", "distill"))
    g.add_argument(
        "--cache",
        metavar="TYPE[:THRESHOLD]",
        help="step caching: first_block, teacache, magcache or easycache (default threshold: the model's)",
    )
    g.add_argument("--negative-prompt")
    g.add_argument(
        "--priority", choices=("high", "normal", "low"), help="place in the model's queue (limited per key)"
    )
    g.add_argument(
        "--cancel-after",
        metavar="DURATION",
        help="cancel the job if not finished by then: seconds or e.g. 30s, 5m, 1h30m",
    )
    g.add_argument(
        "--lora",
        action="append",
        metavar="NAME[:SCALE]",
        help="a LoRA from `GET /v1/loras` (repeatable; scale 1.0 unless given)",
    )
    g.add_argument("--out", "-o", help="where to save the MP4 (default ID.mp4)")
    g.add_argument("--thumbnail", help="also save the thumbnail image here")
    g.add_argument(
        "--preview-out",
        metavar="FILE.webp",
        help="save the live preview here while the job runs (a few frames side by side; the last stays)",
    )
    g.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser("status", help="show one job")
    _common(s)
    s.add_argument("id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    ls = sub.add_parser("list", help="list jobs, newest first")
    _common(ls)
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--order", choices=("desc", "asc"), default="desc")
    ls.add_argument("--all", action="store_true", help="follow pagination to the end")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    c = sub.add_parser("cancel", help="cancel a queued or running job")
    _common(c)
    c.add_argument("id")
    c.set_defaults(func=cmd_cancel)

    m = sub.add_parser("models", help="models served by live workers")
    _common(m)
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)
    for verb in (g, s, ls, c, m):
        verb.set_defaults(func=_guarded(verb.get_default("func")))


def _guarded(cmd: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``cmd`` with the client's errors turned into an exit code and one line on stderr."""

    def run(args: argparse.Namespace) -> int:
        try:
            return cmd(args)
        except ApiError as exc:
            warn(f"error: {exc.message}")
            return EXIT_FAILED
        except httpx.TransportError as exc:
            warn(f"error: cannot reach {args.url}: {exc}")
            return EXIT_FAILED
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """The client verbs alone (``python -m app.cli.client``); `wanserve` adds them to its own parser."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code

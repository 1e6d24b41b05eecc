"""``wanserve calibrate``: compute a model's step-cache calibration in a child Python process.

The gateway side never imports torch or `model`, so this verb only builds the command line of the
model-side entry point (``python -m model.cache_calibrate``) and runs it with this interpreter; the
child writes ``cache_calibration.json`` beside the weights (or into ``--out``) and says where.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from app.core.config import Settings

ENTRY_POINT = "model.cache_calibrate"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    c = sub.add_parser(
        "calibrate",
        help="compute the step-cache calibration (TeaCache, MagCache, default thresholds) of a model",
    )
    c.add_argument(
        "--model",
        default=None,
        help="preset name or weights folder (default: WANSERVE_MODEL_PATH or WANSERVE_MODEL)",
    )
    c.add_argument(
        "--out", default=None, help="folder to write cache_calibration.json to (default: the weights)"
    )
    c.add_argument("--prompt", action="append", default=None, help="calibration prompt (repeatable)")
    c.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    c.add_argument("--target-skip", type=float, default=None, help="share of the block work to skip (0.5)")
    return c


def command(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The child's argv."""
    model = args.model or settings.model_path or settings.model
    argv = [sys.executable, "-m", ENTRY_POINT, "--model", str(model)]
    if args.out:
        argv += ["--out", str(args.out)]
    for prompt in args.prompt or ():
        argv += ["--prompt", prompt]
    if args.steps is not None:
        argv += ["--steps", str(args.steps)]
    if args.target_skip is not None:
        argv += ["--target-skip", str(args.target_skip)]
    return argv


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the calibration; its report (the path written, the thresholds) goes to our stdout."""
    return subprocess.run(command(args, settings), check=False).returncode

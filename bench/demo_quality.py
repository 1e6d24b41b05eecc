"""Prompt following of a demo checkpoint on the fixed, held-out paraphrase and held-out combination sets.

    .venv/bin/python bench/demo_quality.py                          # shipped weights, preset defaults
    .venv/bin/python bench/demo_quality.py --weights W --n 96       # another folder, the larger sets
    .venv/bin/python bench/demo_quality.py --lora                   # with wanserve-demo-lightning (4 steps)
    .venv/bin/python bench/demo_quality.py --distill-without-lora   # the same 4 steps without it

Text mode: ``--n`` clips per set (24 = the sets of tests/model/test_demo_quality.py); a clip is right
when its dominant colour AND its direction of motion match the prompt. The confusion splits the misses
into colour only, direction only and both. Image mode: ``--n // 3`` clips (8 for 24), with the
minimum first-frame PSNR. One line of JSON per set at the end, for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import load_pipeline  # noqa: E402
from model.presets import DEMO_LORA_DIR, DEMO_WEIGHTS_DIR  # noqa: E402
from training.demo import evaluate as E  # noqa: E402

LORA = "wanserve-demo-lightning"


def settings(args: argparse.Namespace) -> dict[str, object]:
    if not (args.lora or args.distill_without_lora):
        return {}
    from model.lora import load_lora

    folder = Path(args.lora_dir)
    side = json.loads((folder / f"{LORA}.json").read_text())["defaults"]
    gen: dict[str, object] = {
        "sampler": side["sampler"],
        "num_steps": side["num_inference_steps"],
        "guidance_scale": side["guidance_scale"],
        "shift": side["shift"],
    }
    if args.lora:
        gen["loras"] = [(load_lora(folder / f"{LORA}.safetensors", name=LORA), 1.0)]
    return gen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=str(DEMO_WEIGHTS_DIR))
    ap.add_argument("--lora-dir", default=str(DEMO_LORA_DIR))
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--distill-without-lora", action="store_true")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verbose", action="store_true", help="print every miss")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.weights)
    gen = settings(args)
    t0 = time.time()
    sets = {
        "fixed": E.evaluate_text_mode(pipe, E.text_cases(args.n), **gen),
        "paraphrase": E.evaluate_prompts(pipe, E.paraphrase_cases(args.n), **gen),
        "combination": E.evaluate_prompts(pipe, E.combination_cases(args.n), **gen),
    }
    image = E.evaluate_image_mode(pipe, E.image_cases(args.n // 3), **gen)
    rows = []
    for name, scores in sets.items():
        conf = E.confusion(scores)
        rows.append({"set": name, "n": len(scores), **conf})
        if args.verbose:
            for s in scores:
                if not s.ok:
                    print(f"  miss {name}: {s.prompt!r} -> {s.color} {s.displacement}")  # noqa: T201
    rows.append(
        {
            "set": "image",
            "n": len(image),
            "ok": sum(r.clip.ok for r in image),
            "min_psnr": round(min(r.psnr for r in image), 1),
        }
    )
    shown = {k: v for k, v in gen.items() if k != "loras"} | ({"lora": LORA} if "loras" in gen else {})
    print(f"weights {args.weights} settings {shown or 'preset defaults'} ({time.time() - t0:.0f} s)")  # noqa: T201
    for row in rows:
        print(json.dumps(row))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Train the built-in ``wanserve-demo`` model from scratch, on CPU, reproducibly.

    .venv/bin/python scripts/train_demo.py                 # everything: VAE, latents, DiT phases 1-3,
                                                           # export to model/demo/weights, evaluation
    .venv/bin/python scripts/train_demo.py --stage dit     # one stage at a time, reusing --work-dir:
                                                           # vae (incl. latents) | dit | dit2 | dit3
                                                           # | ft1 | ft2 | ft3 (text-following fine-tune)
    .venv/bin/python scripts/train_demo.py --stage export  # re-export the latest DiT checkpoint + eval

One CPU thread (faster than two on a shared machine). Shipped weights (2026-11-29): VAE 1500 steps
+ latents 23 min, DiT phase 1 (2000 steps) 16 min, phase 2 (4000) 15 min, phase 3 (2500) ~10 min
wall on the shared 2-core VM under heavy load from other processes (load average 3-15); then the
text-following fine-tune (model/demo/finetune.py): ft1 4000 steps (~22 min, 1 thread), ft2 2000
steps (~8 min, 2 threads), ft3 1000 steps (~4 min, 2 threads).

Writes the checkpoint folder (official Wan2.2 TI2V layout) to ``model/demo/weights/`` by default.
Intermediate files (VAE, latents, DiT checkpoints, log) go to ``--work-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model.demo import finetune as F  # noqa: E402
from model.demo import train as T  # noqa: E402
from model.demo.export import export_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = ["all", "vae", "latents", "dit", "dit2", "dit3", "ft1", "ft2", "ft3", "export", "eval"]
    ap.add_argument("--stage", choices=stages, default="all")
    ap.add_argument("--out", default=str(ROOT / "model/demo/weights"))
    ap.add_argument("--work-dir", default="/tmp/wanserve-demo-train")
    ap.add_argument("--vae-steps", type=int, default=T.TrainConfig.vae_steps)
    ap.add_argument("--dit-steps", type=int, default=T.TrainConfig.dit_steps)
    ap.add_argument("--num-clips", type=int, default=T.TrainConfig.num_clips)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    cfg = T.TrainConfig(
        seed=args.seed,
        threads=args.threads,
        vae_steps=args.vae_steps,
        dit_steps=args.dit_steps,
        num_clips=args.num_clips,
        out_dir=args.out,
        work_dir=args.work_dir,
    )
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    logf = (work / "train.log").open("a")

    def log(line: str) -> None:
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    t_start = time.time()
    log(f"config {T.config_dict(cfg)}")

    vae_path = work / "vae.pt"
    lat_path = work / "latents.pt"
    dit_path = work / "dit.pt"
    dit2_path = work / "dit2.pt"
    dit3_path = work / "dit3.pt"
    ft_paths = {"ft1": work / "ft1.pt", "ft2": work / "ft2.pt", "ft3": work / "ft3.pt"}

    if args.stage in ("all", "vae"):
        vae = T.train_vae(cfg, log)
        torch.save(vae.state_dict(), vae_path)
        log(f"saved {vae_path}")

    if args.stage in ("all", "vae", "latents"):
        vae = T.build_vae()
        vae.load_state_dict(torch.load(vae_path))
        vae.eval()
        raw, caps, stats = T.build_latent_dataset(vae, cfg, log)
        torch.save({"raw": raw, "captions": caps, "stats": stats}, lat_path)
        log(f"latent mean {stats[0].mean():.3f} std range {stats[1].min():.3f}..{stats[1].max():.3f}")

    if args.stage in ("all", "dit"):
        data = torch.load(lat_path)
        stats = data["stats"]
        lat = (data["raw"] - stats[0].view(1, -1, 1, 1, 1)) / stats[1].view(1, -1, 1, 1, 1)

        def checkpoint(dit: torch.nn.Module, t5: torch.nn.Module, step: int) -> None:
            torch.save({"dit": dit.state_dict(), "t5": t5.state_dict(), "step": step}, dit_path)
            log(f"checkpoint step {step} -> {dit_path}")

        dit, t5 = T.train_dit(cfg, lat, data["captions"], log, checkpoint)
        torch.save({"dit": dit.state_dict(), "t5": t5.state_dict(), "step": cfg.dit_steps}, dit_path)

    if args.stage in ("all", "dit2"):
        data = torch.load(lat_path)
        stats = data["stats"]
        lat = (data["raw"] - stats[0].view(1, -1, 1, 1, 1)) / stats[1].view(1, -1, 1, 1, 1)
        ck = torch.load(dit_path)
        if ck["step"] != cfg.dit_steps:
            raise SystemExit(f"{dit_path} is from step {ck['step']}, phase 1 has {cfg.dit_steps} steps")
        dit = T.build_dit()
        dit.load_state_dict(ck["dit"])
        t5 = T.build_text_model()
        t5.load_state_dict(ck["t5"])
        dit, t5 = T.train_dit_phase2(cfg, dit, t5, lat, data["captions"], log)
        torch.save(
            {"dit": dit.state_dict(), "t5": t5.state_dict(), "step": cfg.dit_steps + cfg.dit2_steps},
            dit2_path,
        )

    if args.stage in ("all", "dit3"):
        data = torch.load(lat_path)
        stats = data["stats"]
        lat = (data["raw"] - stats[0].view(1, -1, 1, 1, 1)) / stats[1].view(1, -1, 1, 1, 1)
        ck = torch.load(dit2_path)
        if ck["step"] != cfg.dit_steps + cfg.dit2_steps:
            raise SystemExit(f"{dit2_path} is from step {ck['step']}, not the end of phase 2")
        dit = T.build_dit()
        dit.load_state_dict(ck["dit"])
        t5 = T.build_text_model()
        t5.load_state_dict(ck["t5"])
        cfg3 = dataclasses.replace(cfg, seed=cfg.seed + 100, dit2_steps=cfg.dit3_steps, dit2_lr=cfg.dit3_lr)
        dit, t5 = T.train_dit_phase2(cfg3, dit, t5, lat, data["captions"], log)
        total = cfg.dit_steps + cfg.dit2_steps + cfg.dit3_steps
        torch.save({"dit": dit.state_dict(), "t5": t5.state_dict(), "step": total}, dit3_path)

    # text-following fine-tune: (stage, previous checkpoint, steps, lr text path, lr rest, seed)
    for stage, prev, steps, lr_text, lr_rest, seed in (
        ("ft1", dit3_path, 4000, 2e-3, 3e-4, 7),
        ("ft2", ft_paths["ft1"], 2000, 8e-4, 1.5e-4, 8),
        ("ft3", ft_paths["ft2"], 1000, 4e-4, 8e-5, 9),
    ):
        if args.stage not in ("all", stage):
            continue
        F.use_short_text_context()
        stats = torch.load(lat_path)["stats"]
        vae = T.build_vae()
        vae.load_state_dict(torch.load(vae_path))
        vae.eval()
        lat, caps, labels = F.single_object_dataset(vae, stats)
        ck = torch.load(prev)
        dit = T.build_dit()
        dit.load_state_dict(ck["dit"])
        t5 = T.build_text_model()
        t5.load_state_dict(ck["t5"])
        torch.manual_seed(cfg.seed + seed)
        dit, t5 = F.finetune_text_following(
            dit, t5, lat, caps, labels, steps=steps, lr_text=lr_text, lr_rest=lr_rest, seed=seed, log=log
        )
        torch.save(
            {"dit": dit.state_dict(), "t5": t5.state_dict(), "step": ck["step"] + steps}, ft_paths[stage]
        )

    if args.stage in ("all", "dit", "dit2", "dit3", "ft1", "ft2", "ft3", "export"):
        data = torch.load(lat_path)
        stats = data["stats"]
        vae = T.build_vae(stats[0].tolist(), stats[1].tolist())
        vae.load_state_dict(torch.load(vae_path))
        latest = dit_path
        if args.stage != "dit" and dit2_path.is_file():
            latest = dit2_path
        if args.stage not in ("dit", "dit2") and dit3_path.is_file():
            latest = dit3_path
        for stage in ("ft1", "ft2", "ft3"):
            if args.stage not in ("dit", "dit2", "dit3") and ft_paths[stage].is_file():
                latest = ft_paths[stage]
        if latest in ft_paths.values():
            F.use_short_text_context()
        ck = torch.load(latest)
        dit = T.build_dit()
        dit.load_state_dict(ck["dit"])
        t5 = T.build_text_model()
        t5.load_state_dict(ck["t5"])
        export_checkpoint(Path(cfg.out_dir), dit=dit, vae=vae, t5=t5)
        log(f"exported step {ck['step']} to {cfg.out_dir}")

    if args.stage in ("all", "dit", "dit2", "dit3", "ft1", "ft2", "ft3", "export", "eval"):
        evaluate(Path(cfg.out_dir), log)

    log(f"done in {time.time() - t_start:.0f}s")


def evaluate(folder: Path, log: Callable[[str], None], **gen: object) -> None:
    """The quality bar of tests/model/test_demo_quality.py, on the exported folder."""
    from model import load_pipeline
    from model.demo import evaluate as E

    pipe = load_pipeline(str(folder))
    text = E.evaluate_text_mode(pipe, E.text_cases(24), **gen)
    for s in text:
        dx, dy = s.displacement
        log(f"  {'ok ' if s.ok else 'BAD'} {s.prompt!r}: {s.color} ({dx:+.1f}, {dy:+.1f})")
    image = E.evaluate_image_mode(pipe, E.image_cases(8), **gen)
    for r in image:
        log(
            f"  {'ok ' if r.clip.ok else 'BAD'} psnr {r.psnr:.1f} {r.clip.prompt!r}: {r.clip.color} "
            f"({r.clip.displacement[0]:+.1f}, {r.clip.displacement[1]:+.1f})"
        )
    log(
        f"eval {gen or 'preset defaults'}: text {sum(s.ok for s in text)}/{len(text)}, "
        f"image {sum(r.clip.ok for r in image)}/{len(image)}, min psnr {min(r.psnr for r in image):.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

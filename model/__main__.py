"""Offline generation, like the official ``generate.py``: one video from the command line.

    python -m model --model tiny-ti2v --prompt "a cat" --seed 0 --steps 4 --frames 5 --size 32x32 \\
        --device cpu --out video.pt
    torchrun --nproc-per-node 4 -m model --model tiny-ti2v-h4 ... --ulysses 2 --cfg-parallel

``--model`` is a preset name (tiny presets build random weights) or a checkpoint folder. Under
torchrun the processes split one generation (`model.parallel`: gloo on CPU, nccl on CUDA, one GPU
per process); rank 0 writes ``--out``: ``.pt`` holds the [3, F, H, W] float32 video in [-1, 1],
``.mp4`` an H.264 file at the preset's fps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 832x480 (WxH), got {text!r}") from None
    return w, h


def _devices(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"--expert-devices takes two devices like 0,1, got {text!r}")
    d0, d1 = (f"cuda:{p}" if p.isdigit() else p for p in parts)
    for d in (d0, d1):
        try:
            torch.device(d)
        except RuntimeError:
            raise argparse.ArgumentTypeError(f"--expert-devices: {d!r} is not a device") from None
    return d0, d1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m model", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="preset name or checkpoint folder")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--negative-prompt", default=None, help="default: the preset's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--frames", type=int, default=None, help="4n+1; default: the preset's")
    ap.add_argument("--size", type=_size, default=None, help="WxH; default: the preset's")
    ap.add_argument("--guidance", type=float, default=None, help="default: the preset's")
    ap.add_argument("--sampler", default="unipc")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (one GPU per process) | cuda:N")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16; default: the device's choice")
    ap.add_argument("--image", type=Path, default=None, help="first-frame image (I2V, TI2V image mode)")
    ap.add_argument("--out", type=Path, required=True, help="FILE.pt or FILE.mp4")
    ap.add_argument("--ulysses", type=int, default=1, help="sequence-parallel group size")
    ap.add_argument("--cfg-parallel", action="store_true", help="cond and uncond on two rank groups")
    ap.add_argument(
        "--fsdp", action="store_true", help="shard the DiT experts and the text encoder over the ranks"
    )
    ap.add_argument(
        "--expert-devices",
        type=_devices,
        default=None,
        metavar="D0,D1",
        help="A14B: high-noise expert resident on D0, low-noise on D1 (e.g. 0,1 or cuda:0,cuda:1)",
    )
    ap.add_argument("--compile", action="store_true", help="torch.compile each DiT block")
    args = ap.parse_args(argv)
    if args.out.suffix not in (".pt", ".mp4"):
        ap.error(f"--out must end in .pt or .mp4, got {args.out}")
    if args.fsdp and args.compile:
        ap.error("--fsdp with --compile is not supported: compile the unsharded model")
    if args.expert_devices and (args.fsdp or args.ulysses > 1 or args.cfg_parallel):
        ap.error("--expert-devices runs one process per job: not with --fsdp, --ulysses or --cfg-parallel")
    if args.ulysses < 1:
        ap.error(f"--ulysses must be >= 1, got {args.ulysses}")
    return args


def write_mp4(video: torch.Tensor, path: Path, fps: int) -> None:
    """[3, F, H, W] in [-1, 1] -> H.264 MP4 (yuv420p)."""
    import av
    import numpy as np

    frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    with av.open(str(path), mode="w", format="mp4") as container:
        stream: Any = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from model import load_pipeline
    from model.parallel import enable_parallel, init_parallel, local_device, run_on_rank0

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = local_device(args.device) if world > 1 else args.device
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    state = None
    if world > 1 or args.ulysses > 1 or args.cfg_parallel or args.fsdp:
        state = init_parallel(args.ulysses, args.cfg_parallel, device, fsdp=args.fsdp)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    if dtype is None and device.startswith("cuda"):
        dtype = torch.bfloat16
    if args.expert_devices and dtype is None and args.expert_devices[0].startswith("cuda"):
        dtype = torch.bfloat16
    # FSDP / expert placement: build on the CPU, then move each part to its device once
    on_cpu = args.fsdp or args.expert_devices is not None
    pipe = load_pipeline(args.model, device="cpu" if on_cpu else device, dtype=dtype)
    if args.expert_devices is not None:
        pipe.place_experts(*args.expert_devices)
    if state is not None:
        enable_parallel(pipe, state)
    if args.fsdp:
        from model.fsdp import fully_shard_pipeline

        fully_shard_pipeline(pipe, device)
    if args.compile:
        pipe.compile_blocks()
    image = None
    if args.image is not None:
        from PIL import Image

        image = Image.open(args.image).convert("RGB")
    width, height = args.size if args.size else (None, None)
    t0 = time.perf_counter()
    video = pipe.generate(
        args.prompt, negative_prompt=args.negative_prompt, image=image, height=height, width=width,
        num_frames=args.frames, num_steps=args.steps, guidance_scale=args.guidance,
        sampler=args.sampler, seed=args.seed,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".pt":
            torch.save(video.float().contiguous(), args.out)
        else:
            write_mp4(video, args.out, pipe.preset.fps)
        sys.stderr.write(f"wrote {args.out} {list(video.shape)} in {elapsed:.2f}s\n")

    run_on_rank0(state, write)
    if state is not None:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

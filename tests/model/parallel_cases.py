"""The generations the parallel equality tests compare; run under torchrun it saves each rank's videos.

    python -m torch.distributed.run --standalone --nproc-per-node 4 tests/model/parallel_cases.py \\
        --ulysses 2 --cfg-parallel [--fsdp] --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# name -> (preset, generate kwargs); token counts 18 / 12 / 12 (18 splits unevenly over 4 ranks)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "t2v": ("tiny-t2v-a14b-h4", dict(width=48, height=32, num_frames=9)),
    "i2v": ("tiny-i2v-a14b-h4", dict(width=48, height=32, num_frames=5, image="tensor")),
    "ti2v-image": ("tiny-ti2v-h4", dict(width=64, height=64, num_frames=9, image="tensor")),
}


def run_case(name: str, parallel: Any = None, fsdp: bool = False) -> torch.Tensor:
    from model import load_pipeline
    from model.parallel import enable_parallel

    preset, kw = CASES[name]
    kw = dict(kw)
    if kw.get("image") == "tensor":
        gen = torch.Generator().manual_seed(7)
        kw["image"] = torch.rand(3, kw["height"], kw["width"], generator=gen) * 2 - 1
    pipe = load_pipeline(preset, device="cpu", dtype=torch.float32)
    if parallel is not None:
        enable_parallel(pipe, parallel)
    if fsdp:
        from model.fsdp import fully_shard_pipeline

        fully_shard_pipeline(pipe, "cpu")
        import torch.distributed as dist

        w = pipe.transformer.blocks[0].ffn[0].weight  # a DTensor: this rank holds one row slice
        assert w.to_local().shape[0] == w.shape[0] // dist.get_world_size(), (w.shape, w.to_local().shape)
    return pipe.generate("a lighthouse in a storm", num_steps=2, seed=123, **kw)


def main() -> None:
    import torch.distributed as dist

    from model.parallel import init_parallel

    ap = argparse.ArgumentParser()
    ap.add_argument("--ulysses", type=int, default=1)
    ap.add_argument("--cfg-parallel", action="store_true")
    ap.add_argument("--fsdp", action="store_true")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    state = init_parallel(args.ulysses, args.cfg_parallel, fsdp=args.fsdp)
    for name in CASES:
        torch.save(run_case(name, state, args.fsdp), args.out / f"{name}.rank{state.rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

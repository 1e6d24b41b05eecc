"""Per-step time of one demo fine-tune step (batch 32, random data): one process with 2 threads,
one with 1 thread, and two data-parallel processes (1 thread, batch 16 each, gloo all-reduce of the
gradients). Measures the speed-up a data-parallel training script would get on 2 cores; see
bench/RESULTS.md. Run: .venv/bin/python bench/demo_train_parallel.py"""

import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from training.demo import finetune as F
from training.demo import train as T


def one_step(dit, t5, opt, b, world):
    ids, mask = T.tokenize(["a red circle moves to the left on a black background"] * b)
    x = torch.randn(b, 16, 5, 8, 8)
    tt = torch.rand(b, 5 * 16) * 1000
    ctx, pooled = T.pooled_text(t5, ids, mask)
    loss = dit(x, tt, ctx).pow(2).mean() + pooled.pow(2).mean()
    opt.zero_grad()
    loss.backward()
    if world > 1:
        grads = [p.grad for p in list(dit.parameters()) + list(t5.parameters()) if p.grad is not None]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= world
        o = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[o : o + n].view_as(g))
            o += n
    opt.step()


def run(rank, world, threads, b, n):
    torch.set_num_threads(threads)
    if world > 1:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = "29533"
        dist.init_process_group("gloo", rank=rank, world_size=world)
    F.use_short_text_context()
    dit = T.build_dit()
    t5 = T.build_text_model()
    opt = torch.optim.AdamW(list(dit.parameters()) + list(t5.parameters()), lr=1e-4)
    for _ in range(5):
        one_step(dit, t5, opt, b, world)
    t0 = time.time()
    for _ in range(n):
        one_step(dit, t5, opt, b, world)
    if rank == 0:
        print(
            f"world {world} threads {threads} batch/rank {b}: {(time.time() - t0) / n:.3f} s/step", flush=True
        )


if __name__ == "__main__":
    run(0, 1, 2, 32, 60)
    run(0, 1, 1, 32, 60)
    mp.spawn(run, args=(2, 1, 16, 60), nprocs=2)

"""One generation on several processes (`torch.distributed`): Ulysses sequence parallel and CFG parallel.

Layout of the ``world = cfg * ulysses`` ranks: ``rank = cfg_rank * ulysses + sp_rank``. Ranks with the
same ``cfg_rank`` form a sequence-parallel group; ranks with the same ``sp_rank`` form a CFG pair.
With FSDP (`model.fsdp`) the world may be several replicas of that layout.

* **Ulysses** (sequence parallel): after the patch embedding each rank keeps a contiguous slice of the
  tokens (sizes differ by at most one), with the matching slice of the RoPE table and of per-token
  timesteps (TI2V image mode), so modulation, norms, FFN and the text cross-attention (its keys are
  the full text, on every rank) need no communication. Self-attention is the only place that sees
  all tokens: one all-to-all turns q/k/v ``[B, L/P, H, D]`` into ``[B, L, H/P, D]`` (heads split
  across ranks, so ``num_heads % P == 0``), attention runs per head, and a second all-to-all turns
  the result back into ``[B, L/P, H, D]``. The head's output is all-gathered, so every rank holds
  the whole velocity. I2V conditioning is concatenated on channels before the split.
* **CFG parallel**: rank pair (cond, uncond): each computes one of the two forwards, the pair
  all-gathers them and every rank combines ``uncond + g * (cond - uncond)`` exactly as one process.

Every rank runs the same sampler on the same (identical) velocities, from the same seed: the result
equals a single process up to float rounding in the differently-shaped matmuls. gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from model.transformer import attention as dense_attention

__all__ = ["ParallelState", "Ulysses", "enable_parallel", "init_parallel"]


def _split_sizes(n: int, parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous chunks of n items, the first ``n % parts`` one longer."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


class Ulysses:
    """Token sharding and the two all-to-alls of Ulysses attention within one process group."""

    def __init__(self, group: Any, size: int, rank: int) -> None:
        self.group, self.size, self.rank = group, size, rank
        self.lens: list[int] = []  # tokens held by each rank in the current forward

    def _bounds(self, n: int) -> tuple[int, int]:
        sizes = _split_sizes(n, self.size)
        start = sum(sizes[: self.rank])
        return start, sizes[self.rank]

    def shard(self, x: Tensor, dim: int) -> Tensor:
        """This rank's contiguous slice of the token axis ``dim``."""
        n = x.shape[dim]
        if n < self.size:
            raise ValueError(f"{n} tokens cannot be split across {self.size} sequence-parallel ranks")
        self.lens = _split_sizes(n, self.size)
        start, length = self._bounds(n)
        return x.narrow(dim, start, length)

    def gather(self, x: Tensor, total: int) -> Tensor:
        """[B, L/P, C] shards of every rank -> [B, total, C] (padded to equal size for all_gather)."""
        sizes = _split_sizes(total, self.size)
        pad = sizes[0] - x.shape[1]
        xp = torch.nn.functional.pad(x, (0, 0, 0, pad)).contiguous() if pad else x.contiguous()
        parts = [torch.empty_like(xp) for _ in range(self.size)]
        dist.all_gather(parts, xp, group=self.group)
        return torch.cat([p[:, :n] for p, n in zip(parts, sizes, strict=True)], dim=1)

    def attention(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q/k/v [B, L/P, H, D] (this rank's tokens, all heads) -> [B, L/P, H*D]."""
        P = self.size
        B, Ls, H, D = q.shape
        if H % P:
            raise ValueError(f"{H} attention heads are not divisible by the Ulysses group size {P}")
        Hp = H // P
        # tokens -> heads: chunk j of the heads goes to rank j, which receives every rank's tokens
        qkv = torch.cat([q, k, v]).reshape(3 * B, Ls, P, Hp, D).permute(2, 0, 1, 3, 4)  # [P, 3B, Ls, Hp, D]
        lens = self.lens  # tokens per rank, set by `shard`
        if lens[self.rank] != Ls:
            raise RuntimeError(f"attention got {Ls} tokens but this rank's shard has {lens[self.rank]}")
        unit = 3 * B * Hp * D
        recv = qkv.new_empty(sum(lens) * unit)
        dist.all_to_all_single(
            recv, qkv.contiguous().flatten(), [Ls * unit] * P, [n * unit for n in lens], group=self.group
        )
        chunks = recv.split([n * unit for n in lens])
        full = torch.cat([c.reshape(3 * B, n, Hp, D) for c, n in zip(chunks, lens, strict=True)], dim=1)
        # full: [3B, L, Hp, D]
        qh, kh, vh = full.chunk(3)  # each [B, L, Hp, D]
        out = dense_attention(qh, kh, vh).unflatten(2, (Hp, D))  # [B, L, Hp, D]
        # heads -> tokens: rank j gets its tokens of this rank's heads
        send = torch.cat([c.flatten() for c in out.split(lens, dim=1)])
        back = out.new_empty(P * B * Ls * Hp * D)
        dist.all_to_all_single(
            back, send, [n * B * Hp * D for n in lens], [B * Ls * Hp * D] * P, group=self.group
        )
        return back.reshape(P, B, Ls, Hp, D).permute(1, 2, 0, 3, 4).reshape(B, Ls, H * D)


@dataclass
class ParallelState:
    """This process's place in the (cfg x ulysses) layout and its process groups."""

    rank: int
    world: int
    ulysses: int
    cfg_size: int  # 1 or 2
    sp_rank: int
    cfg_rank: int  # 0: conditional forward, 1: unconditional
    sp: Ulysses | None
    cfg_group: Any = None

    def exchange_cfg(self, mine: Tensor) -> tuple[Tensor, Tensor]:
        """This rank's forward (cond or uncond) -> (cond, uncond), identical on both ranks of the pair."""
        parts = [torch.empty_like(mine) for _ in range(2)]
        dist.all_gather(parts, mine.contiguous(), group=self.cfg_group)
        return parts[0], parts[1]


def init_parallel(
    ulysses: int = 1, cfg_parallel: bool = False, device: str = "cpu", fsdp: bool = False
) -> ParallelState:
    """Join (or reuse) the default process group and build the Ulysses and CFG groups.

    With ``fsdp`` the world may hold several replicas of the (cfg x ulysses) layout: each replica
    computes the same video while FSDP shards the weights over all ranks (``rank = replica * cfg *
    ulysses + cfg_rank * ulysses + sp_rank``). Every rank must call this with the same arguments
    (group creation is collective).
    """
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
    world, rank = dist.get_world_size(), dist.get_rank()
    cfg = 2 if cfg_parallel else 1
    layout = ulysses * cfg
    if ulysses < 1 or (world % layout if fsdp else layout != world):
        rule = f" (with --fsdp it must be a multiple of {layout})" if fsdp else ""
        raise ValueError(
            f"--ulysses {ulysses} x cfg {cfg} = {layout} ranks, but the world has {world} processes{rule}"
        )
    replica, local = divmod(rank, layout)
    cfg_rank, sp_rank = divmod(local, ulysses)
    sp: Ulysses | None = None
    cfg_group = None
    for r in range(world // layout):  # collective: every rank creates every group, in the same order
        base = r * layout
        if ulysses > 1:
            for c in range(cfg):
                g = dist.new_group(list(range(base + c * ulysses, base + (c + 1) * ulysses)))
                if (r, c) == (replica, cfg_rank):
                    sp = Ulysses(g, ulysses, sp_rank)
        if cfg == 2:
            for s in range(ulysses):
                g = dist.new_group([base + s, base + ulysses + s])
                if (r, s) == (replica, sp_rank):
                    cfg_group = g
    return ParallelState(rank, world, ulysses, cfg, sp_rank, cfg_rank, sp, cfg_group)


def enable_parallel(pipe: Any, state: ParallelState) -> None:
    """Wire `state` into a `WanPipeline`: Ulysses into every DiT's attention, CFG into the guidance."""
    for dit in pipe.experts:
        heads = dit.cfg.num_heads
        if heads % state.ulysses:
            raise ValueError(
                f"{pipe.preset.model_id!r} has {heads} attention heads, not divisible by --ulysses "
                f"{state.ulysses}; choose a group size that divides {heads}"
            )
        dit.sp = state.sp
        for block in dit.blocks:
            block.self_attn.sp = state.sp
    pipe.parallel = state


def local_device(device: str) -> str:
    """`cuda` -> `cuda:<LOCAL_RANK>` (one GPU per process under torchrun); anything else unchanged."""
    if device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def run_on_rank0(state: ParallelState | None, fn: Callable[[], None]) -> None:
    """Call `fn` on global rank 0 only (e.g. write the output), then wait for it everywhere."""
    if state is None or state.rank == 0:
        fn()
    if state is not None:
        dist.barrier()

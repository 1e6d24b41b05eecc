"""FSDP for inference (`torch.distributed.fsdp.fully_shard`): DiT experts and the UMT5 encoder sharded
across the ranks, for devices too small to hold a whole expert.

Every transformer block is its own FSDP unit and the model is the root unit (embeddings, time MLP,
head): at rest each rank keeps 1/world of every parameter; a block's parameters are all-gathered
just before its forward and freed right after it, so the peak is the shards plus about one whole
block (the next block's gather is prefetched). There is no backward, so nothing is reduced.

Composition: FSDP shards over all ranks of the world (a 1-D mesh) and needs every rank to run every
sharded forward in the same order, which Ulysses (every rank runs the same blocks on its own token
slice) and CFG parallel (the same blocks on its own prompt) both do. The output equals one process:
each rank computes with the full, gathered parameters.

Not combinable with: offload (FSDP already keeps only shards resident), the step cache (ranks could
skip different blocks and the gathers would deadlock), and per-request LoRAs (they patch the
unsharded weights); `check_fsdp_request` refuses those requests clearly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["FsdpError", "check_fsdp_request", "fully_shard_pipeline"]


class FsdpError(ValueError):
    """A request or setup that FSDP sharding cannot serve."""


def _blocks(module: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks: `WanTransformer.blocks` or the UMT5 encoder's `encoder.block`."""
    blocks = getattr(module, "blocks", None)
    if blocks is None:
        encoder = getattr(module, "encoder", None)
        blocks = getattr(encoder, "block", None)
    if blocks is None:
        raise FsdpError(f"{type(module).__name__} has no repeated blocks to shard")
    return list(blocks)


def _shard(module: nn.Module, mesh: Any) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in _blocks(module):
        fully_shard(block, mesh=mesh, reshard_after_forward=True)
    fully_shard(module, mesh=mesh, reshard_after_forward=True)


def fully_shard_pipeline(pipe: Any, device: str | torch.device) -> None:
    """Shard `pipe`'s experts and UMT5 encoder over the default process group, onto `device`.

    Build the pipeline on the CPU first (`load_pipeline(..., device="cpu")`): sharding moves each
    rank's shard to `device`, so no rank ever holds a whole expert there. The VAE is small and stays
    whole (moved to `device`). Collective: every rank calls this with the same pipeline.
    """
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if not dist.is_initialized():
        raise FsdpError("FSDP needs torch.distributed: launch with torchrun")
    if getattr(pipe, "offload", False):
        raise FsdpError("FSDP and offload are exclusive: FSDP already keeps only a shard resident")
    dev = torch.device(device)
    mesh = init_device_mesh(dev.type, (dist.get_world_size(),))
    for dit in pipe.experts:
        _shard(dit, mesh)
    _shard(pipe.text_encoder.model, mesh)
    pipe.vae.to(dev)
    pipe.device = dev
    pipe.fsdp = True


def check_fsdp_request(pipe: Any, *, cache: Any, loras: Any) -> None:
    """Refuse per-request features that a sharded pipeline cannot run."""
    if not getattr(pipe, "fsdp", False):
        return
    if cache is not None:
        raise FsdpError("step caching is not supported with FSDP: ranks must run the same blocks")
    if loras:
        raise FsdpError("per-request LoRAs are not supported with FSDP: the weights are sharded")

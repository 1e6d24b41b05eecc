"""Regional compilation (`WanPipeline.compile_blocks`): whole blocks compile and match eager numerics."""

from __future__ import annotations

import torch
from PIL import Image

from model import load_pipeline


def test_compiled_blocks_match_eager_text_and_image_mode() -> None:
    pipe = load_pipeline("tiny-ti2v", device="cpu", dtype=torch.float32)
    image = Image.new("RGB", (32, 32), (200, 40, 90))
    eager_t = pipe.generate("a red fox", num_steps=2, seed=11)
    eager_i = pipe.generate("a red fox", num_steps=2, seed=11, image=image)
    # fullgraph: a graph break anywhere in the block (e.g. complex RoPE) is an error, not a fallback
    pipe.compile_blocks(fullgraph=True)
    blocks = list(pipe.transformer.blocks)
    assert all(b._compiled_call_impl is not None for b in blocks)
    comp_t = pipe.generate("a red fox", num_steps=2, seed=11)
    comp_i = pipe.generate("a red fox", num_steps=2, seed=11, image=image)  # per-token timesteps
    torch.testing.assert_close(comp_t, eager_t, rtol=0, atol=1e-5)
    torch.testing.assert_close(comp_i, eager_i, rtol=0, atol=1e-5)
    pipe.compile_blocks()  # idempotent: blocks already compiled keep their compiled callable
    assert [b._compiled_call_impl for b in pipe.transformer.blocks] == [b._compiled_call_impl for b in blocks]

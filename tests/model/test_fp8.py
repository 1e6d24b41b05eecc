"""FP8 linear layers (model/fp8.py) and the `make gpu-check` script's CPU-runnable path."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from model.fp8 import Float8Linear, Fp8Unavailable, fp8_support, quantize_transformer_fp8
from model.transformer import TI2V_5B, WanTransformer

ROOT = Path(__file__).resolve().parents[2]


def test_float8_linear_is_close_to_the_bf16_layer() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(256, 128).to(torch.bfloat16)
    fp8 = Float8Linear(layer)
    x = torch.randn(4, 7, 256, dtype=torch.bfloat16)
    ref = layer(x).float()
    got = fp8(x).float()
    assert got.shape == ref.shape and got.dtype == torch.float32
    rel = ((got - ref).norm() / ref.norm()).item()
    assert rel < 0.06, rel  # e4m3 keeps 3 mantissa bits: a few percent, not more
    assert fp8.weight_fp8.dtype == torch.float8_e4m3fn
    assert fp8.weight_fp8.element_size() == 1  # half of bf16's bytes


def test_per_row_scales_keep_small_rows_accurate() -> None:
    # one row 1000x larger than the others: a per-tensor scale would flush the small rows to zero
    layer = nn.Linear(64, 32, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        layer.weight[0] *= 1000
    fp8 = Float8Linear(layer)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    ref, got = layer(x).float(), fp8(x).float()
    small = slice(1, None)
    assert ((got[:, small] - ref[:, small]).norm() / ref[:, small].norm()).item() < 0.06


def test_quantizing_the_dit_on_cpu_is_a_clear_error() -> None:
    assert fp8_support("cpu") is not None
    cfg = replace(TI2V_5B, dim=64, ffn_dim=128, num_heads=4, num_layers=4, text_dim=32)
    dit = WanTransformer(cfg).to(torch.bfloat16)
    with pytest.raises(Fp8Unavailable, match="compute capability"):
        quantize_transformer_fp8(dit)
    assert all(isinstance(m, nn.Linear) for m in dit.blocks[1].ffn if isinstance(m, nn.Linear))


def test_gpu_check_smoke_run_writes_its_summary(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--smoke", "--repeats", "1", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert summary["environment"]["device"] == "cpu"
    rows = {r["variant"]: r for r in summary["forwards"]}
    assert rows["sdpa"]["forward_s"] > 0 and rows["sdpa"]["tflops"] >= 0
    assert rows["sdpa"]["forward_s"] > 0 and rows["compile"]["forward_s"] > 0
    assert "compute capability" in rows["fp8+compile"]["skipped"]
    assert "compute capability" in rows["fp8"]["skipped"]


def test_gpu_check_refuses_to_run_without_cuda_unless_smoke() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = subprocess.run([sys.executable, "bench/gpu_check.py"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "--smoke" in proc.stderr

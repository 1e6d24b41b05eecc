"""Ulysses sequence parallel, CFG parallel and both (gloo, CPU): same video as one process within 1e-4.

Each layout runs once under torchrun (`tests/model/parallel_cases.py`: T2V, I2V and TI2V image
mode) and every rank's video is compared with a single-process generation in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from model.parallel import ParallelState, enable_parallel, init_parallel

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from parallel_cases import CASES, run_case  # noqa: E402


def _torchrun(nproc: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    return {name: run_case(name) for name in CASES}


@pytest.mark.parametrize(
    ("world", "ulysses", "cfg", "fsdp"),
    [
        (2, 2, False, False),
        (2, 1, True, False),
        (4, 2, True, False),
        (2, 1, False, True),
        (2, 2, False, True),
        (2, 1, True, True),
        (4, 2, False, True),
    ],
    ids=[
        "ulysses2",
        "cfg",
        "cfg2xulysses2",
        "fsdp2",
        "fsdp2xulysses2",
        "fsdp2xcfg",
        "fsdp4x2replicas-of-ulysses2",
    ],
)
def test_parallel_equals_one_process(
    world: int, ulysses: int, cfg: bool, fsdp: bool, reference: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """FSDP shards over the whole world; the (cfg x ulysses) layout may repeat across it (replicas)."""
    script = str(REPO / "tests/model/parallel_cases.py")
    extra = (["--cfg-parallel"] if cfg else []) + (["--fsdp"] if fsdp else [])
    res = _torchrun(world, [script, "--ulysses", str(ulysses), *extra, "--out", str(tmp_path)], REPO)
    assert res.returncode == 0, res.stderr[-4000:]
    for name, ref in reference.items():
        for rank in range(world):
            got = torch.load(tmp_path / f"{name}.rank{rank}.pt")
            assert got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-4, msg=f"{name} rank {rank}")
        assert ref.abs().max() > 0.01  # a real video, not an all-zero output


def test_entry_point_writes_the_same_video_on_rank0(tmp_path: Path) -> None:
    from PIL import Image

    from model import load_pipeline

    img = Image.new("RGB", (64, 64))
    img.putdata([(x * 4 % 256, y * 4 % 256, (x + y) % 256) for y in range(64) for x in range(64)])
    img.save(tmp_path / "first.png")
    out = tmp_path / "v.pt"
    args = [
        "-m", "model", "--model", "tiny-ti2v-h4", "--prompt", "a red kite", "--seed", "9", "--steps", "2",
        "--frames", "5", "--size", "64x64", "--device", "cpu", "--image", str(tmp_path / "first.png"),
        "--out", str(out), "--ulysses", "2", "--cfg-parallel",
    ]  # fmt: skip
    res = _torchrun(4, args, tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    got = torch.load(out)
    pipe = load_pipeline("tiny-ti2v-h4", device="cpu", dtype=torch.float32)
    ref = pipe.generate("a red kite", seed=9, num_steps=2, num_frames=5, width=64, height=64, image=img)
    assert got.dtype == torch.float32 and got.shape == (3, 5, 64, 64)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)


def test_heads_must_divide_by_the_ulysses_size() -> None:
    from model import load_pipeline

    pipe = load_pipeline("tiny-ti2v", device="cpu", dtype=torch.float32)  # 2 heads
    state = ParallelState(rank=0, world=4, ulysses=4, cfg_size=1, sp_rank=0, cfg_rank=0, sp=None)
    with pytest.raises(ValueError, match="2 attention heads, not divisible by --ulysses 4"):
        enable_parallel(pipe, state)
    assert pipe.parallel is None and pipe.transformer.sp is None  # nothing changed


def test_layout_must_match_the_world_size(tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rdv", rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="world has 1 processes"):
            init_parallel(ulysses=2)
        with pytest.raises(ValueError, match="world has 1 processes"):
            init_parallel(cfg_parallel=True)
        with pytest.raises(ValueError, match="with --fsdp it must be a multiple of 2"):
            init_parallel(ulysses=2, fsdp=True)
    finally:
        dist.destroy_process_group()


def test_entry_point_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from model.__main__ import parse_args

    base = ["--model", "tiny-ti2v", "--prompt", "p"]
    with pytest.raises(SystemExit):
        parse_args([*base, "--out", "x.gif"])
    assert "--out must end in .pt or .mp4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args([*base, "--out", "x.pt", "--size", "64by64"])
    assert "--size must look like" in capsys.readouterr().err

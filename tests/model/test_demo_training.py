"""The demo's training script runs end to end (a few steps per stage) and exports a folder that the
normal loader serves. The quality of a full run is checked on the shipped weights by
test_demo_quality.py; the full run's time and score are in bench/RESULTS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _train(work: Path, out: Path) -> None:
    cmd = [
        sys.executable, str(ROOT / "training/train_demo.py"),
        "--work-dir", str(work), "--out", str(out), "--threads", "1",
        "--vae-steps", "2", "--num-clips", "24", "--dit-steps", "2",
        "--dit2-steps", "1", "--dit3-steps", "1", "--ft-steps", "1,1,2", "--ft-clips", "16",
        "--ft-image-prob", "0.3", "--align-steps", "2", "--refine-steps", "2",
        "--lightning-steps", "2", "--lightning-samples", "4",
        "--lora-out", str(out.parent / f"{out.name}-loras"),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_training_script_runs_every_stage_and_exports_a_loadable_checkpoint(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "weights"
    _train(work, out)

    # every DiT stage continued from the one before it
    expected = {"dit": 2, "dit2": 3, "dit3": 4, "ft1": 5, "ft2": 6, "ft3": 8, "align": 10, "refine": 12}
    assert {s: torch.load(work / f"{s}.pt")["step"] for s in expected} == expected
    log = (work / "train.log").read_text()
    assert "exported refine (step 12)" in log
    assert "'ft_image_prob': 0.3" in log
    assert "eval preset defaults: text " in log  # the quality bar ran on the export
    assert "eval {'sampler': 'distill', 'num_steps': 4" in log  # and on the distilled LoRA

    from model import load_pipeline

    # the alignment keeps the DiT and gives the encoder words; the refinement trains both
    ft3, aligned, refined = (torch.load(work / f"{s}.pt") for s in ("ft3", "align", "refine"))
    assert all(torch.equal(aligned["dit"][k], v) for k, v in ft3["dit"].items())
    assert any(not torch.equal(refined["dit"][k], v) for k, v in aligned["dit"].items())
    assert any(not torch.equal(refined["t5"][k], v) for k, v in aligned["t5"].items())
    assert refined["tokenizer"] == aligned["tokenizer"] and refined["tokenizer"]["kind"] == "word"
    pipe = load_pipeline(str(out))
    assert pipe.transformer.cfg.text_len == 32  # the word-level encoder's text context
    assert type(pipe.text_encoder.tokenizer).__name__ == "WordTokenizer"
    video = pipe.generate("a red circle moves to the left", num_steps=2, seed=0)
    assert video.shape == (3, 9, 32, 32)
    assert torch.isfinite(video).all()

    # a second run from scratch writes the same bytes: the shipped weights are reproducible
    _train(tmp_path / "work2", tmp_path / "weights2")
    for name in ("diffusion_pytorch_model.safetensors", "Wan2.2_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth"):
        assert (out / name).read_bytes() == (tmp_path / "weights2" / name).read_bytes(), name
    lora = "wanserve-demo-lightning.safetensors"
    assert (tmp_path / "weights-loras" / lora).read_bytes() == (
        tmp_path / "weights2-loras" / lora
    ).read_bytes()


def test_a_stale_checkpoint_from_another_configuration_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    base = [
        sys.executable, str(ROOT / "training/train_demo.py"), "--work-dir", str(work),
        "--out", str(tmp_path / "weights"), "--threads", "1", "--vae-steps", "1", "--num-clips", "8",
    ]  # fmt: skip
    first = subprocess.run(
        [*base, "--stage", "vae"], capture_output=True, text=True, timeout=300, check=False
    )
    assert first.returncode == 0, first.stderr[-3000:]
    torch.save({"dit": {}, "t5": {}, "step": 7}, work / "dit.pt")  # from a run with 7 phase-1 steps
    missing = subprocess.run(
        [*base, "--stage", "ft1"], capture_output=True, text=True, timeout=300, check=False
    )
    assert missing.returncode != 0
    assert "dit3.pt is missing: run --stage dit3 first" in missing.stderr  # the default chain has dit3
    run = subprocess.run(
        [*base, "--stage", "ft1", "--dit-steps", "5", "--dit2-steps", "0", "--dit3-steps", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode != 0
    assert "dit.pt is from step 7, this configuration expects 5" in run.stderr


def test_the_held_out_and_wide_caption_options_run_and_export_their_text_length(tmp_path: Path) -> None:
    """The experiment options of issue 20 (off in the shipped recipe) run end to end."""
    work, out = tmp_path / "work", tmp_path / "weights"
    cmd = [
        sys.executable, str(ROOT / "training/train_demo.py"),
        "--work-dir", str(work), "--out", str(out), "--threads", "1",
        "--vae-steps", "2", "--num-clips", "24", "--dit-steps", "2",
        "--dit2-steps", "1", "--dit3-steps", "1", "--ft-steps", "2,1,0", "--ft-clips", "16",
        "--lightning-steps", "0", "--hold-out-combos", "--ft-wide-captions", "--ft-text-len", "96",
        "--ft-token-aux", "0.5", "--ft-rest-lr-scale", "0.5", "--align-steps", "0", "--refine-steps", "0",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = (work / "train.log").read_text()
    assert "'hold_out_combos': True" in log and "'ft_token_aux': 0.5" in log
    assert "'ft_captions': {'variants': 8, 'canonical_share': 0.5" in log
    assert " tok " in log  # the per-position attribute loss ran
    from model import load_pipeline

    assert load_pipeline(str(out)).transformer.cfg.text_len == 96


def test_the_caption_alignment_stage_keeps_the_dit_and_exports_the_aligned_encoder(tmp_path: Path) -> None:
    """Stage ``align`` with a byte-level student (``--no-align-word-tokens``): after the fine-tune
    only the text encoder trains (here one layer deeper), the DiT's weights stay those of the
    fine-tune, and the export reads 96 text positions with the grown encoder."""
    work, out = tmp_path / "work", tmp_path / "weights"
    cmd = [
        sys.executable, str(ROOT / "training/train_demo.py"),
        "--work-dir", str(work), "--out", str(out), "--threads", "1",
        "--vae-steps", "2", "--num-clips", "24", "--dit-steps", "2",
        "--dit2-steps", "1", "--dit3-steps", "0", "--ft-steps", "1,0,0", "--ft-clips", "16",
        "--lightning-steps", "0", "--hold-out-combos", "--align-steps", "3", "--refine-steps", "0",
        "--align-extra-layers", "1", "--align-x0", "--no-align-word-tokens",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = (work / "train.log").read_text()
    assert "align step 2 loss" in log and "exported align (step 7)" in log
    ft1, aligned = torch.load(work / "ft1.pt"), torch.load(work / "align.pt")
    assert aligned["t5_layers"] == ft1["t5_layers"] + 1 and aligned["text_len"] == 96
    for key, value in ft1["dit"].items():
        assert torch.equal(aligned["dit"][key], value), key
    assert any(not torch.equal(aligned["t5"][k], v) for k, v in ft1["t5"].items())

    from model import load_pipeline

    pipe = load_pipeline(str(out))
    assert pipe.transformer.cfg.text_len == 96
    assert pipe.text_encoder.model.config.num_layers == ft1["t5_layers"] + 1
    video = pipe.generate("one red circle cruises off to the left", num_steps=2, seed=0)
    assert torch.isfinite(video).all()


def test_the_caption_alignment_can_give_the_encoder_a_word_tokenizer(tmp_path: Path) -> None:
    """``--align-word-tokens`` (the shipped recipe): the aligned encoder reads words of the training
    vocabulary (a word it never saw is the unknown token); the export ships that vocabulary as the
    tokenizer, 32 text positions, and the normal loader serves it."""
    work, out = tmp_path / "work", tmp_path / "weights"
    cmd = [
        sys.executable, str(ROOT / "training/train_demo.py"),
        "--work-dir", str(work), "--out", str(out), "--threads", "1",
        "--vae-steps", "2", "--num-clips", "24", "--dit-steps", "2",
        "--dit2-steps", "1", "--dit3-steps", "0", "--ft-steps", "1,0,0", "--ft-clips", "16",
        "--lightning-steps", "0", "--hold-out-combos", "--align-steps", "3", "--refine-steps", "0",
        "--align-word-tokens",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ft1, aligned = torch.load(work / "ft1.pt"), torch.load(work / "align.pt")
    from model.tokenizer import WordTokenizer
    from training.demo.captions import tokenizer_vocabulary

    assert ft1["tokenizer"] is None
    assert aligned["tokenizer"] == {"kind": "word", "vocab": list(tokenizer_vocabulary())}
    vocab = aligned["tokenizer"]["vocab"]
    assert aligned["t5"]["shared.weight"].shape[0] == len(vocab) + 3
    assert aligned["text_len"] == 32
    for key, value in ft1["dit"].items():
        assert torch.equal(aligned["dit"][key], value), key

    from model import load_pipeline

    pipe = load_pipeline(str(out))
    tok = pipe.text_encoder.tokenizer
    assert isinstance(tok, WordTokenizer) and tok.vocab == tuple(vocab)
    assert not (out / "google" / "umt5-xxl" / "wanserve_byte_tokenizer.json").exists()
    assert pipe.transformer.cfg.text_len == 32
    ids = tok("One red circle cruises off to the left")["input_ids"][0]
    assert tok.decode(ids) == "one red circle <unk> <unk> to the left"
    video = pipe.generate("one red circle cruises off to the left", num_steps=2, seed=0)
    assert torch.isfinite(video).all()
    # a re-export from the fine-tune goes back to bytes
    rerun = subprocess.run([*cmd, "--stage", "ft1"], capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert not (out / "google" / "umt5-xxl" / "wanserve_word_tokenizer.json").exists()
    assert type(load_pipeline(str(out)).text_encoder.tokenizer).__name__ == "ByteTokenizer"

    # --align-known-words: the encoder keeps reading bytes, of the known words only
    known = subprocess.run(
        [*cmd[:-1], "--no-align-word-tokens", "--align-known-words", "--stage", "align"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert known.returncode == 0, known.stdout[-3000:] + known.stderr[-3000:]
    state = torch.load(work / "align.pt")["tokenizer"]
    assert state == {"kind": "byte", "known_words": sorted(tokenizer_vocabulary())}
    pipe = load_pipeline(str(out))
    assert pipe.transformer.cfg.text_len == 96 and pipe.text_encoder.model.config.vocab_size == 384
    byte_tok = pipe.text_encoder.tokenizer
    assert byte_tok.filter("One red circle cruises off to the left") == "One red circle to the left"

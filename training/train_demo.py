"""Train the built-in ``wanserve-demo`` model from scratch, on CPU, reproducibly.

    .venv/bin/python training/train_demo.py                 # everything: VAE, latents, DiT, text-following
                                                           # fine-tune, export to model/demo/weights, eval
    .venv/bin/python training/train_demo.py --stage dit     # one stage at a time, reusing --work-dir:
                                                           # vae (incl. latents) | latents | dit | dit2
                                                           # | dit3 | ft1 | ft2 | ft3 | align | refine
    .venv/bin/python training/train_demo.py --stage export  # re-export the latest DiT checkpoint + eval
    .venv/bin/python training/train_demo.py --stage lightning  # distil the 4-step LoRA from the exported
                                                           # model into model/demo/loras, + its eval

The DiT trains as a chain of stages, each continuing from the previous one's EMA weights:

- ``dit``: flow matching on multi-object clips of the procedural world (``training.demo.train``);
- ``dit2``, ``dit3``: the same plus a caption-attribute loss on the text encoder (dit3: a fresh
  optimiser, a new data order and a lower learning rate);
- ``ft1``-``ft3``: the text-following fine-tune of ``training.demo.finetune`` (single-object clips,
  64 text positions, a faster learning rate on the text path, three text-mode samples for every
  image-mode one), restarted with a lower learning rate. ``ft3`` has 0 steps by default: it made
  text mode worse (bench/RESULTS.md);
- ``align``: caption alignment of the text encoder (``training.demo.align``): with the DiT frozen,
  a student encoder that reads **words** (``model.tokenizer.WordTokenizer``: the training
  vocabulary, every other word one unknown token) must make the DiT predict, for a paraphrase of
  the training grammar, what the fine-tuned byte-level encoder makes it predict for the canonical
  caption; no caption of this stage describes a ``HELD_OUT_COMBOS`` triple (the combination set);
  the exported DiT reads 32 text positions;
- ``refine``: flow matching of the DiT and the aligned encoder together on the fine-tune's clips,
  captioned like the alignment, so that the DiT reads the student's context as well as it read the
  teacher's.

After the export, ``lightning`` distils ``wanserve-demo-lightning`` (``training.demo.lightning``):
a rank-8 LoRA with which the ``distill`` sampler at 4 steps without guidance matches the exported
model at its defaults; written to ``model.presets.DEMO_LORA_DIR`` (``--lora-out``).

Options of issue 20's caption-grammar experiments, off by default: ``--hold-out-combos`` (no clip
of any stage shows a ``HELD_OUT_COMBOS`` triple), ``--ft-wide-captions`` (fine-tune on canonical +
wide-grammar captions with made-up words), ``--ft-token-aux`` (every caption position of the DiT's
context states the attributes), ``--ft-rest-lr-scale``, ``--ft-text-len``; and the knobs of
``align`` and ``refine`` (``--align-steps``, ``--align-lr``, ``--align-x0``, ``--align-extra-layers``,
``--align-canonical-share``, ``--no-align-word-tokens`` for a byte-level student,
``--align-known-words`` for a byte tokenizer that leaves unknown words out, ``--align-obscure``,
``--align-student-len``, ``--no-align-hold-out-combos``, ``--refine-steps``, ``--refine-lr``);
results in bench/RESULTS.md ("wanserve-demo and the caption grammar").

A stage with 0 steps is skipped. Wall time and quality of a from-scratch run with the defaults are
recorded in bench/RESULTS.md ("wanserve-demo training from scratch"). A second run on the same
machine writes the same bytes (the floating-point results depend on the CPU's instruction set, so
another CPU model trains slightly different weights).

Writes the checkpoint folder (official Wan2.2 TI2V layout) to ``model.presets.DEMO_WEIGHTS_DIR`` by default.
Intermediate files (VAE, latents, DiT checkpoints, log) go to ``--work-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model.presets import DEMO_LORA_DIR, DEMO_WEIGHTS_DIR  # noqa: E402
from model.tokenizer import ByteTokenizer, WordTokenizer  # noqa: E402
from training.demo import align as A  # noqa: E402
from training.demo import finetune as F  # noqa: E402
from training.demo import lightning as LT  # noqa: E402
from training.demo import train as T  # noqa: E402
from training.demo.export import export_checkpoint  # noqa: E402
from training.demo.world import COLOR_NAMES, DIRECTION_NAMES, SHAPES  # noqa: E402

CHAIN = ("dit", "dit2", "dit3", "ft1", "ft2", "ft3", "align", "refine")
# text-following fine-tune restarts: (learning rate of the text path, of the rest, data seed)
FT_SCHEDULE = {"ft1": (2e-3, 3e-4, 7), "ft2": (8e-4, 1.5e-4, 8), "ft3": (4e-4, 8e-5, 9)}
FT_STEPS = (4000, 2000, 0)  # ft3 (a third restart) is optional: it did not help (bench/RESULTS.md)
# Keep the 24 (colour, shape, direction) triples of training.demo.captions.HELD_OUT_COMBOS out of every
# stage's clips (VAE, pre-training scenes, fine-tune clips), so the combination set is held out.
HOLD_OUT_COMBOS = False
# Captions of the fine-tune stages: None = the canonical phrasing only (the shipped recipe); a
# CaptionMix = canonical and wide-grammar captions (training.demo.captions), drawn per step.
FT_CAPTIONS: F.CaptionMix | None = None
# weight of the per-position attribute loss on the text context (0: off, the shipped recipe)
FT_TOKEN_AUX = 0.0
# factor on the fine-tune's learning rate of the DiT's non-text path (1: the shipped recipe)
FT_REST_LR_SCALE = 1.0
# text positions of the fine-tuned (and exported) DiT: 64 in the shipped recipe; wide-grammar prompts
# run longer (a paraphrase of 85 characters would lose its direction at 64)
FT_TEXT_LEN = F.FT_TEXT_LEN
# caption alignment of the text encoder after the fine-tune (training.demo.align): steps (0: off)
# and the encoder layers it adds
ALIGN_STEPS = 1500
ALIGN_EXTRA_LAYERS = 0
# the aligned encoder reads words of a fixed vocabulary (model.tokenizer.WordTokenizer), not bytes
ALIGN_WORD_TOKENS = True
# the aligned encoder's byte tokenizer leaves out the words no training caption uses
ALIGN_KNOWN_WORDS = False
# stage refine after the alignment: steps (0: off) and learning rates (text path, rest of the DiT)
REFINE_STEPS = 1000
# share of the 4-step LoRA's teacher prompts in the training grammar (when the encoder reads it)
LIGHTNING_PARAPHRASE_SHARE = 0.5
REFINE_LR = (8e-4, 1.5e-4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = ["all", "vae", "latents", *CHAIN, "export", "eval", "lightning"]
    ap.add_argument("--stage", choices=stages, default="all")
    ap.add_argument("--out", default=str(DEMO_WEIGHTS_DIR))
    ap.add_argument("--work-dir", default="/tmp/wanserve-demo-train")
    ap.add_argument("--vae-steps", type=int, default=T.TrainConfig.vae_steps)
    ap.add_argument("--num-clips", type=int, default=T.TrainConfig.num_clips)
    ap.add_argument("--dit-steps", type=int, default=T.TrainConfig.dit_steps)
    ap.add_argument("--dit2-steps", type=int, default=T.TrainConfig.dit2_steps)
    ap.add_argument("--dit3-steps", type=int, default=T.TrainConfig.dit3_steps)
    ap.add_argument("--ft-clips", type=int, default=F.FT_CLIPS, help="single-object clips of the fine-tune")
    ap.add_argument("--ft-batch", type=int, default=F.FT_BATCH)
    ap.add_argument(
        "--ft-image-prob",
        type=float,
        default=F.FT_IMAGE_MODE_PROB,
        help="share of fine-tune samples trained in image mode (first frame given)",
    )
    ap.add_argument("--ft-steps", default=",".join(map(str, FT_STEPS)), help="steps of ft1,ft2,ft3")
    ap.add_argument("--lora-out", default=str(DEMO_LORA_DIR), help="folder of the distilled LoRA")
    ap.add_argument("--lightning-steps", type=int, default=LT.DistillConfig.train_steps)
    ap.add_argument("--lightning-samples", type=int, default=LT.DistillConfig.num_samples)
    ap.add_argument(
        "--lightning-threads",
        type=int,
        default=LT.DistillConfig.threads,
        help="threads of the distillation (the shipped LoRA's bytes depend on it)",
    )
    ap.add_argument(
        "--hold-out-combos",
        action=argparse.BooleanOptionalAction,
        default=HOLD_OUT_COMBOS,
        help="no training clip of any stage shows a HELD_OUT_COMBOS triple",
    )
    ap.add_argument(
        "--ft-wide-captions",
        action=argparse.BooleanOptionalAction,
        default=FT_CAPTIONS is not None,
        help="fine-tune on canonical + wide-grammar captions (else canonical only)",
    )
    mix = FT_CAPTIONS or F.CaptionMix()
    ap.add_argument("--ft-canonical-share", type=float, default=mix.canonical_share)
    ap.add_argument("--ft-pseudo", type=float, default=mix.pseudo, help="made-up verb/adjective rate")
    ap.add_argument("--ft-sprinkle", type=float, default=mix.sprinkle, help="made-up word anywhere rate")
    ap.add_argument("--ft-variants", type=int, default=mix.variants, help="captions per fine-tune clip")
    ap.add_argument("--ft-text-len", type=int, default=FT_TEXT_LEN, help="text positions from ft1 on")
    ap.add_argument("--ft-token-aux", type=float, default=FT_TOKEN_AUX)
    ap.add_argument("--ft-rest-lr-scale", type=float, default=FT_REST_LR_SCALE)
    ap.add_argument(
        "--align-steps",
        type=int,
        default=ALIGN_STEPS,
        help="steps of the caption alignment of the text encoder after the fine-tune (0: none)",
    )
    ap.add_argument(
        "--align-extra-layers",
        type=int,
        default=ALIGN_EXTRA_LAYERS,
        help="text-encoder layers the caption alignment adds (they start as the identity)",
    )
    ap.add_argument("--align-lr", type=float, default=A.AlignConfig.lr)
    ap.add_argument(
        "--align-word-tokens",
        action=argparse.BooleanOptionalAction,
        default=ALIGN_WORD_TOKENS,
        help="the aligned encoder reads words (unknown words: one token) instead of bytes",
    )
    ap.add_argument(
        "--align-student-len",
        type=int,
        default=None,
        help="text positions of the aligned encoder and the exported DiT (default: 32 words / 96 bytes)",
    )
    ap.add_argument("--align-obscure", type=float, default=A.AlignConfig.obscure)
    ap.add_argument(
        "--align-canonical-share",
        type=float,
        default=A.AlignConfig.canonical_share,
        help="share of the alignment's captions in the canonical phrasing",
    )
    ap.add_argument(
        "--align-hold-out-combos",
        action=argparse.BooleanOptionalAction,
        default=A.AlignConfig.hold_out_combos,
        help="no caption of the alignment describes a HELD_OUT_COMBOS triple",
    )
    ap.add_argument(
        "--refine-steps",
        type=int,
        default=REFINE_STEPS,
        help="stage refine: flow matching of the DiT and the aligned encoder together (0: none)",
    )
    ap.add_argument("--refine-lr", default=",".join(map(str, REFINE_LR)), help="text path, rest")
    ap.add_argument(
        "--align-known-words",
        action=argparse.BooleanOptionalAction,
        default=ALIGN_KNOWN_WORDS,
        help="the aligned encoder's byte tokenizer leaves out words outside the training vocabulary",
    )

    ap.add_argument(
        "--align-x0",
        action=argparse.BooleanOptionalAction,
        default=A.AlignConfig.x0_space,
        help="compare clean-latent predictions (weighs the noisy steps up)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    ft_steps = [int(s) for s in args.ft_steps.split(",")]
    if len(ft_steps) != 3 or min(ft_steps) < 0:
        ap.error("--ft-steps takes three non-negative integers, e.g. 3000,1500,800")
    if not 0.0 <= args.ft_image_prob <= 1.0:
        ap.error("--ft-image-prob is a share between 0 and 1")
    cfg = T.TrainConfig(
        seed=args.seed,
        threads=args.threads,
        vae_steps=args.vae_steps,
        dit_steps=args.dit_steps,
        dit2_steps=args.dit2_steps,
        dit3_steps=args.dit3_steps,
        num_clips=args.num_clips,
        out_dir=args.out,
        work_dir=args.work_dir,
        extra={
            "ft_steps": ft_steps,
            "ft_clips": args.ft_clips,
            "ft_batch": args.ft_batch,
            "ft_image_prob": args.ft_image_prob,
            "hold_out_combos": args.hold_out_combos,
            "ft_captions": (
                F.CaptionMix(args.ft_variants, args.ft_canonical_share, args.ft_pseudo, args.ft_sprinkle)
                if args.ft_wide_captions
                else None
            ),
            "ft_token_aux": args.ft_token_aux,
            "ft_rest_lr_scale": args.ft_rest_lr_scale,
            "ft_text_len": args.ft_text_len,
            "refine_lr": [float(x) for x in args.refine_lr.split(",")],
            "align": dataclasses.asdict(
                A.AlignConfig(
                    steps=args.align_steps,
                    lr=args.align_lr,
                    extra_layers=args.align_extra_layers,
                    x0_space=args.align_x0,
                    word_tokens=args.align_word_tokens,
                    student_len=args.align_student_len or (32 if args.align_word_tokens else 96),
                    obscure=args.align_obscure,
                    known_words=args.align_known_words,
                    canonical_share=args.align_canonical_share,
                    hold_out_combos=args.align_hold_out_combos,
                )
            ),
        },
    )
    F.FT_TEXT_LEN = args.ft_text_len
    if args.hold_out_combos:
        from training.demo.captions import HELD_OUT_COMBOS

        T.DEMO_WORLD = dataclasses.replace(T.DEMO_WORLD, held_out=tuple(sorted(HELD_OUT_COMBOS)))
    if min(args.align_steps, args.align_extra_layers, args.refine_steps) < 0:
        ap.error("--align-steps, --align-extra-layers and --refine-steps must not be negative")
    chain_steps = [cfg.dit_steps, cfg.dit2_steps, cfg.dit3_steps, *ft_steps]
    chain_steps += [args.align_steps, args.refine_steps]
    steps = dict(zip(CHAIN, chain_steps, strict=True))
    if steps["dit"] <= 0:
        ap.error("--dit-steps must be positive: every later stage starts from it")
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

    def ckpt(stage: str) -> Path:
        return work / f"{stage}.pt"

    def previous(stage: str) -> str:
        """The last stage before ``stage`` in the chain that runs (has steps)."""
        before = [s for s in CHAIN[: CHAIN.index(stage)] if steps[s] > 0]
        return before[-1]

    def steps_through(stage: str) -> int:
        return sum(steps[s] for s in CHAIN[: CHAIN.index(stage) + 1])

    def stage_time(name: str, t0: float) -> None:
        log(f"stage {name} took {time.time() - t0:.0f}s (total {time.time() - t_start:.0f}s)")

    if args.stage in ("all", "vae"):
        t0 = time.time()
        vae = T.train_vae(cfg, log)
        torch.save(vae.state_dict(), vae_path)
        log(f"saved {vae_path}")
        stage_time("vae", t0)

    if args.stage in ("all", "vae", "latents"):
        t0 = time.time()
        vae = T.build_vae()
        vae.load_state_dict(torch.load(vae_path))
        vae.eval()
        raw, caps, stats = T.build_latent_dataset(vae, cfg, log)
        torch.save({"raw": raw, "captions": caps, "stats": stats}, lat_path)
        log(f"latent mean {stats[0].mean():.3f} std range {stats[1].min():.3f}..{stats[1].max():.3f}")
        stage_time("latents", t0)

    for stage in CHAIN:
        if args.stage not in ("all", stage) or steps[stage] == 0:
            continue
        t0 = time.time()
        if stage == "dit":
            dit, t5 = train_first_stage(cfg, lat_path, ckpt("dit"), log)
        else:
            dit, t5 = load_stage(ckpt(previous(stage)), steps_through(previous(stage)))
            if stage in ("dit2", "dit3"):
                dit, t5 = train_attribute_stage(cfg, stage, steps[stage], dit, t5, lat_path, log)
            elif stage == "align":
                dit, t5 = train_align_stage(cfg, dit, t5, vae_path, lat_path, log)
            elif stage == "refine":
                dit, t5 = train_refine_stage(cfg, steps[stage], dit, t5, vae_path, lat_path, log)
            else:
                dit, t5 = train_finetune_stage(cfg, stage, steps[stage], dit, t5, vae_path, lat_path, log)
        state = {
            "dit": dit.state_dict(),
            "t5": t5.state_dict(),
            "step": steps_through(stage),
            "text_len": T.DEMO_DIT["text_len"],
            "t5_layers": int(getattr(t5.config, "num_layers")),  # noqa: B009 (nn.Module is untyped)
            "tokenizer": tokenizer_state(T.DEMO_TOKENIZER),
        }
        torch.save(state, ckpt(stage))
        stage_time(stage, t0)

    if args.stage in ("all", *CHAIN, "export"):
        # a single stage exports its own result; "all" and "export" the end of the chain
        last = args.stage if args.stage in CHAIN else [s for s in CHAIN if steps[s] > 0][-1]
        stats = torch.load(lat_path)["stats"]
        vae = T.build_vae(stats[0].tolist(), stats[1].tolist())
        vae.load_state_dict(torch.load(vae_path))
        dit, t5 = load_stage(ckpt(last), steps_through(last))
        export_checkpoint(Path(cfg.out_dir), dit=dit, vae=vae, t5=t5, tokenizer=T.DEMO_TOKENIZER)
        log(f"exported {last} (step {steps_through(last)}) to {cfg.out_dir}")

    if args.stage in ("all", *CHAIN, "export", "eval"):
        t0 = time.time()
        evaluate(Path(cfg.out_dir), log)
        stage_time("eval", t0)

    if args.stage in ("all", "lightning") and args.lightning_steps > 0:
        t0 = time.time()
        dcfg = LT.DistillConfig(
            train_steps=args.lightning_steps,
            num_samples=args.lightning_samples,
            threads=args.lightning_threads,
            seed=cfg.seed,
            held_out=lightning_held_out(cfg),
            paraphrase_share=LIGHTNING_PARAPHRASE_SHARE if steps["align"] > 0 else 0.0,
        )
        path = train_lightning_stage(Path(cfg.out_dir), Path(args.lora_out), dcfg, log)
        stage_time("lightning", t0)
        evaluate(Path(cfg.out_dir), log, **lightning_settings(path, dcfg))

    log(f"done in {time.time() - t_start:.0f}s")
    return 0


def lightning_held_out(cfg: T.TrainConfig) -> tuple[tuple[str, str, str], ...]:
    """Triples no teacher case of the LoRA shows: those of ``--hold-out-combos``, or those the
    caption alignment leaves out (the LoRA must not learn what the encoder was not taught)."""
    from training.demo.captions import HELD_OUT_COMBOS

    if cfg.extra["align"]["steps"] > 0 and cfg.extra["align"]["hold_out_combos"]:
        return tuple(sorted(HELD_OUT_COMBOS))
    return T.DEMO_WORLD.held_out


def normalised_latents(lat_path: Path) -> tuple[torch.Tensor, list[str]]:
    data = torch.load(lat_path)
    mean, std = data["stats"]
    return (data["raw"] - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1), data["captions"]


def load_stage(path: Path, expected_step: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run --stage {path.stem} first (or --stage all)")
    ck = torch.load(path)
    if ck["step"] != expected_step:
        raise SystemExit(f"{path} is from step {ck['step']}, this configuration expects {expected_step}")
    if path.stem.startswith("ft") or path.stem in ("align", "refine"):
        F.use_short_text_context()
    if path.stem in ("align", "refine"):
        use_text_context(ck["text_len"])
    dit = T.build_dit()
    dit.load_state_dict(ck["dit"])
    T.DEMO_T5["num_layers"] = ck.get("t5_layers", T.DEMO_T5["num_layers"])
    use_tokenizer(ck.get("tokenizer"))
    t5 = T.build_text_model()
    t5.load_state_dict(ck["t5"])
    return dit, t5


def train_first_stage(
    cfg: T.TrainConfig, lat_path: Path, path: Path, log: Callable[[str], None]
) -> tuple[torch.nn.Module, torch.nn.Module]:
    lat, caps = normalised_latents(lat_path)

    def checkpoint(dit: torch.nn.Module, t5: torch.nn.Module, step: int) -> None:
        torch.save({"dit": dit.state_dict(), "t5": t5.state_dict(), "step": step}, path)
        log(f"checkpoint step {step} -> {path}")

    return T.train_dit(cfg, lat, caps, log, checkpoint)


def train_attribute_stage(
    cfg: T.TrainConfig,
    stage: str,
    steps: int,
    dit: torch.nn.Module,
    t5: torch.nn.Module,
    lat_path: Path,
    log: Callable[[str], None],
) -> tuple[torch.nn.Module, torch.nn.Module]:
    lat, caps = normalised_latents(lat_path)
    if stage == "dit3":  # a fresh optimiser, a new data order and a lower learning rate
        cfg = dataclasses.replace(cfg, seed=cfg.seed + 100, dit2_lr=cfg.dit3_lr)
    return T.train_dit_phase2(dataclasses.replace(cfg, dit2_steps=steps), dit, t5, lat, caps, log)


def train_finetune_stage(
    cfg: T.TrainConfig,
    stage: str,
    steps: int,
    dit: torch.nn.Module,
    t5: torch.nn.Module,
    vae_path: Path,
    lat_path: Path,
    log: Callable[[str], None],
) -> tuple[torch.nn.Module, torch.nn.Module]:
    lr_text, lr_rest, seed = FT_SCHEDULE[stage]
    # the DiT has no text positions, so a checkpoint trained with 128 continues with 64
    F.use_short_text_context()
    lat, caps, labels, specs = finetune_data(
        str(vae_path), str(lat_path), cfg.extra["ft_clips"], T.DEMO_WORLD.held_out
    )
    mix: F.CaptionMix | None = cfg.extra["ft_captions"]
    variants = None if mix is None else F.caption_variants(specs, mix, seed)
    torch.manual_seed(cfg.seed + seed)
    return F.finetune_text_following(
        dit, t5, lat, caps, labels, steps=steps, lr_text=lr_text,
        lr_rest=lr_rest * cfg.extra["ft_rest_lr_scale"], seed=seed, batch=cfg.extra["ft_batch"],
        image_mode_prob=cfg.extra["ft_image_prob"], variants=variants,
        token_aux=cfg.extra["ft_token_aux"], log=log,
    )  # fmt: skip


def use_text_context(length: int) -> None:
    """Switch the demo configs to ``length`` text positions (the DiT has no text positions)."""
    T.DEMO_TEXT_LEN = length
    T.DEMO_DIT["text_len"] = length


def tokenizer_state(tok: ByteTokenizer | WordTokenizer | None) -> dict[str, object] | None:
    """What a stage checkpoint records of its encoder's tokenizer (None: plain bytes)."""
    if isinstance(tok, WordTokenizer):
        return {"kind": "word", "vocab": list(tok.vocab)}
    if tok is None or tok.known_words is None:
        return None
    return {"kind": "byte", "known_words": sorted(tok.known_words)}


def use_tokenizer(state: dict[str, Any] | None) -> None:
    """Switch the demo's text encoder to the tokenizer a checkpoint recorded (None: plain bytes)."""
    tok: ByteTokenizer | WordTokenizer | None = None
    if state is not None:
        tok = (
            WordTokenizer(state["vocab"]) if state["kind"] == "word" else ByteTokenizer(state["known_words"])
        )
    T.DEMO_TOKENIZER = tok
    T.DEMO_T5["vocab_size"] = tok.vocab_size if isinstance(tok, WordTokenizer) else ByteTokenizer.vocab_size


def train_align_stage(
    cfg: T.TrainConfig,
    dit: torch.nn.Module,
    t5: torch.nn.Module,
    vae_path: Path,
    lat_path: Path,
    log: Callable[[str], None],
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Caption alignment of the text encoder on the fine-tune's clips; the DiT's weights are kept and
    it reads ``student_len`` text positions from here on (the encoder may have grown layers)."""
    acfg = A.AlignConfig(**cfg.extra["align"])
    lat, _caps, _labels, specs = finetune_data(
        str(vae_path), str(lat_path), cfg.extra["ft_clips"], T.DEMO_WORLD.held_out
    )
    torch.manual_seed(cfg.seed + acfg.seed)
    t5 = A.align_text_encoder(dit, t5, lat, specs, acfg, teacher_len=F.FT_TEXT_LEN, log=log)
    use_text_context(acfg.student_len)
    use_tokenizer(tokenizer_state(A.student_tokenizer(acfg)))
    aligned = T.build_dit()
    aligned.load_state_dict(dit.state_dict())
    return aligned.eval(), t5


def train_refine_stage(
    cfg: T.TrainConfig,
    steps: int,
    dit: torch.nn.Module,
    t5: torch.nn.Module,
    vae_path: Path,
    lat_path: Path,
    log: Callable[[str], None],
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Flow matching of the DiT and the aligned encoder together on the fine-tune's clips, with the
    alignment's kind of captions: the DiT learns to read the student's context as well as it read
    the teacher's (the alignment alone leaves the canonical phrasing a little behind)."""
    acfg = A.AlignConfig(**cfg.extra["align"])
    lat, _caps, _labels, specs = finetune_data(
        str(vae_path), str(lat_path), cfg.extra["ft_clips"], T.DEMO_WORLD.held_out
    )
    lat, specs = A.held_in(lat, specs, acfg)
    labels = torch.tensor(
        [(COLOR_NAMES.index(c), SHAPES.index(s), DIRECTION_NAMES.index(d)) for _, c, s, d, _, _ in specs]
    )
    lr_text, lr_rest = cfg.extra["refine_lr"]
    seed = acfg.seed + 1
    torch.manual_seed(cfg.seed + seed)
    return F.finetune_text_following(
        dit, t5, lat, [], labels, steps=steps, lr_text=lr_text, lr_rest=lr_rest, seed=seed,
        batch=cfg.extra["ft_batch"], image_mode_prob=cfg.extra["ft_image_prob"],
        variants=A.refine_captions(specs, acfg), log=log,
    )  # fmt: skip


@functools.cache
def finetune_data(
    vae_path: str, lat_path: str, n: int, held_out: tuple[tuple[str, str, str], ...]
) -> tuple[torch.Tensor, list[str], torch.Tensor, list[F.Spec]]:
    """The fine-tune's single-object clips, encoded once per run (the stages only read them)."""
    stats = torch.load(lat_path)["stats"]
    vae = T.build_vae()
    vae.load_state_dict(torch.load(vae_path))
    vae.eval()
    return F.single_object_dataset(vae, stats, n, held_out=held_out)


def train_lightning_stage(
    weights: Path, out: Path, dcfg: LT.DistillConfig, log: Callable[[str], None]
) -> Path:
    """Distil the 4-step LoRA from the exported model in ``weights``; -> the written file."""
    from model import load_pipeline

    torch.set_num_threads(dcfg.threads)
    torch.manual_seed(dcfg.seed)
    state = LT.train_lightning(load_pipeline(str(weights)), dcfg, log)
    path = LT.save_lora(out, state, dcfg)
    log(f"wrote {path}")
    return path


def lightning_settings(path: Path, dcfg: LT.DistillConfig) -> dict[str, object]:
    """Generation settings of the LoRA's sidecar defaults, with the LoRA itself."""
    return {
        "sampler": "distill",
        "num_steps": dcfg.num_steps,
        "guidance_scale": 1.0,
        "shift": dcfg.shift,
        "loras": [(str(path), 1.0)],
    }


def evaluate(folder: Path, log: Callable[[str], None], **gen: object) -> None:
    """The quality bar of tests/model/test_demo_quality.py, on the exported folder."""
    from model import load_pipeline
    from training.demo import evaluate as E

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
    held: dict[str, list[E.ClipScore]] = {
        "paraphrase": E.evaluate_prompts(pipe, E.paraphrase_cases(24), **gen),
        "combination": E.evaluate_prompts(pipe, E.combination_cases(24), **gen),
    }
    for name, scores in held.items():
        for s in scores:
            if not s.ok:
                dx, dy = s.displacement
                log(f"  BAD {name} {s.prompt!r}: {s.color} ({dx:+.1f}, {dy:+.1f})")
    log(
        f"eval {gen or 'preset defaults'}: text {sum(s.ok for s in text)}/{len(text)}, "
        f"image {sum(r.clip.ok for r in image)}/{len(image)}, min psnr {min(r.psnr for r in image):.1f}, "
        + ", ".join(f"{name} {E.confusion(scores)}" for name, scores in held.items())
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""Training of the ``wanserve-demo`` model: a small Wan2.2 VAE, then a small TI2V DiT + tiny UMT5.

Everything is deterministic (fixed seeds, data from ``training.demo.world``) and runs on one CPU thread
(on a busy machine one thread is much faster than several that wait for each other).

Stage 1, VAE: ``Wan22VAE`` with a 2x2 pixel patch and one 3-D downsampling stage (compression
2 x 4 x 4, 16 latent channels: a 32x32x9 clip becomes 16x5x8x8), trained on 5-frame world clips with
L1 + L2 reconstruction (object pixels and the first frame weighted up) and a weak L2 term on the
latents; the per-channel latent mean/std are then measured (the normalisation the DiT sees; the
export folds them into the VAE's 1x1x1 convolutions).

Stage 2, DiT: ``WanTransformer`` (``model_type="ti2v"``, patch 1x2x2: 80 tokens per clip) and a
tiny ``UMT5EncoderModel`` over byte tokens, trained jointly with the Wan flow-matching objective:
``x_t = (1 - s) x0 + s eps``, the DiT gets ``t = 1000 s`` and predicts ``v = eps - x0``. Captions are
dropped to the empty prompt 10 % of the time (classifier-free guidance). Half of the samples are
trained in TI2V image mode: latent frame 0 is clean, its tokens get timestep 0 and carry no loss.
Phase 1 is plain flow matching; phase 2 continues from it and adds an auxiliary loss that makes the
text encoder's pooled output state the caption's colour / shape / direction / background (the
diffusion loss alone teaches a from-scratch byte-level encoder too slowly).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.presets import DEMO_WEIGHTS_DIR
from training.demo.world import WorldConfig, make_clip, make_dataset, render_background

# ------------------------------------------------------------------------------------------------
# Architecture of the demo model


DEMO_WORLD = WorldConfig(height=32, width=32, num_frames=9, fps=8)

DEMO_VAE: dict[str, Any] = dict(
    dim=16,
    dec_dim=16,
    z_dim=16,
    dim_mult=(2, 2),
    num_res_blocks=1,
    temperal_downsample=(True,),
    patch_size=2,
)

DEMO_TEXT_LEN = 128
# the text encoder's tokenizer once the caption alignment gave it one (None: plain bytes)
DEMO_TOKENIZER: Any = None

DEMO_T5: dict[str, Any] = dict(
    vocab_size=384,
    d_model=64,
    d_kv=16,
    d_ff=128,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=16,
    relative_attention_max_distance=128,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
)

DEMO_DIT: dict[str, Any] = dict(
    model_type="ti2v",
    patch_size=(1, 2, 2),
    text_len=DEMO_TEXT_LEN,
    in_dim=16,
    dim=96,
    ffn_dim=256,
    freq_dim=256,
    text_dim=64,
    out_dim=16,
    num_heads=3,
    num_layers=4,
    eps=1e-6,
    cross_attn_norm=True,
    qk_norm=True,
)


@dataclass
class TrainConfig:
    seed: int = 0
    threads: int = 1
    # VAE
    vae_steps: int = 1500
    vae_batch: int = 4
    vae_frames: int = 5
    vae_fg_weight: float = 10.0
    vae_lr: float = 2e-3
    vae_kl: float = 1e-4
    # latent dataset
    num_clips: int = 8000
    # DiT
    dit_steps: int = 2000
    dit_batch: int = 16
    dit_lr: float = 1e-3
    dit_warmup: int = 100
    caption_dropout: float = 0.1
    image_mode_prob: float = 0.5
    train_shift: float = 2.0
    ema_decay: float = 0.998
    # phase 2: continue from phase 1 with an auxiliary attribute loss on the text encoder
    dit2_steps: int = 4000
    dit2_lr: float = 5e-4
    aux_weight: float = 1.0
    # phase 3: phase 2 continued (fresh optimiser, new data order, lower learning rate)
    dit3_steps: int = 2500
    dit3_lr: float = 3e-4
    log_every: int = 50
    save_every: int = 500
    out_dir: str = str(DEMO_WEIGHTS_DIR)
    work_dir: str = "/tmp/wanserve-demo-train"
    extra: dict[str, Any] = field(default_factory=dict)


def _log(msg: str, log: Callable[[str], None] | None) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    if log is not None:
        log(line)
    else:
        print(line, flush=True)  # noqa: T201


def _lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


# ------------------------------------------------------------------------------------------------
# Stage 1: VAE


def build_vae(latents_mean: Any = None, latents_std: Any = None) -> nn.Module:
    from model.vae22 import Wan22VAE, Wan22VAEConfig

    kw = dict(DEMO_VAE)
    if latents_mean is not None:
        kw["latents_mean"] = tuple(float(v) for v in latents_mean)
        kw["latents_std"] = tuple(float(v) for v in latents_std)
    return Wan22VAE(Wan22VAEConfig(**kw))


def train_vae(cfg: TrainConfig, log: Callable[[str], None] | None = None) -> nn.Module:
    torch.manual_seed(cfg.seed)
    vae = build_vae()
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    t0 = time.time()
    world = replace(DEMO_WORLD, num_frames=cfg.vae_frames)
    frame_w = torch.ones(1, 1, world.num_frames, 1, 1)
    frame_w[:, :, 0] = 3.0  # the first frame is what image mode reproduces: weight it up
    for step in range(cfg.vae_steps):
        base = 1_000_000 + step * cfg.vae_batch
        clips = [make_clip(base + i, world) for i in range(cfg.vae_batch)]
        x = torch.from_numpy(np.stack([c.video for c in clips]))
        # Objects cover a few % of the pixels: weight them up (else the VAE learns backgrounds first
        # and objects only much later).
        bgs = [render_background(c.background, world.height, world.width) for c in clips]
        bg = torch.from_numpy(np.stack([b.transpose(2, 0, 1) * 2 - 1 for b in bgs]))[:, :, None]
        weight = frame_w * (1 + cfg.vae_fg_weight * ((x - bg).abs().amax(dim=1, keepdim=True) > 0.05).float())
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.vae_steps, cfg.vae_lr, 50)
        # Deterministic latents (mu) with a little noise, so the decoder tolerates the DiT's small
        # errors; a weak L2 term keeps the latent scale bounded (it is normalised afterwards).
        mu, _ = vae.encode_distribution(x)
        noise = torch.randn(mu.shape, generator=gen)
        z = mu + 0.05 * mu.detach().std() * noise
        rec = vae.decode_latents(z)
        err = rec - x
        rec_loss = ((err.abs() + err.pow(2)) * weight).mean()
        kl = mu.pow(2).mean()
        loss = rec_loss + cfg.vae_kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.vae_steps - 1:
            with torch.no_grad():
                mse0 = err[:, :, 0].pow(2).mean().item()
                mse = err.pow(2).mean().item()
            _log(
                f"vae step {step} loss {loss.item():.4f} kl {kl.item():.3f} "
                f"psnr {10 * math.log10(4 / max(mse, 1e-12)):.2f} "
                f"psnr0 {10 * math.log10(4 / max(mse0, 1e-12)):.2f} "
                f"({time.time() - t0:.0f}s)",
                log,
            )
    return vae


@torch.no_grad()
def latent_stats(vae: nn.Module, videos: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw latent means of all videos [N, z, f, h, w] and per-channel (mean, std)."""
    mus = []
    for i in range(0, len(videos), batch):
        mu, _ = vae.encode_distribution(videos[i : i + batch])
        mus.append(mu)
    raw = torch.cat(mus)
    mean = raw.mean(dim=(0, 2, 3, 4))
    std = raw.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
    return raw, torch.stack([mean, std])


# ------------------------------------------------------------------------------------------------
# Stage 2: DiT + text encoder


def build_text_model(seed: int = 0) -> nn.Module:
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    return UMT5EncoderModel(UMT5Config(**DEMO_T5))


def build_dit(seed: int = 0) -> nn.Module:
    from model.transformer import TransformerConfig, WanTransformer

    torch.manual_seed(seed)
    dit = WanTransformer(TransformerConfig.from_json_dict(DEMO_DIT))
    dit.init_weights(zero_head=True)
    return dit


def tokenize(captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from model.text_encoder import clean_prompt
    from model.tokenizer import ByteTokenizer

    tok = (DEMO_TOKENIZER or ByteTokenizer())(
        [clean_prompt(c) for c in captions], padding="max_length", truncation=True, max_length=DEMO_TEXT_LEN
    )
    return tok["input_ids"], tok["attention_mask"]


def encode_text(t5: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero-padded context [B, text_len, D] exactly as the pipeline builds it (only the true length
    of each caption is run; padding rows are zeros)."""
    n = int(mask.sum(dim=1).max())
    hidden = t5(input_ids=ids[:, :n], attention_mask=mask[:, :n]).last_hidden_state
    hidden = hidden * mask[:, :n, None].to(hidden.dtype)
    return F.pad(hidden, (0, 0, 0, ids.shape[1] - n))


def sample_sigmas(n: int, shift: float, gen: torch.Generator) -> torch.Tensor:
    """Training noise levels: half uniform, half shifted-uniform (more weight on high noise)."""
    u = torch.rand(n, generator=gen)
    shifted = shift * u / (1 + (shift - 1) * u)
    pick = torch.rand(n, generator=gen) < 0.5
    return torch.where(pick, shifted, u).clamp(1e-3, 0.999)


def noised(
    x0: torch.Tensor, image_mode: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flow-matching inputs for clean latents ``x0`` [B, z, f, h, w]: -> (x_t, per-token timesteps
    [B, L], noise, ``noisy`` [B, 1, f, 1, 1] (0 on a pinned first frame), sigma [B, 1, 1, 1, 1]).
    Samples in ``image_mode`` keep latent frame 0 clean, at timestep 0 (TI2V image mode)."""
    b, _, f, h, w = x0.shape
    sigma = sample_sigmas(b, 2.0, gen)
    noise = torch.randn(x0.shape, generator=gen)
    s = sigma.view(b, 1, 1, 1, 1)
    noisy = torch.ones(b, 1, f, 1, 1)
    noisy[image_mode, :, 0] = 0
    xt = noisy * ((1 - s) * x0 + s * noise) + (1 - noisy) * x0
    tokens_per_frame = (h // 2) * (w // 2)
    t = (sigma * 1000).view(b, 1).repeat(1, f * tokens_per_frame)
    t[image_mode, :tokens_per_frame] = 0
    return xt, t, noise, noisy, s


def flow_matching_loss(
    dit: nn.Module,
    t5: nn.Module,
    x0: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
    image_mode: torch.Tensor,
    gen: torch.Generator,
    shift: float,
) -> torch.Tensor:
    """Wan flow matching with TI2V image mode for the samples flagged in ``image_mode`` [B] bool."""
    b, _, f, h, w = x0.shape
    sigma = sample_sigmas(b, shift, gen)  # [B]
    noise = torch.randn(x0.shape, generator=gen)
    s = sigma.view(b, 1, 1, 1, 1)
    xt = (1 - s) * x0 + s * noise
    # image mode: latent frame 0 is the clean image latent, timestep 0 for its tokens
    frame_mask = torch.ones(b, 1, f, 1, 1)
    frame_mask[image_mode, :, 0] = 0.0
    xt = frame_mask * xt + (1 - frame_mask) * x0
    ph, pw = DEMO_DIT["patch_size"][1:]
    tokens_per_frame = (h // ph) * (w // pw)
    t_tok = (sigma * 1000).view(b, 1).repeat(1, f * tokens_per_frame)
    t_tok[image_mode, :tokens_per_frame] = 0.0
    context = encode_text(t5, ids, mask)
    v = dit(xt, t_tok, context)
    target = noise - x0
    se = (v - target).pow(2) * frame_mask
    denom = frame_mask.expand_as(se).sum()
    return se.sum() / denom


class EMA:
    def __init__(self, modules: list[nn.Module], decay: float) -> None:
        self.decay = decay
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, decay: float | None = None) -> None:
        d = self.decay if decay is None else decay
        for s, p in zip(self.shadow, self.params, strict=True):
            s.lerp_(p.detach(), 1 - d)

    @torch.no_grad()
    def swap(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def train_dit(
    cfg: TrainConfig,
    latents: torch.Tensor,
    captions: list[str],
    log: Callable[[str], None] | None = None,
    checkpoint: Callable[[nn.Module, nn.Module, int], None] | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Train DiT + text encoder on normalised latents [N, z, f, h, w]. Returns EMA weights."""
    dit = build_dit(cfg.seed + 10)
    t5 = build_text_model(cfg.seed + 11)
    dit.train()
    t5.train()
    params = list(dit.parameters()) + list(t5.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.dit_lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema = EMA([dit, t5], cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    ids_all, mask_all = tokenize(captions)
    empty_ids, empty_mask = tokenize([""])
    n = len(latents)
    t0 = time.time()
    running = 0.0
    for step in range(cfg.dit_steps):
        idx = torch.randint(0, n, (cfg.dit_batch,), generator=gen)
        x0 = latents[idx]
        ids, mask = ids_all[idx].clone(), mask_all[idx].clone()
        drop = torch.rand(cfg.dit_batch, generator=gen) < cfg.caption_dropout
        ids[drop] = empty_ids[0]
        mask[drop] = empty_mask[0]
        image_mode = torch.rand(cfg.dit_batch, generator=gen) < cfg.image_mode_prob
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.dit_steps, cfg.dit_lr, cfg.dit_warmup)
        loss = flow_matching_loss(dit, t5, x0, ids, mask, image_mode, gen, cfg.train_shift)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        # EMA warms up: plain averaging early on, then the configured decay
        ema.update(min(cfg.ema_decay, (1 + step) / (10 + step)))
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        if step % cfg.log_every == 0 or step == cfg.dit_steps - 1:
            _log(f"dit step {step} loss {loss.item():.4f} avg {running:.4f} ({time.time() - t0:.0f}s)", log)
        if checkpoint is not None and step > 0 and (step % cfg.save_every == 0 or step == cfg.dit_steps - 1):
            ema.swap()
            checkpoint(dit, t5, step)
            ema.swap()
    ema.swap()
    dit.eval()
    t5.eval()
    return dit, t5


# ------------------------------------------------------------------------------------------------
# Phase 2: attribute supervision for the text encoder

AUX_SIZES = (8, 3, 8, 8)  # colour, shape, direction, background of the caption's first object


def caption_labels(n: int, captions: list[str]) -> torch.Tensor:
    """[n, 4] class labels of the first object named in each caption (-100 = not stated)."""
    from training.demo.world import BACKGROUNDS, COLOR_NAMES, DIRECTION_NAMES, GRADIENTS, SHAPES

    bgs = list(BACKGROUNDS) + [g[0] for g in GRADIENTS]
    out = torch.full((n, 4), -100, dtype=torch.long)
    for i in range(n):
        clip_objs, background, caption = _scene(i)
        assert caption == captions[i]
        first = clip_objs[0]
        words = caption.split()
        if len(words) > 1 and words[1] == first.color:
            out[i, 0] = COLOR_NAMES.index(first.color)
        out[i, 1] = SHAPES.index(first.shape)
        out[i, 2] = DIRECTION_NAMES.index(first.direction)
        if background in caption:
            out[i, 3] = bgs.index(background)
    return out


def _scene(seed: int) -> tuple[list[Any], str, str]:
    from training.demo.world import sample_scene

    rng = np.random.default_rng(np.random.SeedSequence([20260, int(seed)]))
    return sample_scene(rng, DEMO_WORLD)


def pooled_text(t5: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(context for the DiT, masked mean of the encoder output)."""
    ctx = encode_text(t5, ids, mask)
    m = mask[:, : ctx.shape[1]].to(ctx.dtype)
    pooled = (ctx * m[..., None]).sum(1) / m.sum(1, keepdim=True)
    return ctx, pooled


def train_dit_phase2(
    cfg: TrainConfig,
    dit: nn.Module,
    t5: nn.Module,
    latents: torch.Tensor,
    captions: list[str],
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Continue training with an auxiliary loss that makes the text encoder's output state the
    colour / shape / direction / background named in the caption (linear heads on its masked mean;
    the heads are training-only and not exported). Flow matching as in phase 1."""
    torch.manual_seed(cfg.seed + 20)
    heads = nn.Linear(int(DEMO_T5["d_model"]), sum(AUX_SIZES))
    dit.train()
    t5.train()
    params = list(dit.parameters()) + list(t5.parameters())
    groups = [{"params": params}, {"params": heads.parameters()}]
    opt = torch.optim.AdamW(groups, lr=cfg.dit2_lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema = EMA([dit, t5], cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    ids_all, mask_all = tokenize(captions)
    labels_all = caption_labels(len(captions), captions)
    empty_ids, empty_mask = tokenize([""])
    n = len(latents)
    t0 = time.time()
    run_fm = run_aux = 0.0
    for step in range(cfg.dit2_steps):
        idx = torch.randint(0, n, (cfg.dit_batch,), generator=gen)
        x0 = latents[idx]
        ids, mask = ids_all[idx].clone(), mask_all[idx].clone()
        labels = labels_all[idx].clone()
        drop = torch.rand(cfg.dit_batch, generator=gen) < cfg.caption_dropout
        ids[drop] = empty_ids[0]
        mask[drop] = empty_mask[0]
        labels[drop] = -100
        image_mode = torch.rand(cfg.dit_batch, generator=gen) < cfg.image_mode_prob
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.dit2_steps, cfg.dit2_lr, 50)

        # flow matching (as in phase 1), with the context computed once and shared with the aux loss
        b, _, f, h, w = x0.shape
        sigma = sample_sigmas(b, cfg.train_shift, gen)
        noise = torch.randn(x0.shape, generator=gen)
        sv = sigma.view(b, 1, 1, 1, 1)
        frame_mask = torch.ones(b, 1, f, 1, 1)
        frame_mask[image_mode, :, 0] = 0.0
        xt = frame_mask * ((1 - sv) * x0 + sv * noise) + (1 - frame_mask) * x0
        ph, pw = DEMO_DIT["patch_size"][1:]
        tpf = (h // ph) * (w // pw)
        t_tok = (sigma * 1000).view(b, 1).repeat(1, f * tpf)
        t_tok[image_mode, :tpf] = 0.0
        ctx, pooled = pooled_text(t5, ids, mask)
        v = dit(xt, t_tok, ctx)
        se = (v - (noise - x0)).pow(2) * frame_mask
        fm = se.sum() / frame_mask.expand_as(se).sum()
        logits = heads(pooled).split(AUX_SIZES, dim=1)
        aux = sum(
            (
                F.cross_entropy(lg, labels[:, k], ignore_index=-100)
                for k, lg in enumerate(logits)
                if bool((labels[:, k] >= 0).any())
            ),
            torch.zeros(()),
        )
        loss = fm + cfg.aux_weight * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(min(cfg.ema_decay, (1 + step) / (10 + step)))
        run_fm = fm.item() if step == 0 else 0.98 * run_fm + 0.02 * fm.item()
        aux_v = float(aux.detach())
        run_aux = aux_v if step == 0 else 0.98 * run_aux + 0.02 * aux_v
        if step % cfg.log_every == 0 or step == cfg.dit2_steps - 1:
            _log(f"dit2 step {step} fm {run_fm:.4f} aux {run_aux:.4f} ({time.time() - t0:.0f}s)", log)
    ema.swap()
    dit.eval()
    t5.eval()
    return dit, t5


# ------------------------------------------------------------------------------------------------
# Data helpers


def build_latent_dataset(
    vae: nn.Module, cfg: TrainConfig, log: Callable[[str], None] | None = None
) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Encode ``num_clips`` world clips: raw latent means [N, z, f, h, w], captions, (mean, std)."""
    t0 = time.time()
    vids, caps = make_dataset(cfg.num_clips, DEMO_WORLD)
    _log(f"generated {len(caps)} clips ({time.time() - t0:.0f}s)", log)
    raw, stats = latent_stats(vae, torch.from_numpy(vids))
    _log(f"encoded latents {tuple(raw.shape)} ({time.time() - t0:.0f}s)", log)
    return raw, caps, stats


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)

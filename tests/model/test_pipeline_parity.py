"""Whole sampling loops: wanserve vs diffusers 0.42.1 (fp32, CPU, tiny random weights).

Each case builds a tiny diffusers pipeline, saves it with `save_pretrained`, loads that folder with
our `load_pipeline` (diffusers layout, key mapping included) and runs both with the same seed.
diffusers' UniPC is given the official Wan sigma grid (`linspace(1 - 1/T, 0, n + 1)[:-1]`, then its
own flow shift), see shared/reference/diffusers-reference.md §6.3. The guidance tuple order maps
as official (low, high) -> diffusers guidance_scale=high, guidance_scale_2=low.

Also here (not parity-marked): pipeline behaviour on the tiny presets — batched CFG equals two
passes, callbacks, input validation, seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import load_pipeline

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
pytest.importorskip("ftfy")

PROMPT = "a red fox runs through fresh snow &amp; pine trees"
NEGATIVE = "blurry, static"
TOL = 1e-4


# --------------------------------------------------------------------------------------------------
# building tiny diffusers pipelines
# --------------------------------------------------------------------------------------------------
def _official_grid_scheduler(flow_shift: float):
    """diffusers UniPC whose `set_timesteps` uses the official Wan grid when no sigmas are given."""
    from diffusers import UniPCMultistepScheduler

    sched = UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=flow_shift,
    )
    stock = sched.set_timesteps

    def set_timesteps(num_inference_steps=None, device=None, sigmas=None, mu=None):
        if sigmas is None:
            t = sched.config.num_train_timesteps
            sigmas = np.linspace(1.0 - 1.0 / t, 0.0, num_inference_steps + 1)[:-1]
        return stock(num_inference_steps=num_inference_steps, device=device, sigmas=sigmas, mu=mu)

    sched.set_timesteps = set_timesteps
    return sched


def _text_side(seed: int):
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    cfg = UMT5Config(
        vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, dropout_rate=0.0, feed_forward_proj="gated-gelu",
    )  # fmt: skip
    return ByT5Tokenizer(), UMT5EncoderModel(cfg).eval()


def _dit(in_ch: int, out_ch: int, seed: int):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    m = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=in_ch,
        out_channels=out_ch, text_dim=32, freq_dim=256, ffn_dim=64, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=1024,
    )  # fmt: skip
    with torch.no_grad():  # perturb everything (upstream-style inits leave zeros)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


def _vae(wan22: bool, seed: int):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    if wan22:
        g = torch.Generator().manual_seed(seed)
        mean = (torch.randn(48, generator=g) * 0.1).tolist()
        std = (torch.rand(48, generator=g) + 0.5).tolist()
        m = AutoencoderKLWan(
            base_dim=4, decoder_base_dim=6, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
            temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
            patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
            latents_mean=mean, latents_std=std,
        )  # fmt: skip
    else:
        m = AutoencoderKLWan(
            base_dim=4,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
    return m.eval()


def _build(kind: str):
    from diffusers import WanImageToVideoPipeline, WanPipeline

    tok, te = _text_side(0)
    if kind == "t2v-a14b":
        return WanPipeline(
            tokenizer=tok, text_encoder=te, vae=_vae(False, 1), scheduler=_official_grid_scheduler(12.0),
            transformer=_dit(16, 16, 2), transformer_2=_dit(16, 16, 3), boundary_ratio=0.875,
        )  # fmt: skip
    if kind == "i2v-a14b":
        return WanImageToVideoPipeline(
            tokenizer=tok, text_encoder=te, vae=_vae(False, 1), scheduler=_official_grid_scheduler(5.0),
            image_processor=None, image_encoder=None,
            transformer=_dit(36, 16, 4), transformer_2=_dit(36, 16, 5),
            boundary_ratio=0.9,
        )  # fmt: skip
    if kind == "ti2v-t2v":
        return WanPipeline(
            tokenizer=tok, text_encoder=te, vae=_vae(True, 6), scheduler=_official_grid_scheduler(5.0),
            transformer=_dit(48, 48, 7), expand_timesteps=True,
        )  # fmt: skip
    if kind == "ti2v-i2v":
        return WanImageToVideoPipeline(
            tokenizer=tok, text_encoder=te, vae=_vae(True, 6), scheduler=_official_grid_scheduler(5.0),
            image_processor=None, image_encoder=None, transformer=_dit(48, 48, 7), expand_timesteps=True,
        )  # fmt: skip
    raise AssertionError(kind)


def _run_both(
    tmp_path, kind, *, height, width, num_frames, steps, guidance, shift, image=None, sampler_seed=7
):
    ref_pipe = _build(kind)
    folder = tmp_path / kind
    ref_pipe.save_pretrained(str(folder))
    ours = load_pipeline(str(folder))
    assert ours.dtype == torch.float32

    low, high = guidance
    kwargs = dict(
        prompt=PROMPT, negative_prompt=NEGATIVE, height=height, width=width, num_frames=num_frames,
        num_inference_steps=steps, guidance_scale=high, generator=torch.Generator().manual_seed(sampler_seed),
        output_type="pt", max_sequence_length=512,
    )  # fmt: skip
    if ref_pipe.config.boundary_ratio is not None:
        kwargs["guidance_scale_2"] = low
    if image is not None:
        kwargs["image"] = image[None]
    seen_ref: list[int] = []

    def on_step(pipe, i, t, cb_kwargs):
        seen_ref.append(int(t))
        return cb_kwargs

    with torch.no_grad():
        ref = ref_pipe(**kwargs, callback_on_step_end=on_step).frames[0]  # [F, 3, H, W] in [0, 1]
    ref = ref.permute(1, 0, 2, 3) * 2.0 - 1.0  # [3, F, H, W] in [-1, 1]

    seen: list[float] = []
    got = ours.generate(
        PROMPT, negative_prompt=NEGATIVE, image=image, height=height, width=width, num_frames=num_frames,
        num_steps=steps, guidance_scale=(low, high) if ours.transformer_2 is not None else high, shift=shift,
        seed=sampler_seed, callback=lambda s, n, t: seen.append(t),
    )  # fmt: skip
    assert [int(t) for t in seen] == seen_ref
    assert got.shape == ref.shape
    return got, ref, seen


@pytest.mark.parity
def test_t2v_a14b_matches_diffusers(tmp_path):
    got, ref, seen = _run_both(
        tmp_path, "t2v-a14b", height=32, width=48, num_frames=9, steps=10, guidance=(3.0, 4.0), shift=12.0
    )
    assert any(t >= 875 for t in seen) and any(t < 875 for t in seen)  # both experts used
    assert (got - ref).abs().max().item() < TOL


@pytest.mark.parity
def test_i2v_a14b_matches_diffusers(tmp_path):
    image = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(11)) * 2 - 1
    got, ref, seen = _run_both(
        tmp_path, "i2v-a14b", height=32, width=48, num_frames=9, steps=10, guidance=(3.5, 2.5), shift=5.0,
        image=image,
    )  # fmt: skip
    assert any(t >= 900 for t in seen) and any(t < 900 for t in seen)
    assert (got - ref).abs().max().item() < TOL


@pytest.mark.parity
def test_i2v_a14b_resized_sharp_image_is_not_clamped(tmp_path):
    """A sharp-edged 160x96 image stretched to 80x48: the official I2V path hands the bicubic result,
    overshoot included, to the VAE. The reference gets the image resized that way (diffusers itself
    would resize with nearest), we get the full-size image; clamping after the resize misses by ~1e-1."""
    ys, xs = torch.meshgrid(torch.arange(96), torch.arange(160), indexing="ij")
    board = (((ys // 6) + (xs // 10)) % 2).float() * 2 - 1  # [96, 160] hard +-1 squares
    image = torch.stack([board, -board, board * 0.5])  # [3, 96, 160]
    official = torch.nn.functional.interpolate(image[None], size=(48, 80), mode="bicubic")[0]
    assert official.abs().max() > 1.05  # the case only tests something if the resize overshoots
    ref_pipe = _build("i2v-a14b")
    folder = tmp_path / "i2v-sharp"
    ref_pipe.save_pretrained(str(folder))
    ours = load_pipeline(str(folder))
    common = dict(height=48, width=80, num_frames=5)
    with torch.no_grad():
        ref = ref_pipe(
            prompt=PROMPT, negative_prompt=NEGATIVE, image=official[None], num_inference_steps=4,
            guidance_scale=2.5, guidance_scale_2=3.5, generator=torch.Generator().manual_seed(7),
            output_type="pt", max_sequence_length=512, **common,
        ).frames[0]  # fmt: skip
    ref = ref.permute(1, 0, 2, 3) * 2.0 - 1.0  # [3, F, H, W]
    got = ours.generate(
        PROMPT, negative_prompt=NEGATIVE, image=image, num_steps=4, guidance_scale=(3.5, 2.5), shift=5.0,
        seed=7, **common,
    )  # fmt: skip
    assert (got - ref).abs().max().item() < TOL


@pytest.mark.parity
def test_ti2v_text_mode_matches_diffusers(tmp_path):
    got, ref, _ = _run_both(
        tmp_path, "ti2v-t2v", height=64, width=64, num_frames=9, steps=8, guidance=(5.0, 5.0), shift=5.0
    )
    assert (got - ref).abs().max().item() < TOL


@pytest.mark.parity
def test_ti2v_image_mode_matches_diffusers(tmp_path):
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(12)) * 2 - 1
    got, ref, _ = _run_both(
        tmp_path, "ti2v-i2v", height=64, width=64, num_frames=9, steps=8, guidance=(5.0, 5.0), shift=5.0,
        image=image,
    )  # fmt: skip
    assert (got - ref).abs().max().item() < TOL


# --------------------------------------------------------------------------------------------------
# pipeline behaviour on tiny presets
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_t2v():
    return load_pipeline("tiny-t2v-a14b")


@pytest.fixture(scope="module")
def tiny_ti2v():
    return load_pipeline("tiny-ti2v")


KW = dict(height=32, width=32, num_frames=5, num_steps=3, shift=5.0, seed=3)


def test_cfg_batch_equals_two_passes(tiny_t2v, tiny_ti2v):
    img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for pipe, extra in ((tiny_t2v, {}), (tiny_ti2v, {"image": img})):
        pipe.cfg_batch = True
        a = pipe.generate("a cat", guidance_scale=4.0, **KW, **extra)
        pipe.cfg_batch = False
        b = pipe.generate("a cat", guidance_scale=4.0, **KW, **extra)
        pipe.cfg_batch = True
        assert (a - b).abs().max().item() < 1e-5


def test_output_contract_and_determinism(tiny_ti2v):
    a = tiny_ti2v.generate("a cat", guidance_scale=5.0, **KW)
    b = tiny_ti2v.generate("a cat", guidance_scale=5.0, **KW)
    c = tiny_ti2v.generate("a cat", guidance_scale=5.0, **{**KW, "seed": 4})
    assert a.shape == (3, 5, 32, 32) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_negative_prompt_none_means_official_default(tiny_ti2v):
    default = tiny_ti2v.generate("a cat", guidance_scale=5.0, **KW)
    explicit = tiny_ti2v.generate(
        "a cat", guidance_scale=5.0, negative_prompt=tiny_ti2v.preset.negative_prompt, **KW
    )
    other = tiny_ti2v.generate("a cat", guidance_scale=5.0, negative_prompt="", **KW)
    assert torch.equal(default, explicit) and not torch.equal(default, other)


def test_ti2v_image_pins_first_frame(tiny_ti2v):
    img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    a = tiny_ti2v.generate("a cat", image=img, guidance_scale=5.0, **KW)
    b = tiny_ti2v.generate("a cat", image=img, guidance_scale=5.0, **{**KW, "seed": 9})
    # the first decoded frame depends only on the pinned image latent, not on the noise
    assert torch.allclose(a[:, 0], b[:, 0], atol=1e-6) and not torch.allclose(a[:, 1:], b[:, 1:])


def test_callback_steps_and_exception_stops_at_once(tiny_t2v):
    seen = []
    tiny_t2v.generate("x", guidance_scale=(3.0, 4.0), callback=lambda s, n, t: seen.append((s, n, t)), **KW)
    assert [s for s, _, _ in seen] == [1, 2, 3] and all(n == 3 for _, n, _ in seen)
    assert all(isinstance(t, float) for _, _, t in seen)

    class Stop(Exception):
        pass

    calls = []

    def cancel(step, total, t):
        calls.append(step)
        raise Stop

    with pytest.raises(Stop):
        tiny_t2v.generate("x", guidance_scale=3.0, callback=cancel, **KW)
    assert calls == [1]


def test_expert_routing_uses_guidance_order(tiny_t2v):
    # With shift 12 every step of a 3-step run is >= 875 except the last; (low, high) must differ in effect.
    a = tiny_t2v.generate("x", guidance_scale=(1.0, 6.0), **{**KW, "shift": 12.0})
    b = tiny_t2v.generate("x", guidance_scale=(6.0, 1.0), **{**KW, "shift": 12.0})
    c = tiny_t2v.generate("x", guidance_scale=(1.0, 6.0), **{**KW, "shift": 12.0})
    assert torch.equal(a, c) and not torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"height": 30}, "height"),
        ({"width": 40}, "width"),
        ({"num_frames": 6}, "num_frames"),
        ({"num_frames": 1000}, "num_frames"),
        ({"num_steps": 0}, "num_steps"),
        ({"sampler": "ddim"}, "sampler"),
        ({"shift": -1.0}, "shift"),
        ({"seed": -1}, "seed"),
        ({"guidance_scale": (1.0, 2.0, 3.0)}, "guidance_scale"),
        ({"image": torch.zeros(3, 32, 32)}, "image"),
    ],
)
def test_check_inputs_names_the_argument(tiny_t2v, kwargs, needle):
    args = {**KW, "guidance_scale": 3.0, **kwargs}
    with pytest.raises(ValueError, match=needle):
        tiny_t2v.generate("x", **args)


def test_i2v_requires_image():
    pipe = load_pipeline("tiny-i2v-a14b")
    with pytest.raises(ValueError, match="image"):
        pipe.generate("x", guidance_scale=3.0, **KW)
    from PIL import Image

    img = Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8))
    out = pipe.generate("x", image=img, guidance_scale=(3.5, 3.5), **KW)  # resized to 32x32
    assert out.shape == (3, 5, 32, 32)


def test_samplers_run(tiny_ti2v):
    outs = {
        s: tiny_ti2v.generate("x", guidance_scale=5.0, sampler=s, **KW) for s in ("unipc", "dpm++", "euler")
    }
    assert all(torch.isfinite(v).all() for v in outs.values())
    assert not torch.equal(outs["unipc"], outs["euler"])


def test_offload_path_gives_the_same_video(tiny_t2v):
    # On CPU the moves are no-ops, but the offload bookkeeping (one expert active, T5 released,
    # two CFG passes instead of a batch) must not change the result.
    ref = tiny_t2v.generate("x", guidance_scale=(3.0, 4.0), **{**KW, "shift": 12.0})
    tiny_t2v.offload, tiny_t2v.cfg_batch = True, False
    try:
        got = tiny_t2v.generate("x", guidance_scale=(3.0, 4.0), **{**KW, "shift": 12.0})
    finally:
        tiny_t2v.offload, tiny_t2v.cfg_batch = False, True
    assert (got - ref).abs().max().item() < 1e-5


def test_text_embeddings_are_cached_without_changing_results(tiny_ti2v):
    tiny_ti2v._text_cache.clear()
    a = tiny_ti2v.generate("a cat", guidance_scale=5.0, **KW)
    assert "a cat" in tiny_ti2v._text_cache and tiny_ti2v.preset.negative_prompt in tiny_ti2v._text_cache
    b = tiny_ti2v.generate("a cat", guidance_scale=5.0, **KW)
    assert torch.equal(a, b)


def test_distill_sampler_runs_without_guidance(tiny_t2v):
    """distill: one conditional forward per step (batch 1); guidance scales are ignored."""
    calls: list[tuple[int, ...]] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: calls.append(tuple(args[0].shape)))
        for m in tiny_t2v.experts
    ]
    try:
        kw = {**KW, "num_steps": 4}
        a = tiny_t2v.generate("a cat", sampler="distill", guidance_scale=(3.0, 4.0), **kw)
        n = len(calls)
        b = tiny_t2v.generate("a cat", sampler="distill", guidance_scale=1.0, **kw)
    finally:
        for h in hooks:
            h.remove()
    assert n == 4 and all(shape[0] == 1 for shape in calls)
    assert torch.equal(a, b)


@pytest.mark.parametrize(("model", "size"), [("tiny-ti2v", (40, 64)), ("tiny-i2v-a14b", (24, 40))])
def test_pil_and_tensor_images_take_one_preparation_path(model, size):
    """One geometry for both input kinds. TI2V: an image already at its cover size is only cropped,
    so a PIL image and the same pixels as a tensor give the same conditioning image; I2V-A14B: both
    are stretched with the same bicubic resize."""
    from PIL import Image

    pipe = load_pipeline(model)
    h, w = size
    arr = (np.random.default_rng(5).random((h, w, 3)) * 255).astype(np.uint8)
    pil = Image.fromarray(arr)
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float().div(255.0).sub(0.5).div(0.5)
    a, b = pipe._prepare_image(pil, 32, 64), pipe._prepare_image(tensor, 32, 64)
    assert a.shape == b.shape == (3, 32, 64)
    assert torch.equal(a, b)

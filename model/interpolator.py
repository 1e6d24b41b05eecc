"""A learned video frame interpolator: the IFNet of RIFE, in the layout of Practical-RIFE v4.6.

Why this layout: v4.6 is the checkpoint most RIFE deployments ship (a 4-block IFNet of about
10 MB, arbitrary timestep, no feature encoder), so operators can point
``WANSERVE_INTERPOLATOR_WEIGHTS`` at the ``train_log/flownet.pkl`` they already have.

The network, as published (facts, not code, were taken from the RIFE papers and checkpoints):

* Four ``IFBlock``s, coarse to fine at scales 8, 4, 2, 1 with widths 192, 128, 96, 64. Each block
  sees the two frames (backward-warped by the current flow from the second block on), a channel
  holding the timestep ``t``, the current blend-mask logit and the current flow, all resized to
  its scale. It predicts a residual bidirectional flow (4 channels: ``F_t->0`` as (dx, dy), then
  ``F_t->1``) and a residual mask logit (1 channel). Inside a block: two stride-2 3x3 convolutions
  (``conv0``), eight residual 3x3 convolutions with a learned per-channel gain ``beta``
  (``convblock``), then a stride-2 transposed convolution to 24 channels and a pixel shuffle by 2
  (``lastconv``; 6 channels, of which the first 5 are used).
* Frames are RGB in [0, 1]; flow is in pixels of the frame; warping is backward (``grid_sample``,
  bilinear, border padding, corner-aligned grid).
* The output is ``m * warp(I0, F_t->0) + (1 - m) * warp(I1, F_t->1)`` with ``m = sigmoid(mask)``.

Parameter names equal the checkpoint's keys once its ``module.`` prefix (from DataParallel
training) is stripped: ``block0.conv0.0.0.weight``, ``block0.convblock.3.conv.weight``,
``block0.convblock.3.beta``, ``block0.lastconv.0.weight``, ... Sides need to be multiples of 32
(block0 works at 1/32 of the frame inside); `RifeInterpolator.between` pads and crops.

Checked once by hand (2026-12-04) against a public v4.6 implementation (vs-rife's
``IFNet_HDv3_v4_6``) loaded with the same random state dict, strict: outputs bit-identical at
64x96 and 128x128 for t in {0.25, 0.5, 0.8}, also with flows scaled up 30x. Not a committed test:
no reference is installable without VapourSynth, and its code stays out of this repository.
The arithmetic order in `ResConv` and `backward_warp` follows the published formulas exactly
(``conv(x) * beta + x``, flow divided by half the side): a fused multiply-add there already moves
outputs by 1e-3 once large flows amplify rounding through the bilinear sampling.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RIFE_VERSION = "4.6"
WIDTHS = (192, 128, 96, 64)
SCALES = (8, 4, 2, 1)
SIDE_MULTIPLE = 32


def _conv_act(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution + LeakyReLU(0.2), as a Sequential so its weight is ``<name>.0.weight``."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class ResConv(nn.Module):
    """``act(conv(x) * beta + x)``; beta starts at one so a fresh block is a plain residual."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.conv(x) * self.beta + x)
        return out


class IFBlock(nn.Module):
    def __init__(self, in_channels: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv_act(in_channels, c // 2, 2), _conv_act(c // 2, c, 2))
        self.convblock = nn.Sequential(*(ResConv(c) for _ in range(8)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * 6, 4, 2, 1), nn.PixelShuffle(2))

    def forward(
        self, x: torch.Tensor, flow: torch.Tensor | None, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (flow residual [B, 4, H, W] in pixels, mask-logit residual [B, 1, H, W])."""
        if scale != 1:
            x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            if scale != 1:  # pixel displacements shrink with the image
                flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
                flow = flow / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))  # back at 1/scale of the frame
        if scale != 1:
            out = F.interpolate(out, scale_factor=float(scale), mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5]


def backward_warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` [B, C, H, W] at ``p + flow(p)`` (flow [B, 2, H, W] as (dx, dy) in pixels)."""
    _, _, h, w = img.shape
    ys = torch.linspace(-1.0, 1.0, h, device=img.device, dtype=torch.float32)
    xs = torch.linspace(-1.0, 1.0, w, device=img.device, dtype=torch.float32)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H, W, 2] as (x, y)
    # corner-aligned normalisation: pixel 0 -> -1, pixel W-1 -> +1 (a division: see the module doc)
    half = torch.tensor([max(w - 1, 1) / 2.0, max(h - 1, 1) / 2.0], device=img.device)
    grid = base + flow.float().permute(0, 2, 3, 1) / half
    out = F.grid_sample(img.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(img.dtype)


class IFNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # block0: I0, I1, t (7 channels); later blocks add the mask logit and the flow (8 + 4)
        self.block0 = IFBlock(7, WIDTHS[0])
        self.block1 = IFBlock(8 + 4, WIDTHS[1])
        self.block2 = IFBlock(8 + 4, WIDTHS[2])
        self.block3 = IFBlock(8 + 4, WIDTHS[3])

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """img0, img1: [B, 3, H, W] in [0, 1] (sides multiples of 32); t: [B] in (0, 1) -> the frame at t."""
        tmap = t.to(img0.dtype).view(-1, 1, 1, 1).expand(img0.shape[0], 1, *img0.shape[2:])
        flow, mask = self.block0(torch.cat((img0, img1, tmap), 1), None, SCALES[0])
        w0, w1 = backward_warp(img0, flow[:, :2]), backward_warp(img1, flow[:, 2:4])
        for block, scale in zip((self.block1, self.block2, self.block3), SCALES[1:], strict=True):
            d_flow, d_mask = block(torch.cat((w0, w1, tmap, mask), 1), flow, scale)
            flow, mask = flow + d_flow, mask + d_mask
            w0, w1 = backward_warp(img0, flow[:, :2]), backward_warp(img1, flow[:, 2:4])
        m = torch.sigmoid(mask)
        frame: torch.Tensor = m * w0 + (1 - m) * w1
        return frame


class RifeInterpolator:
    """An `IFNet` on a device, fed uint8 frames: `between(a, b, t)` for one in-between frame."""

    name = "rife"

    def __init__(self, net: IFNet, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval().requires_grad_(False)

    @torch.inference_mode()
    def between(self, a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
        """a, b: [H, W, 3] uint8 -> the frame at t in (0, 1) as [H, W, 3] uint8 (on the CPU)."""
        h, w, _ = a.shape
        x = torch.stack((a, b)).to(self.device).permute(0, 3, 1, 2).float().div(255.0)
        ph, pw = -h % SIDE_MULTIPLE, -w % SIDE_MULTIPLE
        if ph or pw:  # replicate the border so padding adds no false motion
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        ts = torch.tensor([t], device=self.device)
        out = self.net(x[0:1], x[1:2], ts)[0, :, :h, :w]
        frame: torch.Tensor = out.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu()
        return frame


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of every IFNet tensor, by arithmetic: checking a file needs no network built
    (the worker's parent process checks it before forking, and must not start torch's thread pools)."""
    out: dict[str, tuple[int, ...]] = {}
    for i, (cin, c) in enumerate(zip((7, 12, 12, 12), WIDTHS, strict=True)):
        b = f"block{i}"
        out |= {f"{b}.conv0.0.0.weight": (c // 2, cin, 3, 3), f"{b}.conv0.0.0.bias": (c // 2,)}
        out |= {f"{b}.conv0.1.0.weight": (c, c // 2, 3, 3), f"{b}.conv0.1.0.bias": (c,)}
        for j in range(8):
            out[f"{b}.convblock.{j}.conv.weight"] = (c, c, 3, 3)
            out[f"{b}.convblock.{j}.conv.bias"] = (c,)
            out[f"{b}.convblock.{j}.beta"] = (1, c, 1, 1)
        out |= {f"{b}.lastconv.0.weight": (c, 24, 4, 4), f"{b}.lastconv.0.bias": (24,)}
    return out


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A RIFE v4.6 ``flownet.pkl`` (torch pickle of the state dict, ``module.`` prefixed or not) or a
    ``.safetensors`` of the same keys -> the state dict, checked.

    Raises `model.CheckpointError` naming the file, and the missing/unexpected/mis-shaped keys.
    """
    from model.loading import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"interpolator weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"interpolator weights {path}: unreadable ({exc!r})") from exc
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"interpolator weights {path}: not a state dict of tensors")
    state = {str(k).removeprefix("module."): v for k, v in raw.items()}
    want = expected_shapes()
    missing = sorted(want.keys() - state.keys())
    unexpected = sorted(state.keys() - want.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"interpolator weights {path}: not a RIFE v{RIFE_VERSION} IFNet "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})"
        )
    for k, shape in want.items():
        if tuple(state[k].shape) != shape:
            raise CheckpointError(
                f"interpolator weights {path}: {k} has shape {tuple(state[k].shape)}, expected {shape}"
            )
    return state


def load_interpolator(path: str | Path, *, device: torch.device | str = "cpu") -> RifeInterpolator:
    """`read_checkpoint`, then the network on ``device`` (float32: it is small, and RIFE's flow
    is sensitive to half precision at coarse scales)."""
    state = read_checkpoint(path)
    net = IFNet()
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return RifeInterpolator(net, device)

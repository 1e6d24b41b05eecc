"""Live previews while a job denoises: throttled, small, best effort.

After a denoising step (the pipeline's ``preview`` hook) the publisher decides whether a preview is
due (at most one per ``preview_every_s`` seconds and per ``preview_every_steps`` steps, never on the
last step: the finished video follows at once). The hook also times itself and waits at least
``cost / MAX_SHARE`` before the next preview, so previews never take more than ``MAX_SHARE`` of the
denoising time, however slow the machine. A due preview projects the step's predicted clean
latent to RGB (`model.preview`: a [C, 3] matrix, no VAE decode), picks up to ``preview_frames``
frames spread over the clip, upsamples them to ``preview_max_side`` and packs them side by side
into one WebP (a horizontal strip, earliest frame on the left), lowering the quality and then the
frame count until its data URL fits ``preview_max_bytes``. Any error is logged and previews stop
for that job; the job itself never notices.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from app.core.previews import DATA_URL_PREFIX

if TYPE_CHECKING:
    from app.core.config import Settings
    from app.core.jobstore import Fence
    from app.core.previews import PreviewPublisher

log = logging.getLogger(__name__)

QUALITIES = (70, 50, 30)
# A preview costs about the same on any model (a few frames of 128 px), while steps take from
# milliseconds (the demo on a GPU) to seconds: this bounds the share previews may take of a run.
MAX_SHARE = 0.02


def webp_strip(frames: NDArray[np.uint8], *, max_bytes: int) -> tuple[str, int, int, int]:
    """[K, H, W, 3] uint8 -> (data URL, frames used, strip width, strip height) under ``max_bytes``."""
    from PIL import Image

    k = len(frames)
    while True:
        strip = Image.fromarray(np.concatenate(list(frames[:k]), axis=1))
        for q in QUALITIES:
            buf = io.BytesIO()
            strip.save(buf, format="WEBP", quality=q, method=0)  # method 0: the fastest encoder
            url = DATA_URL_PREFIX + base64.b64encode(buf.getvalue()).decode("ascii")
            if len(url) <= max_bytes:
                return url, k, strip.width, strip.height
        if k == 1:
            raise ValueError(f"a one-frame preview needs more than {max_bytes} bytes")
        k = max(1, k // 2)
        frames = frames[np.linspace(0, len(frames) - 1, k).round().astype(int)]


class PreviewHook:
    """The ``preview`` hook of one generation: publishes ``video.preview`` events for ``job_id``."""

    def __init__(
        self,
        settings: Settings,
        publisher: PreviewPublisher,
        job_id: str,
        latent_rgb: Any,
        fence: Fence = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s, self.publisher, self.job_id, self.rgb, self.fence = (
            settings,
            publisher,
            job_id,
            latent_rgb,
            fence,
        )
        self.clock = clock
        self.next_t = -float("inf")  # no preview before this clock time
        self.last_step = 0
        self.published = 0
        self.spent_s = 0.0  # time spent inside the hook on due steps (the overhead)
        self.enabled = True

    def due(self, step: int, total: int) -> bool:
        return (
            self.enabled
            and step < total
            and step - self.last_step >= self.s.preview_every_steps
            and self.clock() >= self.next_t
        )

    def __call__(self, step: int, total: int, x0: Callable[[], Any]) -> None:
        if not self.due(step, total):
            return
        t0, now = time.perf_counter(), self.clock()
        self.last_step = step
        try:
            self._publish(step, total, x0())
        except Exception:  # best effort: a preview must never fail the job
            log.warning("job %s: preview failed; no more previews for this job", self.job_id, exc_info=True)
            self.enabled = False
        finally:
            cost = time.perf_counter() - t0
            self.spent_s += cost
            self.next_t = now + max(self.s.preview_every_s, cost / MAX_SHARE)

    def _publish(self, step: int, total: int, latent: Any) -> None:
        from model.preview import pick_frames, preview_frames

        picked = latent[..., pick_frames(latent.shape[-3], self.s.preview_frames), :, :]
        rgb = self.rgb.apply(picked)  # project only the frames shown
        frames = preview_frames(rgb, max_frames=self.s.preview_frames, max_side=self.s.preview_max_side)
        url, k, w, h = webp_strip(frames, max_bytes=self.s.preview_max_bytes)
        pct = min(99, int(100 * step / max(total, 1)))
        data = {"id": self.job_id, "step": step, "total_steps": total, "progress": pct}
        data.update({"frames": k, "width": w, "height": h, "image": url})
        if self.publisher.publish(self.job_id, data, self.fence) != 0:
            self.enabled = False  # not running any more (the step callback stops the job)
        else:
            self.published += 1


def make_preview_hook(rt: Any, job_id: str, fence: Fence) -> PreviewHook | None:
    """A hook for this job, or None when previews are off or the model has no latent-RGB factors."""
    from app.core.previews import PreviewPublisher

    s = rt.settings
    factors = getattr(rt.pipe, "latent_rgb", None)
    if not s.previews or factors is None:
        return None
    publisher = PreviewPublisher(rt.store.r, retention_s=rt.store.retention_s)
    return PreviewHook(s, publisher, job_id, factors, fence)

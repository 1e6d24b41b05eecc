"""Following a job to its end: the progress line, SSE events folded into the job, polling fallback."""

from __future__ import annotations

import base64
import binascii
import shutil
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

from app.cli.client.api import TERMINAL, ApiError, Client, Event

PREVIEW_EVENT = "video.preview"
PREVIEW_PREFIX = "data:image/webp;base64,"


class Progress:
    """A one-line progress bar on a terminal; plain lines (on change) otherwise."""

    def __init__(self, stream: TextIO, video_id: str, preview_out: Path | None = None) -> None:
        self.preview_out = preview_out  # where each live preview is written as it arrives (the last stays)
        self.previews_saved = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.video_id = video_id
        self.last_line = ""
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.job: dict[str, Any] = {}

    def status(self) -> str | None:
        with self.lock:
            value = self.job.get("status")
        return None if value is None else str(value)

    def update_queue_position(self, position: object) -> None:
        with self.lock:
            if self.job.get("status") != "queued" or position == self.job.get("queue_position"):
                return
            job = {**self.job, "queue_position": position}
        self.update(job)

    def update(self, job: dict[str, Any]) -> None:
        with self.lock:
            self.job = job
            self._draw(job)

    def _draw(self, job: dict[str, Any]) -> None:
        status = str(job.get("status", "?"))
        progress = job.get("progress")
        pct = int(progress) if isinstance(progress, int | float) else 0
        if status == "queued":
            pos = job.get("queue_position")
            text = "queued" + (f", position {pos}" if pos is not None else "")
        elif status == "in_progress":
            step, total = job.get("step"), job.get("total_steps")
            text = f"step {step}/{total}" if step is not None and total else "starting"
        else:
            text = status
        if status == "completed":
            pct = 100
        if self.tty:
            width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - 50))
            filled = int(width * pct / 100)
            elapsed = time.monotonic() - self.started
            bar = "#" * filled + "." * (width - filled)
            line = f"\r{self.video_id[:24]} [{bar}] {pct:3d}% {text} {elapsed:5.0f}s"
            self.stream.write(line.ljust(len(self.last_line)))
            self.stream.flush()
            self.last_line = line
        else:
            line = f"{self.video_id} {pct:3d}% {text}"
            if line != self.last_line:
                self.stream.write(line + "\n")
                self.stream.flush()
                self.last_line = line

    def preview(self, data: dict[str, Any]) -> None:
        """A `video.preview` event: save its WebP over the previous one (atomically)."""
        url = data.get("image")
        if self.preview_out is None or not isinstance(url, str) or not url.startswith(PREVIEW_PREFIX):
            return
        try:
            raw = base64.b64decode(url[len(PREVIEW_PREFIX) :], validate=True)
        except binascii.Error:
            return
        tmp = self.preview_out.with_name(self.preview_out.name + ".part")
        tmp.write_bytes(raw)
        tmp.replace(self.preview_out)
        self.previews_saved += 1

    def done(self) -> None:
        with self.lock:
            self.job = {**self.job, "status": "done"}
        if self.tty and self.last_line:
            self.stream.write("\n")
            self.stream.flush()


def merge_event(job: dict[str, Any], event: Event) -> dict[str, Any]:
    """Fold one SSE event into the job view; events carry a (partial) video object."""
    data = event.json()
    if isinstance(data.get("data"), dict):  # {"type": ..., "data": {...}} envelopes
        data = {**data, **data["data"]}
    merged = dict(job)
    for key, value in data.items():
        if key in {"type", "data"}:
            continue
        merged[key] = value
    name = event.event.rsplit(".", 1)[-1]
    if "status" not in data and name in TERMINAL | {"queued", "in_progress"}:
        merged["status"] = name
    return merged


class QueueWatcher(threading.Thread):
    """While the job is queued, refresh its queue position (events only announce state changes)."""

    def __init__(self, client: Client, video_id: str, progress: Progress, interval_s: float = 1.0) -> None:
        super().__init__(name="wanserve-queue-watch", daemon=True)
        self.client, self.video_id, self.progress, self.interval_s = client, video_id, progress, interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval_s):
                if self.progress.status() != "queued":
                    return
                try:
                    job, _ = self.client.retrieve(self.video_id)
                except (ApiError, httpx.HTTPError):
                    continue
                if job.get("status") != "queued":
                    return
                self.progress.update_queue_position(job.get("queue_position"))
        finally:
            self.client.close()

    def stop(self) -> None:
        self.stopped.set()


def wait_for(client: Client, video_id: str, job: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Follow the event stream until the job is terminal; fall back to polling. Returns the final object."""
    watcher = QueueWatcher(client.clone(), video_id, progress)
    watcher.start()
    try:
        return _follow(client, video_id, job, progress)
    finally:
        watcher.stop()


def _follow(client: Client, video_id: str, job: dict[str, Any], progress: Progress) -> dict[str, Any]:
    last_id: str | None = None
    failures = 0
    use_stream = True
    while str(job.get("status")) not in TERMINAL:
        if use_stream:
            try:
                for event in client.events(video_id, last_id):
                    if event.id:
                        last_id = event.id
                    if event.event == PREVIEW_EVENT:  # a picture, not a change of the job
                        progress.preview(event.json())
                        continue
                    job = merge_event(job, event)
                    progress.update(job)
                    if str(job.get("status")) in TERMINAL:
                        break
                failures = 0
            except ApiError as exc:
                # No event stream here (or it keeps failing): poll instead. If the job itself is
                # gone, the retrieve below raises the server's message.
                failures += 1
                if exc.status in (404, 405, 501) or failures > 2:
                    use_stream = False
            except httpx.TransportError:
                failures += 1
                if failures > 5:
                    raise
                time.sleep(min(5.0, 0.5 * failures))
            # The stream ended (or broke): refresh the authoritative record before going on.
            job, _ = client.retrieve(video_id)
            progress.update(job)
        else:
            job, after = client.retrieve(video_id)
            progress.update(job)
            if str(job.get("status")) not in TERMINAL:
                time.sleep(after if after is not None else 1.0)
    return job

"""``wanserve generate|status|list|cancel|models``: a small HTTP client for a running gateway.

The server URL and API key come from ``--url`` / ``--api-key`` or from ``WANSERVE_API_URL`` /
``WANSERVE_API_KEY``. Progress comes from the job's Server-Sent Events stream
(``GET /v1/videos/{id}/events``); when that stream is unavailable the client polls
``GET /v1/videos/{id}`` honouring ``openai-poll-after-ms``.

The dispatcher in ``app/cli/main.py`` hands ``argv`` to :func:`main` for the commands in
:data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

COMMANDS = ("generate", "status", "list", "cancel", "models")
DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = frozenset({"completed", "failed", "cancelled"})

EXIT_OK = 0
EXIT_FAILED = 1  # the job failed or the server refused the request
EXIT_USAGE = 2
EXIT_CANCELLED = 3  # the job ended cancelled
EXIT_INTERRUPTED = 130  # Ctrl-C, job left running


class ApiError(Exception):
    """A non-2xx answer, carrying the server's problem+json message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def problem_message(response: httpx.Response) -> str:
    """Turn an error response (problem+json or anything else) into one readable line."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return f"HTTP {response.status_code}: {text[:500] or response.reason_phrase}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}: {body!r}"
    if isinstance(body.get("error"), dict):  # OpenAI-style {"error": {"message": ...}}
        body = {**body, **body["error"]}
    title = str(body.get("title") or body.get("code") or f"HTTP {response.status_code}")
    detail = body.get("detail") or body.get("message")
    parts = [title if not detail else f"{title}: {detail}"]
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            field = err.get("field") or err.get("loc") or "?"
            reason = err.get("reason") or err.get("msg") or ""
            if f"{field}: {reason}" != detail:  # already said by the detail line
                parts.append(f"  - {field}: {reason}")
    return "\n".join(parts)


@dataclass
class Event:
    """One Server-Sent Event."""

    event: str
    data: str
    id: str | None

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.data)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Parse an SSE line stream (text/event-stream) into events; comments are skipped."""
    name, event_id = "", None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data or name:
                yield Event(name or "message", "\n".join(data), event_id)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value
    if data:
        yield Event(name or "message", "\n".join(data), event_id)


class Client:
    """Thin synchronous wrapper around the gateway's /v1 API."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 30.0) -> None:
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self.base_url, self.api_key, self.timeout = base, api_key, timeout
        headers = {"User-Agent": "wanserve-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=base, headers=headers, timeout=timeout, follow_redirects=True)

    def clone(self) -> Client:
        """A second client (own connection pool) for use from another thread."""
        return Client(self.base_url, self.api_key, timeout=self.timeout)

    def close(self) -> None:
        self.http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_error:
            response.read()
            raise ApiError(response.status_code, problem_message(response))
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        body = self._check(response).json()
        if not isinstance(body, dict):
            raise ApiError(response.status_code, f"unexpected answer: {body!r}")
        return body

    def create(self, fields: dict[str, Any], image: Path | None = None) -> dict[str, Any]:
        if image is None:
            return self._json(self.http.post("/v1/videos", json=fields))
        form = {
            k: (json.dumps(v) if isinstance(v, dict | list) else str(v))
            for k, v in fields.items()
            if v is not None
        }
        ctype = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
        with image.open("rb") as fh:
            files = {"input_reference": (image.name, fh, ctype)}
            return self._json(self.http.post("/v1/videos", data=form, files=files))

    def retrieve(self, video_id: str) -> tuple[dict[str, Any], float | None]:
        response = self.http.get(f"/v1/videos/{video_id}")
        body = self._json(response)
        after = response.headers.get("openai-poll-after-ms")
        return body, (int(after) / 1000.0 if after and after.isdigit() else None)

    def list_videos(
        self, *, limit: int = 20, after: str | None = None, order: str = "desc"
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "order": order}
        if after:
            params["after"] = after
        return self._json(self.http.get("/v1/videos", params=params))

    def cancel(self, video_id: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/v1/videos/{video_id}/cancel"))

    def models(self) -> list[dict[str, Any]]:
        body = self._json(self.http.get("/v1/models"))
        data = body.get("data", [])
        return [m for m in data if isinstance(m, dict)]

    def events(self, video_id: str, last_event_id: str | None = None) -> Iterator[Event]:
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(30.0, read=None)
        with self.http.stream("GET", f"/v1/videos/{video_id}/events", headers=headers, timeout=timeout) as r:
            self._check(r)
            yield from parse_sse(r.iter_lines())

    def download(self, video_id: str, dest: Path, variant: str = "video") -> int:
        tmp = dest.with_name(dest.name + ".part")
        size = 0
        with self.http.stream("GET", f"/v1/videos/{video_id}/content", params={"variant": variant}) as r:
            self._check(r)
            with tmp.open("wb") as fh:
                for chunk in r.iter_bytes():
                    fh.write(chunk)
                    size += len(chunk)
        tmp.replace(dest)
        return size


# --------------------------------------------------------------------------- progress display


class Progress:
    """A one-line progress bar on a terminal; plain lines (on change) otherwise."""

    def __init__(self, stream: TextIO, video_id: str) -> None:
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


# --------------------------------------------------------------------------- commands


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, args.api_key, timeout=args.timeout)


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(question)
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in {"y", "yes"}


def _request_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {"prompt": args.prompt}
    optional = {
        "model": args.model,
        "size": args.size,
        "seconds": args.seconds,
        "num_frames": args.frames,
        "fps": args.fps,
        "seed": args.seed,
        "negative_prompt": args.negative_prompt,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "guidance_scale_high_noise": args.guidance_high_noise,
        "guidance_scale_low_noise": args.guidance_low_noise,
        "shift": args.shift,
        "sampler": args.sampler,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def cmd_generate(args: argparse.Namespace) -> int:
    image = Path(args.image) if args.image else None
    if image is not None and not image.is_file():
        _err(f"error: no such image file: {image}")
        return EXIT_USAGE
    client = _client(args)
    video_id: str | None = None
    progress: Progress | None = None
    try:
        try:
            job = client.create(_request_fields(args), image)
            video_id = str(job["id"])
            (_out if args.no_wait else _err)(video_id)
            if args.no_wait:
                return EXIT_OK
            progress = Progress(sys.stderr, video_id)
            progress.update(job)
            job = wait_for(client, video_id, job, progress)
        except KeyboardInterrupt:
            if video_id is None:
                raise
            if progress is not None:
                progress.done()
            if _ask(f"Cancel job {video_id} on the server? [y/N] "):
                client.cancel(video_id)
                _err(f"cancelled {video_id}")
                return EXIT_CANCELLED
            _err(f"job {video_id} keeps running; check it with: wanserve status {video_id}")
            return EXIT_INTERRUPTED
        assert progress is not None
        progress.done()
        status = job.get("status")
        if status == "failed":
            err = job.get("error") or {}
            message = err.get("message") if isinstance(err, dict) else str(err)
            code = err.get("code") if isinstance(err, dict) else None
            _err(f"error: job {video_id} failed" + (f" [{code}]" if code else "") + f": {message}")
            return EXIT_FAILED
        if status == "cancelled":
            _err(f"job {video_id} was cancelled")
            return EXIT_CANCELLED
        out = Path(args.out) if args.out else Path(f"{video_id}.mp4")
        size = client.download(video_id, out)
        if args.thumbnail:
            client.download(video_id, Path(args.thumbnail), variant="thumbnail")
        _err(f"saved {out} ({size} bytes, seed {job.get('seed')})")
        _out(str(out))
        return EXIT_OK
    finally:
        client.close()


def _summary(job: dict[str, Any]) -> str:
    lines = [
        f"id:        {job.get('id')}",
        f"status:    {job.get('status')}",
        f"progress:  {job.get('progress')}%",
        f"model:     {job.get('model')}",
        f"size:      {job.get('size')}   seconds: {job.get('seconds')}",
        f"prompt:    {job.get('prompt')}",
    ]
    if job.get("queue_position") is not None:
        lines.append(f"queue:     position {job['queue_position']}")
    if job.get("step") is not None:
        lines.append(f"step:      {job.get('step')}/{job.get('total_steps')}")
    if job.get("seed") is not None:
        lines.append(f"seed:      {job['seed']}")
    if job.get("error"):
        lines.append(f"error:     {json.dumps(job['error'])}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        job, _ = client.retrieve(args.id)
    finally:
        client.close()
    _out(json.dumps(job, indent=2) if args.json else _summary(job))
    return EXIT_FAILED if job.get("status") == "failed" else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    client = _client(args)
    items: list[dict[str, Any]] = []
    try:
        after: str | None = None
        while True:
            page = client.list_videos(limit=args.limit, after=after, order=args.order)
            data = [d for d in page.get("data", []) if isinstance(d, dict)]
            items.extend(data)
            if not (args.all and page.get("has_more") and data):
                break
            after = str(page.get("last_id") or data[-1]["id"])
    finally:
        client.close()
    if args.json:
        _out(json.dumps(items, indent=2))
        return EXIT_OK
    _out(f"{'ID':<40} {'STATUS':<12} {'PROG':>4}  {'MODEL':<18} PROMPT")
    for job in items:
        prompt = str(job.get("prompt") or "").replace("\n", " ")
        _out(
            f"{job.get('id')!s:<40} {job.get('status')!s:<12} {job.get('progress', 0)!s:>3}%  "
            f"{job.get('model')!s:<18} {prompt[:50]}"
        )
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        job = client.cancel(args.id)
    finally:
        client.close()
    status = job.get("status", "cancelled")
    if status in ("queued", "in_progress"):
        _out(f"{job.get('id', args.id)} cancel requested: it stops at the next denoising step")
    else:
        _out(f"{job.get('id', args.id)} {status}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        models = client.models()
    finally:
        client.close()
    if args.json:
        _out(json.dumps(models, indent=2))
        return EXIT_OK
    for m in models:
        _out(
            f"{m.get('id')}  ({m.get('task')}, image {m.get('image_input')}, "
            f"{m.get('ready_workers', '?')} ready worker(s))"
        )
        frames = m.get("num_frames") or {}
        steps = m.get("num_inference_steps") or {}
        guidance = m.get("default_guidance_scale") or {}
        rows = {
            "sizes": ", ".join(str(x) for x in m.get("sizes") or []) + f"  (default {m.get('default_size')})",
            "frames": f"{frames.get('default')} (4n+1 in {frames.get('min')}..{frames.get('max')}) "
            f"at {m.get('fps')} fps",
            "steps": f"{steps.get('default')} (max {steps.get('max')})",
            "guidance": ", ".join(f"{k} {v}" for k, v in guidance.items()),
            "shift": str(m.get("default_shift")),
            "samplers": ", ".join(m.get("samplers") or []) + f"  (default {m.get('default_sampler')})",
        }
        for key, value in rows.items():
            _out(f"  {key:<9} {value}")
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("WANSERVE_API_URL", DEFAULT_URL),
        help="gateway URL (env WANSERVE_API_URL, default %(default)s)",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("WANSERVE_API_KEY"),
        help="API key sent as a Bearer token (env WANSERVE_API_KEY)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds")


def build_parser(prog: str = "wanserve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="wanserve API client")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="submit a prompt, show progress, download the MP4")
    _common(g)
    g.add_argument("prompt")
    g.add_argument("--image", help="input image (image-to-video models)")
    g.add_argument("--model", help="model id (see `wanserve models`)")
    g.add_argument("--size", help="WIDTHxHEIGHT, e.g. 1280x704")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--seconds", help="duration; mapped to frames with the model's fps")
    length.add_argument("--frames", type=int, help="exact frame count (4n+1)")
    g.add_argument("--fps", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--steps", type=int, help="denoising steps (num_inference_steps)")
    g.add_argument("--guidance-scale", type=float, help="classifier-free guidance (both experts)")
    g.add_argument("--guidance-high-noise", type=float, help="A14B: guidance of the high-noise expert")
    g.add_argument("--guidance-low-noise", type=float, help="A14B: guidance of the low-noise expert")
    g.add_argument("--shift", type=float)
    g.add_argument("--sampler", choices=("unipc", "dpm++", "euler"))
    g.add_argument("--negative-prompt")
    g.add_argument("--out", "-o", help="where to save the MP4 (default ID.mp4)")
    g.add_argument("--thumbnail", help="also save the thumbnail image here")
    g.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser("status", help="show one job")
    _common(s)
    s.add_argument("id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    ls = sub.add_parser("list", help="list jobs, newest first")
    _common(ls)
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--order", choices=("desc", "asc"), default="desc")
    ls.add_argument("--all", action="store_true", help="follow pagination to the end")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    c = sub.add_parser("cancel", help="cancel a queued or running job")
    _common(c)
    c.add_argument("id")
    c.set_defaults(func=cmd_cancel)

    m = sub.add_parser("models", help="models served by live workers")
    _common(m)
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ApiError as exc:
        _err(f"error: {exc.message}")
        return EXIT_FAILED
    except httpx.TransportError as exc:
        _err(f"error: cannot reach {args.url}: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""The client commands: ``generate``, ``status``, ``list``, ``cancel``, ``models``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.client.api import Client
from app.cli.client.progress import Progress, wait_for

EXIT_OK = 0
EXIT_FAILED = 1  # the job failed or the server refused the request
EXIT_USAGE = 2
EXIT_CANCELLED = 3  # the job ended cancelled
EXIT_INTERRUPTED = 130  # Ctrl-C, job left running


def say(text: str) -> None:
    """A result line on stdout (what scripts read)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def warn(text: str) -> None:
    """A message for the person on stderr (ids, progress, errors)."""
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
    for name in ("priority", "cancel_after"):  # the server parses durations like "5m"
        if getattr(args, name, None) is not None:
            fields[name] = getattr(args, name)
    if getattr(args, "lora", None):
        fields["loras"] = [_lora_ref(item) for item in args.lora]
    if getattr(args, "cache", None):
        kind, _, thr = args.cache.partition(":")
        fields["cache"] = {"type": kind} if not thr else {"type": kind, "threshold": _number(thr)}
    return fields


def _lora_ref(item: str) -> dict[str, Any]:
    """`NAME` or `NAME:SCALE` -> {"name", "scale"} (a bad scale is left for the server to reject)."""
    name, sep, scale = item.rpartition(":")
    if not sep:
        return {"name": item, "scale": 1.0}
    try:
        return {"name": name, "scale": float(scale)}
    except ValueError:
        return {"name": item, "scale": 1.0}


def _number(text: str) -> float | str:
    """A threshold as a number, or the text itself so that the server names the bad value."""
    try:
        return float(text)
    except ValueError:
        return text


def cmd_generate(args: argparse.Namespace) -> int:
    image = Path(args.image) if args.image else None
    if image is not None and not image.is_file():
        warn(f"error: no such image file: {image}")
        return EXIT_USAGE
    client = _client(args)
    video_id: str | None = None
    progress: Progress | None = None
    try:
        try:
            job = client.create(_request_fields(args), image)
            video_id = str(job["id"])
            (say if args.no_wait else warn)(video_id)
            if args.no_wait:
                return EXIT_OK
            preview_out = Path(args.preview_out) if args.preview_out else None
            progress = Progress(sys.stderr, video_id, preview_out)
            progress.update(job)
            job = wait_for(client, video_id, job, progress)
        except KeyboardInterrupt:
            if video_id is None:
                raise
            if progress is not None:
                progress.done()
            if _ask(f"Cancel job {video_id} on the server? [y/N] "):
                client.cancel(video_id)
                warn(f"cancelled {video_id}")
                return EXIT_CANCELLED
            warn(f"job {video_id} keeps running; check it with: wanserve status {video_id}")
            return EXIT_INTERRUPTED
        assert progress is not None
        progress.done()
        if args.preview_out and not progress.previews_saved:
            warn(f"no live preview was published for {video_id}; {args.preview_out} not written")
        status = job.get("status")
        if status == "failed":
            err = job.get("error") or {}
            message = err.get("message") if isinstance(err, dict) else str(err)
            code = err.get("code") if isinstance(err, dict) else None
            warn(f"error: job {video_id} failed" + (f" [{code}]" if code else "") + f": {message}")
            return EXIT_FAILED
        if status == "cancelled":
            warn(f"job {video_id} was cancelled")
            return EXIT_CANCELLED
        out = Path(args.out) if args.out else Path(f"{video_id}.mp4")
        size = client.download(video_id, out)
        if args.thumbnail:
            client.download(video_id, Path(args.thumbnail), variant="thumbnail")
        warn(f"saved {out} ({size} bytes, seed {job.get('seed')})")
        say(str(out))
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
    say(json.dumps(job, indent=2) if args.json else _summary(job))
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
        say(json.dumps(items, indent=2))
        return EXIT_OK
    say(f"{'ID':<40} {'STATUS':<12} {'PROG':>4}  {'MODEL':<18} PROMPT")
    for job in items:
        prompt = str(job.get("prompt") or "").replace("\n", " ")
        say(
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
        say(f"{job.get('id', args.id)} cancel requested: it stops at the next denoising step")
    else:
        say(f"{job.get('id', args.id)} {status}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        models = client.models()
    finally:
        client.close()
    if args.json:
        say(json.dumps(models, indent=2))
        return EXIT_OK
    for m in models:
        say(
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
            say(f"  {key:<9} {value}")
    return EXIT_OK

"""Pure parts of the CLI client: SSE parsing, event merging, error messages, progress lines."""

from __future__ import annotations

import io

import httpx

from app.cli.client import Event, Progress, build_parser, merge_event, parse_sse, problem_message


def test_parse_sse_events_ids_comments_and_multiline_data() -> None:
    text = (
        "retry: 1000\n\n"
        ": keep-alive\n\n"
        'id: 1-0\nevent: video.started\ndata: {"status": "in_progress"}\n\n'
        'id: 2-0\nevent: video.progress\ndata: {"step": 1,\ndata: "total_steps": 4}\n\n'
        "data: tail-without-blank-line"
    )
    events = list(parse_sse(iter(text.splitlines())))
    assert [e.event for e in events] == ["video.started", "video.progress", "message"]
    assert [e.id for e in events] == ["1-0", "2-0", "2-0"]
    assert events[1].json() == {"step": 1, "total_steps": 4}
    assert events[2].json() == {}


def test_merge_event_keeps_earlier_fields_and_takes_status() -> None:
    job = {"id": "v1", "status": "queued", "queue_position": 2, "prompt": "p"}
    job = merge_event(
        job, Event("video.progress", '{"status": "in_progress", "step": 3, "total_steps": 4}', "9-0")
    )
    assert job["status"] == "in_progress" and job["step"] == 3 and job["prompt"] == "p"
    job = merge_event(job, Event("video.completed", '{"id": "v1", "progress": 100}', "10-0"))
    assert job["status"] == "completed" and job["progress"] == 100


def test_problem_message_names_fields() -> None:
    body = {
        "type": "/problems/invalid-request",
        "title": "Invalid request",
        "status": 422,
        "detail": "size: not supported",
        "errors": [{"field": "size", "reason": "use one of 32x32"}],
    }
    resp = httpx.Response(422, json=body, headers={"content-type": "application/problem+json"})
    msg = problem_message(resp)
    assert msg.startswith("Invalid request: size: not supported")
    assert "size: use one of 32x32" in msg
    assert problem_message(httpx.Response(502, text="bad gateway")) == "HTTP 502: bad gateway"


def test_progress_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out, "video_1")
    progress.update({"status": "queued", "queue_position": 3})
    progress.update_queue_position(2)
    progress.update({"status": "in_progress", "progress": 50, "step": 2, "total_steps": 4})
    progress.update({"status": "in_progress", "progress": 50, "step": 2, "total_steps": 4})  # no repeat
    progress.update({"status": "completed", "progress": 100})
    lines = out.getvalue().splitlines()
    assert lines == [
        "video_1   0% queued, position 3",
        "video_1   0% queued, position 2",
        "video_1  50% step 2/4",
        "video_1 100% completed",
    ]


def test_parser_generate_options() -> None:
    args = build_parser().parse_args(
        [
            "generate",
            "a cat",
            "--model",
            "tiny-ti2v",
            "--size",
            "32x32",
            "--frames",
            "9",
            "--seed",
            "3",
            "--no-wait",
            "--url",
            "http://h:1",
            "--api-key",
            "k",
        ]
    )
    assert (args.prompt, args.model, args.size, args.frames, args.seed, args.no_wait) == (
        "a cat",
        "tiny-ti2v",
        "32x32",
        9,
        3,
        True,
    )
    assert args.url == "http://h:1" and args.api_key == "k"


def test_generate_lora_options_become_request_loras() -> None:
    from app.cli.client.commands import _request_fields

    args = build_parser().parse_args(["generate", "a cat", "--lora", "lightning", "--lora", "style.v2:0.6"])
    assert _request_fields(args)["loras"] == [
        {"name": "lightning", "scale": 1.0},
        {"name": "style.v2", "scale": 0.6},
    ]
    assert "loras" not in _request_fields(build_parser().parse_args(["generate", "a cat"]))


def test_generate_priority_and_cancel_after_become_request_fields() -> None:
    from app.cli.client.commands import _request_fields

    args = build_parser().parse_args(["generate", "a cat", "--priority", "high", "--cancel-after", "5m"])
    fields = _request_fields(args)
    assert fields["priority"] == "high" and fields["cancel_after"] == "5m"
    plain = _request_fields(build_parser().parse_args(["generate", "a cat"]))
    assert "priority" not in plain and "cancel_after" not in plain


def test_progress_saves_each_preview_over_the_last(tmp_path) -> None:
    import base64

    out = tmp_path / "p.webp"
    progress = Progress(io.StringIO(), "video_1", out)
    for payload in (b"RIFF-first", b"RIFF-second"):
        url = "data:image/webp;base64," + base64.b64encode(payload).decode()
        progress.preview({"step": 1, "image": url})
        assert out.read_bytes() == payload
    progress.preview({"image": "data:image/png;base64,AAAA"})  # not a WebP preview: ignored
    progress.preview({"image": "data:image/webp;base64,@@@"})  # bad base64: ignored
    assert out.read_bytes() == b"RIFF-second" and progress.previews_saved == 2
    assert build_parser().parse_args(["generate", "x", "--preview-out", "a.webp"]).preview_out == "a.webp"

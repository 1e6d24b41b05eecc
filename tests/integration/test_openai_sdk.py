"""The real `openai` package (sync and async clients) against a real running wanserve.

Covers what the OpenAI-style API promises SDK users: videos.create (multipart, with an input_reference file
and extra_body fields), retrieve, list with auto-pagination, delete, download_content (video and
thumbnail), create_and_poll honouring `openai-poll-after-ms`, and problem+json errors surfacing as
the SDK's typed exceptions.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from typing import Any, cast

import httpx
import openai
import pytest
from PIL import Image

from tests.integration.eco_support import Service, decode_mp4, service_fixture

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


service = service_fixture("sdk")  # a gateway with auth on and a key for it


MODEL = "tiny-ti2v"
# The SDK's type hints list only Sora's sizes and durations; at run time it sends any string.
SIZE: Any = "32x32"
FAST = {"num_frames": 9, "num_inference_steps": 2}


def _client(svc: Service) -> openai.OpenAI:
    return openai.OpenAI(base_url=svc.url + "/v1", api_key=svc.api_key or "unused", max_retries=0)


def _aclient(svc: Service) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=svc.url + "/v1", api_key=svc.api_key or "unused", max_retries=0)


def _png(color: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (48, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _extra(video: Any) -> dict[str, Any]:
    """wanserve's fields beyond the SDK's `Video` type (kept by the SDK as extra attributes)."""
    data: dict[str, Any] = video.to_dict()
    return data


def test_create_retrieve_poll_download_sync(service: Service) -> None:
    client = _client(service)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        video = client.videos.create(
            model=MODEL,
            prompt="a red ball bouncing",
            size=SIZE,
            extra_body={**FAST, "seed": 1234, "metadata": {"user": "alice", "run": "sdk"}},
        )
        assert video.object == "video" and video.status in ("queued", "in_progress")
        assert video.model == MODEL and video.size == SIZE and video.prompt == "a red ball bouncing"

        raw = client.videos.with_raw_response.retrieve(video.id)
        first = raw.parse()
        if first.status in ("queued", "in_progress"):
            assert int(raw.headers["openai-poll-after-ms"]) >= 0

        done = client.videos.poll(video.id, poll_interval_ms=100)
    assert done.status == "completed", done.error
    assert done.progress == 100 and done.completed_at and done.completed_at >= done.created_at
    extra = _extra(done)
    assert extra["seed"] == 1234
    assert extra["parameters"]["num_frames"] == 9 and extra["parameters"]["num_inference_steps"] == 2
    assert extra["metadata"] == {"user": "alice", "run": "sdk"}
    assert float(done.seconds) == pytest.approx(9 / extra["parameters"]["fps"], abs=0.01)

    content = client.videos.download_content(done.id)
    frames, width, height, fps = decode_mp4(content.read())
    assert (frames, width, height) == (9, 32, 32) and fps == extra["parameters"]["fps"]

    thumb = client.videos.download_content(done.id, variant="thumbnail").read()
    with Image.open(io.BytesIO(thumb)) as im:
        assert im.size == (32, 32)

    sheet = client.videos.download_content(done.id, variant="spritesheet").read()
    with Image.open(io.BytesIO(sheet)) as im:
        assert im.format == "WEBP" and im.size == (3 * 32, 3 * 32)  # 9 frames → a 3x3 grid

    deleted = client.videos.delete(done.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (done.id, True, "video.deleted")
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(done.id)


def test_create_and_poll_with_input_reference(service: Service) -> None:
    client = _client(service)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        video = client.videos.create_and_poll(
            model=MODEL,
            prompt="the red square slowly turns blue",
            input_reference=("start.png", _png(), "image/png"),
            seconds=cast(Any, "0.3"),  # a string, as the SDK types it: 4*round(0.3*24/4)+1 = 9 frames
            extra_body={"num_inference_steps": 2, "seed": 7},
        )
    assert video.status == "completed", video.error
    params = _extra(video)["parameters"]
    assert params["has_image"] is True and params["num_frames"] == 9
    frames, *_ = decode_mp4(client.videos.download_content(video.id).read())
    assert frames == 9
    client.videos.delete(video.id)


def _serve_once(body: bytes) -> tuple[str, Any]:
    """A local HTTP server answering every GET with ``body`` as image/png (a stand-in image host)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/start.png", server


def test_input_reference_image_url_is_honoured_and_file_id_refused(service: Service) -> None:
    """OpenAI's reference object, as JSON and flattened into multipart (`input_reference[image_url]`).

    openai 3.60's `videos.create` accepts only files for `input_reference` at run time, so this speaks
    HTTP directly, in both encodings an OpenAI-style client uses."""
    import base64

    url, server = _serve_once(_png((20, 200, 20)))
    data_url = "data:image/png;base64," + base64.b64encode(_png((20, 20, 200))).decode()
    fields = {"model": MODEL, "prompt": "from an image url", "num_frames": "9", "num_inference_steps": "2"}
    try:
        with httpx.Client(base_url=service.url, headers=service.headers, timeout=30) as http:
            for ref in (url, data_url):
                parts = {k: (None, v) for k, v in {**fields, "input_reference[image_url]": ref}.items()}
                multipart = http.post("/v1/videos", files=parts)  # multipart/form-data, no file part
                as_json = http.post("/v1/videos", json={**fields, "input_reference": {"image_url": ref}})
                for resp in (multipart, as_json):
                    assert resp.status_code == 202, resp.text
                    assert resp.json()["parameters"]["has_image"] is True, ref[:30]
                    http.delete(f"/v1/videos/{resp.json()['id']}")
            parts = {k: (None, v) for k, v in {**fields, "input_reference[file_id]": "file_abc"}.items()}
            refused = http.post("/v1/videos", files=parts)
    finally:
        server.shutdown()
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "input_reference.file_id"


def test_list_auto_pagination_walks_every_page(service: Service) -> None:
    client = _client(service)
    ids = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for i in range(5):
            v = client.videos.create(model=MODEL, prompt=f"page item {i}", extra_body=FAST)
            ids.append(v.id)
    # Cancel them (the SDK has no cancel) so they do not hold the shared worker.
    with httpx.Client(base_url=service.url, headers=service.headers) as http:
        for vid in ids:
            http.post(f"/v1/videos/{vid}/cancel")

    page = client.videos.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    seen = [v.id for v in client.videos.list(limit=2)]  # iterating follows `last_id` / `after`
    assert len(seen) == len(set(seen)), "a page repeated an item"
    assert set(ids) <= set(seen)
    newest_first = [vid for vid in seen if vid in ids]
    assert newest_first == list(reversed(ids))
    oldest_first = [v.id for v in client.videos.list(limit=3, order="asc") if v.id in ids]
    assert oldest_first == ids
    for vid in ids:
        assert client.videos.delete(vid).deleted


def test_errors_surface_as_sdk_exceptions(service: Service) -> None:
    client = _client(service)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(openai.BadRequestError) as bad_size:
            client.videos.create(model=MODEL, prompt="x", size="1280x720")
        with pytest.raises(openai.BadRequestError) as bad_model:
            client.videos.create(model="sora-2", prompt="x")
        with pytest.raises(openai.NotFoundError) as missing:
            client.videos.download_content("video_doesnotexist")
    assert "1280x720" in str(bad_size.value) and "size" in str(bad_size.value.body)
    err = bad_size.value
    assert (err.status_code, err.type, err.param, err.code) == (
        400,
        "invalid_request_error",
        "size",
        "invalid_request",
    )
    assert bad_model.value.param == "model"
    assert MODEL in str(bad_model.value)  # names the served models
    assert (missing.value.type, missing.value.code) == ("not_found_error", "not_found")
    bad_key = openai.OpenAI(base_url=service.url + "/v1", api_key="wsk_not_a_key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as unauth:
        bad_key.videos.list()
    assert unauth.value.type == "authentication_error"


def test_conflict_is_not_retried(service: Service) -> None:
    """download_content of an unfinished video: one request, not the SDK's default three (409 retries)."""
    sent: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda req: sent.append(req.url.path)]})
    client = openai.OpenAI(
        base_url=service.url + "/v1", api_key=service.api_key, http_client=http
    )  # retries on
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        video = client.videos.create(model=MODEL, prompt="still rendering", extra_body=FAST)
        # cancel it first so that it can never complete while we ask for its content
        httpx.post(f"{service.url}/v1/videos/{video.id}/cancel", headers=service.headers)
        sent.clear()
        with pytest.raises(openai.ConflictError) as conflict:
            client.videos.download_content(video.id)
    assert conflict.value.response.headers["x-should-retry"] == "false"
    assert conflict.value.type == "conflict_error"
    assert sent == [f"/v1/videos/{video.id}/content"], sent
    client.videos.delete(video.id)


def test_async_client(service: Service) -> None:
    async def scenario() -> None:
        client = _aclient(service)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            video = await client.videos.create_and_poll(
                model=MODEL, prompt="async ball", extra_body={**FAST, "seed": 5}, poll_interval_ms=100
            )
        assert video.status == "completed", video.error
        got = await client.videos.retrieve(video.id)
        assert got.id == video.id and got.status == "completed"
        seen = [v.id async for v in client.videos.list(limit=1)]
        assert video.id in seen and len(seen) == len(set(seen))
        data = await (await client.videos.download_content(video.id)).aread()
        assert decode_mp4(data)[0] == 9
        thumb = await (await client.videos.download_content(video.id, variant="thumbnail")).aread()
        assert Image.open(io.BytesIO(thumb)).size == (32, 32)
        assert (await client.videos.delete(video.id)).deleted
        with pytest.raises(openai.NotFoundError):
            await client.videos.retrieve(video.id)
        await client.close()

    asyncio.run(scenario())

"""The gateway's /v1 API over HTTP: `Client`, problem+json errors and the SSE event stream."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

TERMINAL = frozenset({"completed", "failed", "cancelled"})


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

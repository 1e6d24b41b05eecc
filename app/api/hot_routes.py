"""The two routes a client calls most, served in front of the framework's layers.

A polling client sends ``GET /v1/videos/{id}`` every second and every job starts with ``POST
/v1/videos``. Going through Starlette's and FastAPI's stack (error, telemetry and body-limit
layers, our three middlewares, the exception layer, route matching over ~40 routes, the endpoint
runner and the response model's re-validation) cost as much CPU as the route's own work
(bench/gateway_profile.py). `HotRoutes` sits outside that stack and serves exactly these two
requests with the same route functions (`app.api.routes.videos`), the same checks in the same
order and the same answers: request id and access log line (`app.api.observability`), body cap and
rate-limit headers (`app.api.security`), errors rendered by the registered handlers
(`app.api.errors.error_response`). Anything else, and any request these two would not answer
plainly (a form body, a CORS request with ``Origin``), goes through the full stack unchanged.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.api.observability import job_id_of, log_access, request_id
from app.api.routes.videos import create_video, get_video
from app.api.security import capped, declared_too_large, ratelimit_headers, send_too_large
from app.core.logjson import job_id_var, request_id_var
from app.core.schemas import VideoPublic

_PREFIX = "/v1/videos/"
_FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")


def _route(scope: Scope) -> str | None:
    """``"create"``, ``"get"`` or None (the full stack serves it)."""
    method, path = scope["method"], scope["path"]
    if method == "GET":
        if path.startswith(_PREFIX) and path.find("/", len(_PREFIX)) < 0 and len(path) > len(_PREFIX):
            return "get"
        return None
    if method != "POST" or path != "/v1/videos":
        return None
    for name, value in scope["headers"]:
        if name == b"origin":  # CORS answers need CORSMiddleware's headers
            return None
        if name == b"content-type" and value.split(b";", 1)[0].strip().lower() in _FORM_TYPES:
            return None
    return "create"


class HotRoutes:
    """Pure ASGI, the outermost layer; ``gateway`` is the FastAPI app the routes belong to."""

    def __init__(self, app: ASGIApp, gateway: FastAPI, max_body_bytes: int) -> None:
        self.app = app
        self.gateway = gateway
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = request_id(scope)
        rtoken = request_id_var.set(rid)
        jtoken = job_id_var.set(job_id_of(scope["path"]))
        status = 0
        try:
            if route == "create" and declared_too_large(scope, self.max_body_bytes):
                status = 413
                await send_too_large(_with_request_id(send, rid), self.max_body_bytes)
                return
            status = await self._serve(route, scope, capped(receive, self.max_body_bytes), send, rid)
        finally:
            log_access(scope, status, t0)
            request_id_var.reset(rtoken)
            job_id_var.reset(jtoken)

    async def _serve(self, route: str, scope: Scope, receive: Receive, send: Send, rid: str) -> int:
        scope["app"] = self.gateway
        request = Request(scope, receive)
        response = Response()  # FastAPI's sub-response: the routes set headers (and a status) on it
        del response.headers["content-length"]
        response.status_code = None  # type: ignore[assignment]  # set only by a route that chooses
        try:
            if route == "create":
                video: VideoPublic = await create_video(request, response)
                code = response.status_code or 202
            else:
                video = await get_video(scope["path"][len(_PREFIX) :], request, response)
                code = response.status_code or 200
            body = video.__pydantic_serializer__.to_json(video, by_alias=True)
            headers = [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
                *response.raw_headers,
            ]
        except Exception as exc:  # noqa: BLE001 - every error becomes the registered handlers' answer
            problem = await error_response(request, exc)
            code, body, headers = problem.status_code, bytes(problem.body), problem.raw_headers
        headers += ratelimit_headers(scope)
        headers.append((b"x-request-id", rid.encode()))
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return code


def _with_request_id(send: Send, rid: str) -> Send:
    async def sending(msg: Message) -> None:
        if msg["type"] == "http.response.start":
            msg = {**msg, "headers": [*msg.get("headers", []), (b"x-request-id", rid.encode())]}
        await send(msg)

    return sending

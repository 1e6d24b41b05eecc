"""``GET /``: the single-page web UI (plain HTML/JS/CSS from ``app/web/``, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page only loads its own files and talks to this origin.
_CSP = (
    "default-src 'self'; img-src 'self' data: blob: https: http:; media-src 'self' blob: https: http:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(
        WEB_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
    )


@router.get("/index.html")
def index_html() -> RedirectResponse:
    return RedirectResponse("/", status_code=308)


@router.get("/web/{name}")
def asset(name: str) -> FileResponse:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail="not found")
    return FileResponse(WEB_DIR / name, media_type=media_type, headers={"Cache-Control": "no-cache"})

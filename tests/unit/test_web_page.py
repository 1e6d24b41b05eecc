"""GET / serves the web page and its two assets (no build step, nothing from other origins)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from app.api.main import create_app
from app.core.config import Settings


def _client() -> TestClient:
    return TestClient(create_app(Settings(_env_file=None)))  # no lifespan: no Redis needed


def test_index_and_assets() -> None:
    client = _client()
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/web/[^"]+)"', page.text)
    assert sorted(assets) == ["/web/app.js", "/web/style.css"]
    for path in assets:
        r = client.get(path)
        assert r.status_code == 200 and len(r.content) > 500
    assert client.get("/web/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/web/../core/config.py").status_code == 404
    assert client.get("/web/nothing.js").status_code == 404
    # Every element id the script looks up exists in the page.
    script = client.get("/web/app.js").text
    ids = set(re.findall(r'\$\("#([\w-]+)', script)) | set(
        re.findall(r'getElementById\("([\w-]+)"\)', script)
    )
    missing = [i for i in sorted(ids) if f'id="{i}"' not in page.text]
    assert not missing, missing


def test_page_is_not_in_the_api_spec() -> None:
    spec = _client().app.openapi()  # type: ignore[attr-defined]
    assert "/" not in spec["paths"] and not any(p.startswith("/web") for p in spec["paths"])

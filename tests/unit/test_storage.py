"""Local storage and its signed URLs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.core.errors import Forbidden
from app.core.storage import LocalStorage, UrlSigner, job_key


def test_signer_rejects_tamper_and_expiry() -> None:
    s = UrlSigner("k")
    exp = int(time.time()) + 60
    sig = s.sign("videos/a/video.mp4", exp)
    s.verify("videos/a/video.mp4", str(exp), sig)
    for key, e, g in [
        ("videos/b/video.mp4", str(exp), sig),
        ("videos/a/video.mp4", str(exp + 1), sig),
        ("videos/a/video.mp4", "x", sig),
        ("videos/a/video.mp4", str(exp), ""),
    ]:
        with pytest.raises(Forbidden):
            s.verify(key, e, g)
    with pytest.raises(Forbidden, match="expired"):
        s.verify("k", str(exp), s.sign("k", exp), now=exp + 1)
    assert UrlSigner("other").sign("k", exp) != s.sign("k", exp)


def test_local_storage_roundtrip(tmp_path: Path) -> None:
    st = LocalStorage(tmp_path, UrlSigner("k"), url_ttl_s=60)
    key = job_key("video_1", "video")
    st.put_bytes(key, b"abc")
    assert st.exists(key) and st.size(key) == 3 and st.get_bytes(key) == b"abc"
    url = st.presigned_url(key)
    assert url.startswith("/v1/files/videos/video_1/video.mp4?expires=")
    assert st.delete_prefix("videos/video_1") == 1 and not st.exists(key)
    with pytest.raises(Exception):
        st.put_bytes("../escape", b"x")

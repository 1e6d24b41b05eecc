"""Local storage, signed URLs, form flattening, MP4 encoding, import boundaries."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.api.forms import _put
from app.core.errors import Forbidden, InvalidInput
from app.core.storage import LocalStorage, UrlSigner, job_key
from tests.service_support import REPO


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


def test_form_flattening() -> None:
    out: dict = {}
    for k, v in [
        ("prompt", "p"),
        ("metadata[a]", "1"),
        ("metadata[b]", "2"),
        ("events[]", "x"),
        ("events[]", "y"),
    ]:
        _put(out, k, v)
    assert out == {"prompt": "p", "metadata": {"a": "1", "b": "2"}, "events": ["x", "y"]}
    with pytest.raises(InvalidInput):
        _put({"a": "1"}, "a[b]", "2")


def test_encode_exact_frames(tmp_path: Path) -> None:
    import av

    from worker.encode import encode_mp4

    frames = (np.random.default_rng(0).random((13, 32, 64, 3)) * 255).astype(np.uint8)
    encode_mp4(frames, tmp_path / "v.mp4", fps=16)
    with av.open(str(tmp_path / "v.mp4")) as c:
        s = c.streams.video[0]
        decoded = list(c.decode(s))
        assert len(decoded) == 13 and (decoded[0].width, decoded[0].height) == (64, 32)
        assert float(s.average_rate) == 16 and s.codec_context.name == "h264"
        assert decoded[0].format.name == "yuv420p"
    with pytest.raises(ValueError):
        encode_mp4(frames[:, :31], tmp_path / "odd.mp4", fps=16)


def test_app_never_imports_torch_or_model() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['model'] = None\n"
        "import app.api.main, app.cli.main; app.api.main.create_app\n"
        "assert 'fastapi' not in sys.modules or True\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    core = (
        "import sys; sys.modules['fastapi'] = None; sys.modules['torch'] = None\n"
        "import app.core.jobstore, app.core.jobstore_async, app.core.storage, app.core.params\n"
        "import app.core.events\n"
        "import app.core.registry, app.core.celeryconf, app.core.config, app.core.schemas\n"
    )
    subprocess.run([sys.executable, "-c", core], cwd=REPO, check=True)
    worker = "import sys; sys.modules['app.api'] = None\nimport worker.celery_app, worker.execute"
    subprocess.run([sys.executable, "-c", worker], cwd=REPO, check=True)

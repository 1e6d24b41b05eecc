"""`wanserve generate|status|list|cancel|models` as subprocesses against a live service."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.integration.eco_support import Service, decode_mp4, service_fixture

pytestmark = pytest.mark.integration


service = service_fixture("cli")  # a gateway with auth on and a key for it


ROOT = Path(__file__).resolve().parents[2]


def _env(service: Service) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANSERVE_")}
    env["WANSERVE_API_URL"] = service.url
    if service.api_key:
        env["WANSERVE_API_KEY"] = service.api_key
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def wanserve(service: Service, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", *args],
        cwd=ROOT,
        env=_env(service),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_generate_shows_progress_and_saves_a_playable_file(service: Service, tmp_path: Path) -> None:
    out = tmp_path / "ball.mp4"
    thumb = tmp_path / "ball.webp"
    r = wanserve(
        service, "generate", "a red ball rolling", "--model", "tiny-ti2v", "--size", "64x32",
        "--frames", "9", "--steps", "4", "--seed", "11", "--out", str(out), "--thumbnail", str(thumb),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    lines = r.stderr.splitlines()
    video_id = lines[0].strip()
    assert video_id.startswith("video_")
    # Progress lines (stderr is not a terminal here): queue then each denoising step, then done.
    assert any(re.search(r"step \d+/4$", line) for line in lines), r.stderr
    assert re.search(r"100% completed", r.stderr)
    assert "seed 11" in r.stderr
    frames, width, height, _fps = decode_mp4(out.read_bytes())
    assert (frames, width, height) == (9, 64, 32)
    with Image.open(thumb) as im:
        assert im.size == (64, 32)

    status = wanserve(service, "status", video_id)
    assert status.returncode == 0 and "completed" in status.stdout and "seed:      11" in status.stdout
    listed = wanserve(service, "list", "--limit", "5")
    assert listed.returncode == 0 and video_id in listed.stdout


def test_image_seconds_and_no_wait(service: Service, tmp_path: Path) -> None:
    image = tmp_path / "start.png"
    Image.new("RGB", (40, 40), (10, 200, 30)).save(image)
    r = wanserve(
        service, "generate", "green square", "--image", str(image), "--seconds", "0.3", "--steps", "2",
        "--no-wait",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    video_id = r.stdout.strip()
    job = httpx.get(f"{service.url}/v1/videos/{video_id}", headers=service.headers).json()
    assert job["parameters"]["has_image"] is True and job["parameters"]["num_frames"] == 9
    cancel = wanserve(service, "cancel", video_id)
    # Either it was still pending (cancelled / cancel requested) or it already finished (409).
    assert cancel.returncode == 0 or "already" in cancel.stderr


def test_refused_request_exits_nonzero_with_the_servers_message(service: Service) -> None:
    r = wanserve(service, "generate", "x", "--size", "99x99")
    assert r.returncode == 1
    assert "99x99 is not supported" in r.stderr and "32x32" in r.stderr
    missing = wanserve(service, "status", "video_nope")
    assert missing.returncode == 1 and "Not found" in missing.stderr
    down = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "models", "--url", "http://127.0.0.1:9"],
        cwd=ROOT, env=_env(service), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert down.returncode == 1 and "cannot reach" in down.stderr


def test_models_lists_constraints(service: Service) -> None:
    r = wanserve(service, "models")
    assert r.returncode == 0, r.stderr
    assert "tiny-ti2v" in r.stdout and "32x32" in r.stdout and "fps" in r.stdout
    js = wanserve(service, "models", "--json")
    assert '"num_frames"' in js.stdout


def _read_until(fd: int, pattern: str, timeout: float) -> str:
    buf = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096).decode(errors="replace")
            except OSError:
                break
            buf += chunk
            if re.search(pattern, buf):
                return buf
    raise AssertionError(f"no {pattern!r} in output: {buf!r}")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_offers_to_cancel(service: Service, tmp_path: Path) -> None:
    """On a terminal, Ctrl-C asks whether to cancel; 'y' cancels the job on the server."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "generate", "interrupt me", "--frames", "17", "--steps", "50",
         "--out", str(tmp_path / "never.mp4")],
        cwd=ROOT, env=_env(service), stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True,
        # a test run started in the background (no job control) inherits SIGINT ignored, and Python then
        # never raises KeyboardInterrupt: give the CLI the terminal's default, as a user's shell does
        preexec_fn=_default_sigint,
    )  # fmt: skip
    os.close(secondary)
    try:
        text = _read_until(primary, r"video_[0-9a-f]+", 60)
        video_id = re.search(r"video_[0-9a-f]+", text).group(0)  # type: ignore[union-attr]
        _read_until(primary, r"(queued|step \d+/50)", 60)
        proc.send_signal(signal.SIGINT)
        _read_until(primary, r"Cancel job .* \[y/N\]", 30)
        os.write(primary, b"y\n")
        assert proc.wait(timeout=60) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = httpx.get(f"{service.url}/v1/videos/{video_id}", headers=service.headers).json()["status"]
        if status == "cancelled":
            break
        time.sleep(0.2)
    assert status == "cancelled"
    assert not (tmp_path / "never.mp4").exists()

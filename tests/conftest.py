"""Shared fixtures: real redis-server, real Celery worker subprocess (tiny model), real gateway.

Session-scoped so the whole suite shares one Redis, one tiny-ti2v worker and one gateway:

- ``redis_server`` (`RedisServer`: ``.url``, ``.client()``, ``.stop()``/``.start()``) and ``redis_url``
- ``service_data_dir``: the data folder (storage, logs) those processes share
- ``tiny_worker``: a `ServiceProcess` serving ``tiny-ti2v`` (0.05 s debug delay per step, so
  cancellation between steps is observable)
- ``gateway``: a `ServiceProcess` with ``.url``, behind which ``tiny_worker`` serves
- ``client``: an ``httpx.Client`` on the gateway (per test)
- ``worker_factory(model=..., **settings)`` / ``gateway_factory(redis_url=..., **settings)``: start
  extra processes against the session Redis (or another one); extra workers are stopped at the
  end of the test, extra gateways at the end of the session.

Helpers (free ports, process handles, ``wait_status``) live in tests/service_support.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service_support import RedisServer, ServiceProcess, start_gateway, start_worker

STEP_DELAY_S = 0.05


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def service_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wanserve-data")


@pytest.fixture
def worker_factory(redis_url: str, service_data_dir: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Per test: extra workers are stopped when the test ends, so they never compete with
    ``tiny_worker`` for a queue in later tests. (The session worker uses its own factory.)"""
    started: list[ServiceProcess] = []

    def factory(model: str = "tiny-ti2v", **settings: Any) -> ServiceProcess:
        url = settings.pop("redis_url", redis_url)
        sp = start_worker(url, service_data_dir, model=model, **settings)
        started.append(sp)
        return sp

    yield factory
    for sp in started:
        sp.stop()


@pytest.fixture(scope="session")
def gateway_factory(redis_url: str, service_data_dir: Path) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def factory(**settings: Any) -> ServiceProcess:
        url = settings.pop("redis_url", redis_url)
        sp = start_gateway(url, service_data_dir, **settings)
        started.append(sp)
        return sp

    yield factory
    for sp in started:
        sp.stop()


@pytest.fixture(scope="session")
def tiny_worker(redis_url: str, service_data_dir: Path) -> Iterator[ServiceProcess]:
    sp = start_worker(redis_url, service_data_dir, model="tiny-ti2v", debug_step_delay_s=STEP_DELAY_S)
    yield sp
    sp.stop()


@pytest.fixture(scope="session")
def gateway(gateway_factory: Callable[..., ServiceProcess], tiny_worker: ServiceProcess) -> ServiceProcess:
    return gateway_factory(poll_after_ms=200)


@pytest.fixture
def client(gateway: ServiceProcess) -> Iterator[httpx.Client]:
    assert gateway.url is not None
    with httpx.Client(base_url=gateway.url, timeout=30) as c:
        yield c

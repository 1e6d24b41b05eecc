"""Property-based fuzzing of the real gateway from the committed OpenAPI spec (schemathesis):
no 5xx, and every response conforms to the documented schema.

The gateway runs against a private Redis in which a worker for ``tiny-ti2v`` is *announced*
(its preset + a long-lived heartbeat) but none runs, so generated submissions are validated and
queued without thousands of generations. Runtime is bounded by ``max_examples`` per operation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from app.core import registry
from model.presets import PRESETS
from tests.service_support import RedisServer, ServiceProcess, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.json")
MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    server = RedisServer().start()
    preset = PRESETS["tiny-ti2v"]
    registry.publish_heartbeat(
        server.client(),
        worker_id="fuzz-announced",
        preset_json=json.dumps(preset.to_dict()),
        model_id=preset.model_id,
        state="ready",
        device="cpu",
        current_job=None,
        ttl_s=3600,
    )
    gw = start_gateway(server.url, tmp_path_factory.mktemp("fuzz"), worker_ttl_s=3600, max_queued_jobs=0)
    yield gw
    gw.stop()
    server.close()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_fuzz(case: schemathesis.Case, fuzz_gateway: ServiceProcess) -> None:
    t0 = time.monotonic()
    case.call_and_validate(
        base_url=fuzz_gateway.url,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        timeout=10,
    )
    assert time.monotonic() - t0 < 10

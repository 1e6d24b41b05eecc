"""Step caching through the service: the create field `cache`, resolved in `parameters`, counted in `timings`.

The session worker serves tiny-ti2v, which has no TeaCache / MagCache calibration: first_block and
easycache run with their generic defaults, the calibrated types are refused with a 400.
"""

from __future__ import annotations

import httpx
import pytest

from tests.service_support import wait_status

pytestmark = pytest.mark.integration


def test_cached_job_reports_computed_and_skipped_steps(client: httpx.Client) -> None:
    body = {"prompt": "a red fox", "num_inference_steps": 6, "seed": 3}
    r = client.post("/v1/videos", json={**body, "cache": {"type": "first_block", "threshold": 1.5}})
    assert r.status_code == 202, r.text
    assert r.json()["parameters"]["cache"] == {"type": "first_block", "threshold": 1.5}
    done = wait_status(client, r.json()["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    t = done["timings"]
    assert t["steps_computed"] + t["steps_skipped"] == 6 and t["steps_skipped"] > 0
    assert t["steps_computed"] >= 2  # the first and the last step always run

    plain = client.post("/v1/videos", json=body)
    assert plain.status_code == 202 and plain.json()["parameters"]["cache"] is None
    done = wait_status(client, plain.json()["id"], {"completed", "failed"})
    assert done["status"] == "completed" and "steps_skipped" not in done["timings"]


def test_multipart_cache_fields_take_the_model_default(client: httpx.Client) -> None:
    r = client.post(
        "/v1/videos", files={"prompt": (None, "a cat"), "cache[type]": (None, "easycache")}
    )  # multipart, flattened the OpenAI-SDK way
    assert r.status_code == 202, r.text
    assert r.json()["parameters"]["cache"] == {"type": "easycache", "threshold": 0.05}
    client.delete(f"/v1/videos/{r.json()['id']}")


@pytest.mark.parametrize(
    ("cache", "field", "needle"),
    [
        ({"type": "teacache"}, "cache.type", "not calibrated for tiny-ti2v"),
        ({"type": "warp"}, "cache.type", "first_block"),
        ({"type": "first_block", "threshold": 3}, "cache.threshold", "(0, 2.0]"),
    ],
)
def test_bad_cache_is_a_400_naming_the_field(
    client: httpx.Client, cache: dict, field: str, needle: str
) -> None:
    r = client.post("/v1/videos", json={"prompt": "a fox", "cache": cache})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json"), r.text
    [err] = r.json()["errors"]
    assert err["field"] == field and needle in err["reason"], err


def test_models_list_the_cache_types_and_defaults(client: httpx.Client) -> None:
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert models["tiny-ti2v"]["cache_types"] == {"first_block": 0.05, "easycache": 0.05}

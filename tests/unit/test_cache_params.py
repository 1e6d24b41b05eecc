"""The create field `cache`: validated in the gateway (no torch), resolved values echoed."""

from __future__ import annotations

import pytest

from app.core.errors import FieldError, InvalidInput
from app.core.params import _cache, resolve
from app.core.schemas import ModelInfo, VideoCreate

INFO = ModelInfo(
    model_id="m1", task="ti2v", image_input="optional", sizes=[(32, 32)], default_size=(32, 32),
    default_num_frames=5, min_num_frames=1, max_num_frames=17, fps=16, default_num_steps=20,
    max_num_steps=50, default_shift=5.0, default_guidance_scale=[5.0],
    samplers=["unipc", "dpm++", "euler", "distill"],
    cache_types={"first_block": 0.05, "teacache": 0.15},
)  # fmt: skip


def _fields(**body: object) -> set[str]:
    with pytest.raises(InvalidInput) as info:
        resolve(VideoCreate.model_validate({"prompt": "x", **body}), INFO, has_image=False)
    return {e.field for e in info.value.errors}


def test_default_threshold_is_the_models_and_echoed() -> None:
    p = resolve(
        VideoCreate.model_validate({"prompt": "x", "cache": {"type": "teacache"}}), INFO, has_image=False
    )
    assert p.cache == {"type": "teacache", "threshold": 0.15}
    p = resolve(
        VideoCreate.model_validate({"prompt": "x", "cache": {"type": "first_block", "threshold": 0.1}}),
        INFO, has_image=False,
    )  # fmt: skip
    assert p.cache == {"type": "first_block", "threshold": 0.1}
    assert resolve(VideoCreate(prompt="x"), INFO, has_image=False).cache is None


def test_multipart_shapes_parse() -> None:
    as_fields = VideoCreate.model_validate({"prompt": "x", "cache": {"type": "teacache", "threshold": "0.2"}})
    as_json = VideoCreate.model_validate({"prompt": "x", "cache": '{"type": "teacache", "threshold": 0.2}'})
    assert as_fields.cache == as_json.cache
    assert as_fields.cache is not None and as_fields.cache.threshold == 0.2


@pytest.mark.parametrize(
    ("cache", "extra", "field"),
    [
        ({"type": "warp"}, {}, "cache.type"),
        ({"type": "magcache"}, {}, "cache.type"),  # not calibrated for this model
        ({"type": "first_block", "threshold": 0}, {}, "cache.threshold"),
        ({"type": "first_block", "threshold": 2.5}, {}, "cache.threshold"),
    ],
)
def test_bad_cache_names_the_field(cache: dict[str, object], extra: dict[str, object], field: str) -> None:
    assert field in _fields(cache=cache, **extra)


def test_distill_sampler_refuses_caching() -> None:
    # the few-step sampler lives on another branch; the rule is by name, checked after the sampler
    req = VideoCreate.model_validate({"prompt": "x", "cache": {"type": "first_block"}})
    errors: list[FieldError] = []
    assert _cache(req, INFO, "distill", errors) is None
    assert [e.field for e in errors] == ["cache"]


def test_cli_cache_option_builds_the_field() -> None:
    from app.cli.client.commands import _request_fields
    from app.cli.client.parser import build_parser

    def fields(*argv: str) -> dict[str, object]:
        return _request_fields(build_parser().parse_args(["generate", "x", *argv]))

    assert fields("--cache", "teacache:0.2")["cache"] == {"type": "teacache", "threshold": 0.2}
    assert fields("--cache", "easycache")["cache"] == {"type": "easycache"}
    assert "cache" not in fields()

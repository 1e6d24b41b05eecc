"""Style vocabulary, validation and prompt weaving (app/core/styles.py)."""

import json

import pytest
from pydantic import BaseModel, ValidationError

from app.core.styles import (
    STYLE_ORDER,
    STYLE_VOCABULARY,
    StyleCategory,
    StyleError,
    StyleSelection,
    apply_style,
    is_chinese,
    max_values,
    parse_style,
    style_catalog,
    style_from_form,
    style_phrases,
)


def test_vocabulary_is_complete_and_unique():
    assert set(STYLE_VOCABULARY) == set(StyleCategory)
    assert sorted(STYLE_ORDER) == sorted(StyleCategory)
    for cat, choices in STYLE_VOCABULARY.items():
        values = [c.value for c in choices]
        assert len(values) == len(set(values)), cat
        assert all(v == v.lower() and " " not in v and "-" not in v for v in values)
        assert all(c.phrase and c.phrase_zh and c.group for c in choices)
        assert len({c.phrase.lower() for c in choices}) == len(choices)


def test_category_keys():
    assert [c.value for c in StyleCategory] == [
        "lighting",
        "time_of_day",
        "shot_size",
        "composition",
        "lens",
        "camera_angle",
        "color_tone",
        "camera_movement",
    ]
    assert max_values(StyleCategory.SHOT_SIZE) == 1
    assert max_values(StyleCategory.LIGHTING) == 4  # source, quality, direction, contrast


def test_selection_normalises_values_and_order():
    s = StyleSelection.model_validate(
        {"Shot-Size": "Close-up", "lighting": ["backlight", "SOFT", "soft"], "colour_tone": "warm"}
    )
    assert s.shot_size == ("close_up",)
    assert s.lighting == ("soft", "backlight")  # vocabulary order, duplicates dropped
    assert s.color_tone == ("warm",)
    assert s.as_dict() == {
        "shot_size": ["close_up"],
        "lighting": ["soft", "backlight"],
        "color_tone": ["warm"],
    }
    assert StyleSelection.model_validate(s.as_dict()) == s
    assert StyleSelection.model_validate(json.dumps(s.as_dict())) == s
    assert StyleSelection().is_empty()
    assert StyleSelection.model_validate("").is_empty()


@pytest.mark.parametrize(
    ("raw", "field", "needle"),
    [
        ({"mood": "happy"}, "style", "allowed categories: lighting, time_of_day"),
        (
            {"lens": "zoom"},
            "style.lens",
            "allowed: ultra_wide, wide_angle, fisheye, normal, telephoto, macro",
        ),
        ({"shot_size": ["close_up", "wide"]}, "style.shot_size", "cannot be combined"),
        ({"lighting": ["soft", "hard"]}, "style.lighting", "'soft' and 'hard' cannot be combined"),
        ({"camera_movement": ["static", "pan_left"]}, "style.camera_movement", "'static' cannot be combined"),
        ({"camera_movement": ["pan_left", "pan_right"]}, "style.camera_movement", "cannot be combined"),
        ({"lens": 3}, "style.lens", "string or a list"),
        ({"lens": [3]}, "style.lens", "must be strings"),
        ({"color_tone": "warm", "colour_tone": "cool"}, "style", "given twice"),
        ("{not json", "style", "JSON object"),
        (["lens"], "style", "object mapping"),
    ],
)
def test_bad_style_lists_the_allowed(raw, field, needle):
    with pytest.raises(StyleError) as ei:
        parse_style(raw)
    assert len(ei.value.errors) == 1
    got_field, reason = ei.value.errors[0]
    assert got_field == field
    assert needle in reason
    assert not reason.startswith("Value error")


def test_style_inside_a_request_model_gives_field_locations():
    class Req(BaseModel):
        prompt: str
        style: StyleSelection | None = None

    assert Req(prompt="x").style is None
    assert Req.model_validate({"prompt": "x", "style": {"lens": "macro"}}).style == StyleSelection(
        lens=("macro",)
    )
    with pytest.raises(ValidationError) as ei:
        Req.model_validate({"prompt": "x", "style": {"lens": "zoom"}})
    err = ei.value.errors()[0]
    assert err["loc"] == ("style", "lens")
    assert "allowed: ultra_wide" in err["msg"]
    schema = Req.model_json_schema()
    lens = schema["$defs"]["StyleSelection"]["properties"]["lens"]
    assert lens["anyOf"][0]["enum"][:2] == ["ultra_wide", "wide_angle"]


def test_parse_style_passthrough():
    assert parse_style(None) is None
    s = StyleSelection(lens=("macro",))
    assert parse_style(s) is s


def test_apply_style_english():
    style = {
        "color_tone": "warm",
        "lighting": ["backlight", "soft"],
        "shot_size": "close_up",
        "lens": "telephoto",
    }
    out = apply_style("A cat plays the piano", style)
    assert (
        out == "A cat plays the piano. Close-up shot, telephoto lens, soft light, backlight, warm color tone."
    )
    # deterministic regardless of key order, and idempotent
    reordered = dict(reversed(list(style.items())))
    assert apply_style("A cat plays the piano", reordered) == out
    assert apply_style(out, style) == out


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("A dog runs.", "A dog runs. Wide shot, sunset."),
        ("A dog runs!", "A dog runs! Wide shot, sunset."),
        ("A dog runs,  ", "A dog runs. Wide shot, sunset."),
        ("  A dog runs;", "A dog runs. Wide shot, sunset."),
        ("", "Wide shot, sunset."),
        ('He says "go."', 'He says "go." Wide shot, sunset.'),
    ],
)
def test_apply_style_punctuation(prompt, expected):
    assert apply_style(prompt, {"shot_size": "wide", "time_of_day": "sunset"}) == expected


def test_apply_style_skips_phrases_already_present():
    style = {"shot_size": "close_up", "lighting": ["soft", "backlight"], "time_of_day": "night"}
    out = apply_style("Close-up shot of a fox at NIGHT, soft-light.", style)
    assert out == "Close-up shot of a fox at NIGHT, soft-light. Backlight."
    assert apply_style("A backlit fox in soft light, close up shot, night", style) == (
        "A backlit fox in soft light, close up shot, night"
    )
    # word boundaries: "nightclub" does not count as "night"
    assert apply_style("A nightclub", {"time_of_day": "night"}) == "A nightclub. Night."


def test_apply_style_chinese():
    style = {"shot_size": "close_up", "color_tone": "warm", "camera_movement": "push_in"}
    assert apply_style("一只猫在弹钢琴", style) == "一只猫在弹钢琴。特写，镜头缓缓推进，暖色调。"
    assert apply_style("一只猫在弹钢琴，特写。", style) == "一只猫在弹钢琴，特写。镜头缓缓推进，暖色调。"
    assert apply_style("A cat", style, language="zh") == "A cat。特写，镜头缓缓推进，暖色调。"
    assert apply_style("一只猫", style, language="en") == (
        "一只猫. Close-up shot, the camera slowly pushes in, warm color tone."
    )
    assert is_chinese("一只猫在弹钢琴, 4K")
    assert not is_chinese("A cat playing 钢琴 in a big concert hall")


def test_apply_style_without_style_keeps_prompt():
    assert apply_style("  as is ", None) == "  as is "
    assert apply_style("  as is ", {}) == "  as is "
    assert apply_style("  as is ", StyleSelection()) == "  as is "
    with pytest.raises(StyleError):
        apply_style("x", {"lens": "nope"})


def test_style_phrases():
    s = parse_style({"lens": "macro", "shot_size": "extreme_close_up"})
    assert style_phrases(s) == ["extreme close-up shot", "macro lens"]
    assert style_phrases(s, language="zh") == ["大特写", "微距镜头"]
    assert style_phrases(None) == []


def test_style_from_form():
    assert style_from_form([("prompt", "x")]) is None
    assert style_from_form([("style", '{"lens": "macro"}')]) == '{"lens": "macro"}'
    got = style_from_form(
        [("style[lens]", "macro"), ("style[lighting][]", "soft"), ("style[lighting][]", "rim")]
    )
    assert got == {"lens": "macro", "lighting": ["soft", "rim"]}
    assert parse_style(got) == StyleSelection(lens=("macro",), lighting=("soft", "rim"))
    with pytest.raises(StyleError):
        style_from_form([("style", "{}"), ("style[lens]", "macro")])


def test_catalog_matches_vocabulary():
    cat = style_catalog()
    assert cat.object == "list"
    assert cat.order == [c.value for c in STYLE_ORDER]
    by_name = {c.category: c for c in cat.data}
    assert set(by_name) == {c.value for c in StyleCategory}
    assert [v.value for v in by_name["lens"].values] == [
        c.value for c in STYLE_VOCABULARY[StyleCategory.LENS]
    ]
    assert by_name["lighting"].max_values == 4
    json.dumps(cat.model_dump())


def test_style_job_fields():
    from app.core.errors import InvalidInput
    from app.core.styles import PromptExtensionInfo, style_job_fields

    style = parse_style({"lens": "macro"})
    fields = style_job_fields(
        "a bee", style, prompt_extend=False, language="auto", extend_available=False, model_id="m"
    )
    assert fields == {
        "style": {"lens": ["macro"]},
        "revised_prompt": "a bee. Macro lens.",
        "prompt_extend": False,
        "prompt_extension": None,
    }
    plain = style_job_fields(
        "a bee", None, prompt_extend=True, language="zh", extend_available=True, model_id="m"
    )
    assert plain["style"] is None and plain["revised_prompt"] == "a bee"
    assert plain["prompt_extension"] == PromptExtensionInfo(status="pending", language="zh")
    with pytest.raises(InvalidInput) as ei:
        style_job_fields(
            "a bee", None, prompt_extend=True, language="auto", extend_available=False, model_id="m"
        )
    assert ei.value.status == 400
    assert ei.value.errors[0].field == "prompt_extend"
    assert "no extension model is configured" in ei.value.errors[0].reason


def test_extend_route_follows_settings():
    from app.core.config import Settings
    from app.core.extenders import EXTEND_QUEUE, EXTEND_TASK, extend_route

    queued = Settings(_env_file=None, prompt_extend_queue=True)
    assert extend_route(True, queued) == {"task": EXTEND_TASK, "queue": EXTEND_QUEUE}
    assert extend_route(False, queued) == {}
    assert extend_route(True, Settings(_env_file=None)) == {}

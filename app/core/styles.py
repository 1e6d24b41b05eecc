"""Cinematic style controls: the ``style`` request object, prompt weaving, the catalogue and the
job-record fields for style and prompt extension.

Wan2.2 was trained with aesthetic labels (lighting, time of day, shot size, composition, lens,
camera angle, colour tone, camera movement). A client picks values from our vocabulary instead of
writing prompt craft; ``apply_style`` appends the matching phrases to the prompt in a fixed order.

This module is the public face of the feature; the parts live in ``app.core.style_vocab`` (values,
phrases, groups), ``app.core.style_selection`` (the request object and its validation) and
``app.core.style_weave`` (the prompt weaving).

FastAPI-free and torch-free (``app.core``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.core.errors import InvalidInput
from app.core.style_selection import (
    StyleError,
    StyleSelection,
    allowed_values,
    max_values,
    parse_style,
    style_from_form,
)
from app.core.style_vocab import (
    CATEGORY_ALIASES,
    CATEGORY_DESCRIPTIONS,
    STYLE_ORDER,
    STYLE_VOCABULARY,
    StyleCategory,
    StyleChoice,
)
from app.core.style_weave import apply_style, is_chinese, style_phrases

__all__ = [
    "CATEGORY_ALIASES",
    "CATEGORY_DESCRIPTIONS",
    "STYLE_ORDER",
    "STYLE_VOCABULARY",
    "PromptExtensionInfo",
    "StyleCatalogPublic",
    "StyleCategory",
    "StyleChoice",
    "StyleError",
    "StyleSelection",
    "allowed_values",
    "apply_style",
    "is_chinese",
    "max_values",
    "parse_style",
    "style_catalog",
    "style_from_form",
    "style_job_fields",
    "style_phrases",
]


# ---------------------------------------------------------------------------------------------
# Public catalogue (GET /v1/styles)


class StyleValuePublic(BaseModel):
    value: str
    phrase: str
    phrase_zh: str
    group: str


class StyleCategoryPublic(BaseModel):
    category: str
    description: str
    max_values: int
    values: list[StyleValuePublic]


class StyleCatalogPublic(BaseModel):
    object: Literal["list"] = "list"
    order: list[str] = Field(description="The order in which categories are woven into the prompt.")
    data: list[StyleCategoryPublic]


def style_catalog() -> StyleCatalogPublic:
    return StyleCatalogPublic(
        order=[c.value for c in STYLE_ORDER],
        data=[
            StyleCategoryPublic(
                category=cat.value,
                description=CATEGORY_DESCRIPTIONS[cat],
                max_values=max_values(cat),
                values=[
                    StyleValuePublic(value=c.value, phrase=c.phrase, phrase_zh=c.phrase_zh, group=c.group)
                    for c in STYLE_VOCABULARY[cat]
                ],
            )
            for cat in StyleCategory
        ],
    )


# ---------------------------------------------------------------------------------------------
# Prompt extension state (job record and video object)


class PromptExtensionInfo(BaseModel):
    """A requested prompt extension: ``pending`` until the worker ran it, then ``extended`` or
    ``skipped`` (the job went on with the original, styled prompt; ``reason`` says why)."""

    status: Literal["pending", "extended", "skipped"] = "pending"
    language: Literal["auto", "en", "zh"] = "auto"  # as requested; the worker records en / zh
    reason: str | None = None
    model: str | None = None
    elapsed_s: float | None = None
    seed: int | None = None  # sampling seed (None when decoding greedily)


def style_job_fields(
    prompt: str,
    style: StyleSelection | None,
    *,
    prompt_extend: bool,
    language: Literal["auto", "en", "zh"],
    extend_available: bool,
    model_id: str,
) -> dict[str, Any]:
    """The job-record fields for a create request's style and extension options.

    Raises ``InvalidInput`` (400, field ``prompt_extend``) when extension is asked for but no live
    worker of ``model_id`` has an extension model. ``revised_prompt`` starts as the styled prompt;
    a worker that extends the prompt overwrites it.
    """
    if prompt_extend and not extend_available:
        raise InvalidInput.field(
            "prompt_extend",
            f"prompt extension is not available for {model_id}: no extension model is configured on its "
            "workers (set WANSERVE_PROMPT_EXTEND_MODEL_PATH)",
        )
    return {
        "style": style.as_dict() if style is not None and not style.is_empty() else None,
        "revised_prompt": apply_style(prompt, style),
        "prompt_extend": prompt_extend,
        "prompt_extension": PromptExtensionInfo(language=language) if prompt_extend else None,
    }

"""The ``style`` request object: `StyleSelection`, its validation and parsing (JSON or form fields).

Request shape (every key optional; a value is one string or a list of strings)::

    {"shot_size": "close_up", "lighting": ["soft", "backlight"], "color_tone": "warm"}

Keys are snake_case American spelling (``color_tone``; ``colour_tone`` is accepted as an alias).
Values are case-insensitive and ``-``/space are read as ``_`` (``"Close-up"`` == ``"close_up"``).
Inside a category each value belongs to a *group* (light source, light quality, ...); at most one
value per group may be chosen, so contradictions such as ``soft`` + ``hard`` are rejected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.core.style_vocab import (
    CATEGORY_ALIASES,
    CATEGORY_DESCRIPTIONS,
    STYLE_ORDER,
    STYLE_VOCABULARY,
    StyleCategory,
    StyleChoice,
)

_CATEGORY_NAMES: Mapping[str, StyleCategory] = {c.value: c for c in StyleCategory}
_CHOICES: dict[StyleCategory, dict[str, StyleChoice]] = {
    cat: {c.value: c for c in choices} for cat, choices in STYLE_VOCABULARY.items()
}


def allowed_values(category: StyleCategory) -> list[str]:
    return [c.value for c in STYLE_VOCABULARY[category]]


def max_values(category: StyleCategory) -> int:
    """How many values a category takes at once: one per group."""
    return len({c.group for c in STYLE_VOCABULARY[category]})


def _norm_token(raw: str) -> str:
    return re.sub(r"[\s\-]+", "_", raw.strip().lower())


def _json_schema(category: StyleCategory) -> WithJsonSchema:
    enum = {"type": "string", "enum": allowed_values(category)}
    n = max_values(category)
    options: list[dict[str, Any]] = [enum]
    if n > 1:
        options.append({"type": "array", "items": enum, "maxItems": n, "uniqueItems": True})
    return WithJsonSchema({"anyOf": options, "description": CATEGORY_DESCRIPTIONS[category]})


_Values = tuple[str, ...]


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as is (no "Value error, " prefix)."""
    return PydanticCustomError("invalid_style", message.replace("{", "(").replace("}", ")"))


class StyleSelection(BaseModel):
    """The validated ``style`` object. Each field holds vocabulary values in vocabulary order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lighting: Annotated[_Values, _json_schema(StyleCategory.LIGHTING)] = ()
    time_of_day: Annotated[_Values, _json_schema(StyleCategory.TIME_OF_DAY)] = ()
    shot_size: Annotated[_Values, _json_schema(StyleCategory.SHOT_SIZE)] = ()
    composition: Annotated[_Values, _json_schema(StyleCategory.COMPOSITION)] = ()
    lens: Annotated[_Values, _json_schema(StyleCategory.LENS)] = ()
    camera_angle: Annotated[_Values, _json_schema(StyleCategory.CAMERA_ANGLE)] = ()
    color_tone: Annotated[_Values, _json_schema(StyleCategory.COLOR_TONE)] = ()
    camera_movement: Annotated[_Values, _json_schema(StyleCategory.CAMERA_MOVEMENT)] = ()

    @model_validator(mode="before")
    @classmethod
    def _check_categories(cls, data: Any) -> Any:
        if isinstance(data, str):  # multipart sends the object as a JSON string
            try:
                data = json.loads(data) if data.strip() else {}
            except json.JSONDecodeError as exc:
                raise _invalid(f"style must be a JSON object: {exc.msg}") from None
            except RecursionError:
                raise _invalid("style is nested too deeply") from None
        if isinstance(data, StyleSelection):
            return data
        if not isinstance(data, Mapping):
            raise _invalid("style must be an object mapping categories to values")
        allowed = ", ".join(c.value for c in StyleCategory)
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = _norm_token(str(key))
            cat = CATEGORY_ALIASES.get(name) or _CATEGORY_NAMES.get(name)
            if cat is None:
                raise _invalid(f"unknown style category '{key}'; allowed categories: {allowed}")
            if str(cat) in out:
                raise _invalid(f"style category '{cat}' given twice")
            out[str(cat)] = value
        return out

    @field_validator(*(c.value for c in StyleCategory), mode="before")
    @classmethod
    def _check_values(cls, value: Any, info: ValidationInfo) -> tuple[str, ...]:
        category = StyleCategory(str(info.field_name))
        items: list[Any]
        if value is None:
            items = []
        elif isinstance(value, str):
            items = [value]
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise _invalid(f"{category} must be a string or a list of strings")
        choices = _CHOICES[category]
        picked: dict[str, StyleChoice] = {}
        for item in items:
            if not isinstance(item, str):
                raise _invalid(f"{category} values must be strings")
            token = _norm_token(item)
            if token not in choices:
                raise _invalid(
                    f"unknown {category} value '{item}'; allowed: {', '.join(allowed_values(category))}"
                )
            picked[token] = choices[token]
        by_group: dict[str, str] = {}
        for choice in picked.values():
            other = by_group.setdefault(choice.group, choice.value)
            if other != choice.value:
                raise _invalid(
                    f"{category} values '{other}' and '{choice.value}' cannot be combined "
                    f"(at most one {choice.group} value)"
                )
        if "static" in by_group and len(by_group) > 1:
            raise _invalid("camera_movement 'static' cannot be combined with a camera move")
        return tuple(c.value for c in STYLE_VOCABULARY[category] if c.value in picked)

    def is_empty(self) -> bool:
        return not any(getattr(self, c.value) for c in StyleCategory)

    def choices(self) -> list[StyleChoice]:
        """The selected choices in weaving order."""
        out: list[StyleChoice] = []
        for cat in STYLE_ORDER:
            out.extend(_CHOICES[cat][v] for v in getattr(self, cat.value))
        return out

    def as_dict(self) -> dict[str, list[str]]:
        """Compact JSON form (non-empty categories only), as stored in the job record."""
        return {c.value: list(getattr(self, c.value)) for c in STYLE_ORDER if getattr(self, c.value)}


class StyleError(ValueError):
    """A bad ``style`` object; ``errors`` is ``[(field, reason), ...]`` for a 400 response."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{f}: {r}" for f, r in errors))


def parse_style(raw: Any, *, field: str = "style") -> StyleSelection | None:
    """Validate a raw ``style`` value (object, JSON string or None) outside a pydantic model."""
    if raw is None or isinstance(raw, StyleSelection):
        return raw
    try:
        return StyleSelection.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            loc = ".".join([field, *(str(p) for p in err["loc"])])
            errors.append((loc, str(err["msg"])))
        raise StyleError(errors) from None


def style_from_form(form: Iterable[tuple[str, str]]) -> Any:
    """Collect ``style`` from multipart fields: ``style`` (JSON text) or ``style[category]``.

    Repeated ``style[lighting]`` fields (or ``style[lighting][]``) build a list. Returns None
    when no style field is present; the caller validates the result with ``parse_style``.
    """
    whole: str | None = None
    parts: dict[str, list[str]] = {}
    for key, value in form:
        if key == "style":
            whole = value
            continue
        m = re.fullmatch(r"style\[([^\]]+)\](?:\[\d*\])?", key)
        if m:
            parts.setdefault(m.group(1), []).append(value)
    if whole is not None and parts:
        raise StyleError([("style", "send either 'style' as JSON or 'style[category]' fields, not both")])
    if whole is not None:
        return whole
    if not parts:
        return None
    return {k: v[0] if len(v) == 1 else v for k, v in parts.items()}

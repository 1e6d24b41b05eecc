"""Weaving a style into the prompt: `apply_style` appends the chosen phrases as one sentence.

Weaving order (``STYLE_ORDER``): shot_size, camera_angle, lens, composition, camera_movement,
lighting, time_of_day, color_tone; inside a category, vocabulary order. The result does not depend
on the order the client sent. A phrase already in the prompt is not repeated, so applying the same
style twice gives the same text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from app.core.style_selection import StyleSelection, parse_style
from app.core.style_vocab import StyleChoice

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_EN_END = (".", "!", "?", "…", '."', '!"', '?"', ".'", ".)")
_ZH_END = ("。", "！", "？", "…", "”", "」")


def is_chinese(text: str) -> bool:
    """True for a prompt written mainly in Chinese (a CJK character weighs ~3 Latin letters)."""
    cjk = len(_CJK.findall(text))
    return cjk > 0 and cjk * 3 >= len(_LATIN.findall(text))


def _norm_text(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[\-_]", " ", text.lower())).strip()


def _present(choice: StyleChoice, norm_prompt: str, raw_prompt: str) -> bool:
    if choice.phrase_zh in raw_prompt:
        return True
    for wording in (choice.phrase, *choice.aliases):
        pattern = r"(?<![a-z0-9])" + re.escape(_norm_text(wording)) + r"(?![a-z0-9])"
        if re.search(pattern, norm_prompt):
            return True
    return False


def style_phrases(style: StyleSelection | None, *, language: Literal["en", "zh"] = "en") -> list[str]:
    """The phrases for a style in weaving order (used by the prompt extender's instructions)."""
    if style is None:
        return []
    return [c.phrase_zh if language == "zh" else c.phrase for c in style.choices()]


def apply_style(
    prompt: str,
    style: StyleSelection | Mapping[str, Any] | None,
    *,
    language: Literal["auto", "en", "zh"] = "auto",
) -> str:
    """Append the style's phrases to ``prompt`` as one sentence, skipping ones already present.

    English: ``"A cat on a sofa. Close-up shot, soft light, warm color tone."``
    Chinese (``language="zh"``, or ``auto`` with a Chinese prompt): ``"沙发上的猫。特写，柔光，暖色调。"``
    With no style (or an empty one) the prompt is returned unchanged.
    """
    selection = style if isinstance(style, StyleSelection) or style is None else parse_style(style)
    if selection is None or selection.is_empty():
        return prompt
    text = prompt.strip()
    zh = language == "zh" or (language == "auto" and is_chinese(text))
    norm = _norm_text(text)
    phrases: list[str] = []
    for choice in selection.choices():
        phrase = choice.phrase_zh if zh else choice.phrase
        if not _present(choice, norm, text) and phrase not in phrases:
            phrases.append(phrase)
    if not phrases:
        return text
    if zh:
        sentence = "，".join(phrases) + "。"
    else:
        joined = ", ".join(phrases)
        sentence = joined[0].upper() + joined[1:] + "."
    body = text.rstrip(" ,;:，；：、")
    if not body:
        return sentence
    if body.endswith(_ZH_END):
        return body + sentence
    if body.endswith(_EN_END):
        return body + ("" if zh else " ") + sentence
    return body + ("。" if zh else ". ") + sentence

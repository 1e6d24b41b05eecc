"""The extension LLM's instructions and the clean-up of its answers (written for wanserve).

Two system prompts: text-only requests (a full shot description within a word range) and
image + text requests (motion only: the text LLM cannot see the image, which already fixes the
look). Both keep the user's subject and actions, never contradict given style settings and ask
for English or Simplified Chinese. ``clean_output`` strips reasoning blocks, preambles and
quotes, checks the language and bounds the length.
"""

from __future__ import annotations

import re
from typing import Literal

from app.core.styles import StyleSelection, is_chinese, style_phrases

Language = Literal["en", "zh"]

_MAX_INPUT_CHARS = 2000  # longer user prompts are cut before they reach the LLM


# ---------------------------------------------------------------------------------------------
# System prompts (written for wanserve)

_TEXT_RULES = """\
You are a cinematographer writing shot descriptions for a text-to-video model. Rewrite the user's \
idea into one detailed paragraph that the model can film.
Rules:
1. Keep every subject and every action the user asked for. Do not add new main characters and do \
not drop anything the user mentioned.
2. Describe the motion as it unfolds: what moves, in which direction, how fast, and what happens \
next. If the user gave no motion, choose a natural one. Background elements may move as well.
3. Add concrete visual detail: the subject's appearance and clothing, the setting, background \
objects, weather and light.
4. Name the shot in film terms: shot size, camera angle, camera movement, light source and \
direction, time of day, colour tone. Use at most four such terms unless the user listed more, and \
never contradict a setting the user gave.
5. If the user names an art style (anime, watercolour, pixel art, 3D render...), state it first \
and leave out photographic camera terms.
6. Describe only what can be seen. No feelings, metaphors, sounds or commentary.
7. Length: {length}.
8. {language_rule} Output only the rewritten prompt: no title, no quotes, no explanation."""

_IMAGE_RULES = """\
You write prompts for an image-to-video model, which animates a still picture supplied by the \
user. You cannot see the picture; it already fixes how the subject and the scene look.
Rewrite the user's request into a short description of what happens in the clip.
Rules:
1. Keep the subject and every action or camera move the user asked for.
2. Focus on movement: what moves, how, in which direction and how fast; the camera's movement; \
small motion in the background (wind, water, people, light).
3. Do not describe static appearance in detail; mention the subject only to say what it does.
4. If the request is long, condense it to its main action. If it is only a few words or empty, \
invent a gentle, plausible motion for the main subject and the background.
5. Never contradict a camera or lighting setting the user gave.
6. Length: {length}.
7. {language_rule} Output only the prompt: no title, no quotes, no explanation."""

_LANGUAGE_RULE: dict[Language, str] = {
    "en": "Write in English, even if the request is in another language.",
    "zh": "Write in Simplified Chinese (请用简体中文输出), even if the request is in another language.",
}


def _length_rule(language: Language, limit: int, image: bool) -> str:
    low = min(40, limit // 2) if not image else 0
    if language == "zh":
        return f"{low}-{limit} Chinese characters" if low else f"at most {limit} Chinese characters"
    return f"{low}-{limit} words" if low else f"at most {limit} words"


def system_prompt(*, language: Language, image: bool, limit: int) -> str:
    template = _IMAGE_RULES if image else _TEXT_RULES
    return template.format(
        length=_length_rule(language, limit, image), language_rule=_LANGUAGE_RULE[language]
    )


def build_messages(
    prompt: str,
    *,
    language: Language,
    image: bool,
    limit: int,
    style: StyleSelection | None = None,
) -> list[dict[str, str]]:
    """The chat messages sent to the LLM."""
    user = prompt.strip()[:_MAX_INPUT_CHARS] or "(no text: animate the picture)"
    phrases = style_phrases(style, language=language)
    if phrases:
        sep = "，" if language == "zh" else ", "
        user += f"\n\nRequired look (include each of these exactly): {sep.join(phrases)}"
    return [
        {"role": "system", "content": system_prompt(language=language, image=image, limit=limit)},
        {"role": "user", "content": user},
    ]


# ---------------------------------------------------------------------------------------------
# Output clean-up

_THINK = re.compile(r"<think>.*?</think>", re.S)
_PREAMBLE = re.compile(
    r"^\s*(?:\*\*)?(?:here is |here's )?(?:the )?(?:rewritten|extended|expanded|final|improved)?\s*"
    r"(?:video )?(?:prompt|description)(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*",
    re.I,
)
_ZH_PREAMBLE = re.compile(r"^\s*(?:改写|扩写|扩展)?后?的?(?:提示词|描述)\s*[:：]\s*")
_QUOTES = "\"'“”‘’「」『』`"


def _cut(text: str, language: Language, limit: int) -> str:
    """Bound the length, cutting at the last sentence end inside the bound when there is one."""
    if language == "zh":
        if len(text) <= limit:
            return text
        head = text[:limit]
        end = max(head.rfind(p) for p in "。！？")
        return head[: end + 1] if end >= limit // 3 else head.rstrip("，、；： ") + "。"
    words = text.split(" ")
    if len(words) <= limit:
        return text
    head = " ".join(words[:limit])
    end = max(head.rfind(p) for p in ".!?")
    return head[: end + 1] if end >= len(head) // 3 else head.rstrip(",;: ") + "."


def clean_output(raw: str, *, language: Language, limit: int) -> tuple[str | None, str | None]:
    """Turn the raw LLM answer into a prompt; returns ``(prompt, None)`` or ``(None, reason)``."""
    text = _THINK.sub(" ", raw)
    if "<think>" in text:
        return None, "the model did not finish its reasoning block"
    text = _ZH_PREAMBLE.sub("", _PREAMBLE.sub("", text.strip()))
    text = re.sub(r"\s+", " ", text).strip().strip(_QUOTES).strip()
    if not text:
        return None, "the model returned an empty answer"
    if language == "zh" and not re.search(r"[\u3400-\u9fff]", text):
        return None, "the model did not answer in Chinese"
    if language == "en" and is_chinese(text):
        return None, "the model did not answer in English"
    return _cut(text, language, limit), None

"""Prompt extension: rewrite a short prompt into a detailed one with a local chat LLM.

Any instruction-tuned causal LM with a chat template works (loaded with ``AutoModelForCausalLM``
and ``AutoTokenizer`` from a local folder, never downloaded). Tested choices: Qwen2.5-Instruct
0.5B/1.5B/3B/7B (3B+ for good Chinese; 0.5B/1.5B are fast enough for CPU), and tiny random
Qwen2 models in the unit tests.

The extender never fails a job: on a load error, a generation error, an unusable answer or a
timeout it returns the original prompt with ``extended=False`` and a ``reason``. Generation runs
in a helper thread under a wall-clock deadline enforced by a stopping criterion (checked after
every token) and by the caller's ``join`` timeout, so a stuck model cannot hold up the job.

``revise_prompt`` is what the worker calls: style phrases → (optional) extension → style phrases
again (so the chosen style survives the rewrite without being repeated).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from app.core.styles import StyleSelection, apply_style, is_chinese, style_phrases

log = logging.getLogger(__name__)

Language = Literal["en", "zh"]
LanguageOpt = Literal["auto", "en", "zh"]

_MAX_INPUT_CHARS = 2000  # longer user prompts are cut before they reach the LLM


@dataclass(frozen=True)
class ExtendConfig:
    """How to load and run the extension model (built from ``Settings`` by the worker)."""

    model_path: str
    device: str = "cpu"
    dtype: str = "auto"  # "auto" | "float32" | "bfloat16" | "float16"
    timeout_s: float = 60.0  # wall-clock budget for one generation
    max_new_tokens: int = 400
    min_new_tokens: int = 0
    max_words: int = 200  # length bound for text-only requests (words; characters for Chinese)
    max_words_image: int = 100  # length bound when an input image is given
    do_sample: bool = False  # greedy by default; sampling is seeded per request
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.05


@dataclass(frozen=True)
class ExtendResult:
    prompt: str  # the extended prompt, or the original one when ``extended`` is False
    extended: bool
    reason: str | None = None  # why the original prompt was kept
    language: Language = "en"
    seed: int | None = None  # sampling seed (None when greedy)
    elapsed_s: float = 0.0
    model: str | None = None

    def as_record(self) -> dict[str, Any]:
        """Small JSON-able summary for the job record."""
        return {
            "extended": self.extended,
            "reason": self.reason,
            "language": self.language,
            "seed": self.seed,
            "elapsed_s": round(self.elapsed_s, 3),
            "model": self.model,
        }


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


# ---------------------------------------------------------------------------------------------
# The extender


class _Deadline(StoppingCriteria):
    """Stops generation once the deadline passes or the caller gives up."""

    def __init__(self, deadline: float, abandon: threading.Event) -> None:
        self.deadline = deadline
        self.abandon = abandon
        self.fired = False

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        hit = self.abandon.is_set() or time.monotonic() >= self.deadline
        self.fired = self.fired or hit
        return torch.full((input_ids.shape[0],), hit, dtype=torch.bool, device=input_ids.device)


@dataclass
class _Run:
    text: str | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class PromptExtender:
    """One loaded chat model. Thread-safe; load once (``load`` or lazily on first ``extend``)."""

    def __init__(self, config: ExtendConfig) -> None:
        self.config = config
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()  # one generation at a time; held by the helper thread
        self._model: Any = None
        self._tokenizer: Any = None
        self._load_error: str | None = None

    @property
    def name(self) -> str:
        return Path(self.config.model_path).name or self.config.model_path

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def load_error(self) -> str | None:
        return self._load_error

    def load(self) -> None:
        """Load tokenizer and model once. A failure is remembered and raised again as RuntimeError."""
        with self._load_lock:
            if self._model is not None:
                return
            if self._load_error is not None:
                raise RuntimeError(self._load_error)
            try:
                self._model, self._tokenizer = self._load()
            except Exception as exc:
                self._load_error = f"could not load the extension model: {type(exc).__name__}: {exc}"
                log.exception("prompt extension model failed to load from %s", self.config.model_path)
                raise RuntimeError(self._load_error) from exc

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(self.config.model_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no config.json in {path}")
        t0 = time.monotonic()
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template (use an instruction-tuned chat model)")
        dtype: Any = self.config.dtype if self.config.dtype == "auto" else getattr(torch, self.config.dtype)
        model: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True)
        model.to(self.config.device)
        model.eval()
        log.info("prompt extension model %s loaded in %.1fs", path, time.monotonic() - t0)
        return model, tokenizer

    def extend(
        self,
        prompt: str,
        *,
        language: LanguageOpt = "auto",
        image: bool = False,
        style: StyleSelection | None = None,
        seed: int | None = None,
    ) -> ExtendResult:
        """Rewrite ``prompt``; never raises. On any problem the original prompt comes back."""
        t0 = time.monotonic()
        lang: Language = language if language != "auto" else ("zh" if is_chinese(prompt) else "en")
        limit = self.config.max_words_image if image else self.config.max_words
        used_seed = None
        if self.config.do_sample:
            used_seed = seed if seed is not None else random.randrange(2**31)  # noqa: S311

        def fallback(reason: str) -> ExtendResult:
            log.warning("prompt extension skipped: %s", reason)
            return ExtendResult(prompt, False, reason, lang, used_seed, time.monotonic() - t0, self.name)

        try:
            self.load()
        except RuntimeError as exc:
            return fallback(str(exc))
        messages = build_messages(prompt, language=lang, image=image, limit=limit, style=style)
        budget = self.config.timeout_s - (time.monotonic() - t0)
        if budget <= 0 or not self._gen_lock.acquire(timeout=budget):
            return fallback(f"timed out after {self.config.timeout_s:g}s waiting for the extension model")
        run = _Run()
        abandon = threading.Event()
        deadline = _Deadline(t0 + self.config.timeout_s, abandon)
        thread = threading.Thread(
            target=self._generate_locked,
            args=(messages, used_seed, deadline, run),
            name="prompt-extend",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException:
            self._gen_lock.release()
            raise
        # A small grace beyond the deadline lets the stopping criterion end the run cleanly.
        run.done.wait(max(0.0, t0 + self.config.timeout_s - time.monotonic()) + 0.5)
        if not run.done.is_set() or deadline.fired:
            abandon.set()
            return fallback(f"timed out after {self.config.timeout_s:g}s")
        if run.error is not None:
            return fallback(f"generation failed: {type(run.error).__name__}: {run.error}")
        text, reason = clean_output(run.text or "", language=lang, limit=limit)
        if text is None:
            return fallback(reason or "unusable answer")
        return ExtendResult(text, True, None, lang, used_seed, time.monotonic() - t0, self.name)

    def _generate_locked(
        self, messages: list[dict[str, str]], seed: int | None, deadline: _Deadline, run: _Run
    ) -> None:
        try:
            run.text = self._generate(messages, seed, deadline)
        except BaseException as exc:  # reported to the caller, never raised in the thread
            run.error = exc
        finally:
            self._gen_lock.release()
            run.done.set()

    def _generate(self, messages: list[dict[str, str]], seed: int | None, deadline: _Deadline) -> str:
        from transformers import GenerationConfig

        tok, model, cfg = self._tokenizer, self._model, self.config
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
        sampling: dict[str, Any] = {"do_sample": False}
        if cfg.do_sample:
            sampling = {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p}
        gen_config = GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=cfg.max_new_tokens,
            min_new_tokens=cfg.min_new_tokens,
            repetition_penalty=cfg.repetition_penalty,
            eos_token_id=eos,
            pad_token_id=pad,
            **sampling,
        )
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = model.generate(
                **enc, generation_config=gen_config, stopping_criteria=StoppingCriteriaList([deadline])
            )
        new_tokens = out[0, enc["input_ids"].shape[1] :]
        return str(tok.decode(new_tokens, skip_special_tokens=True))


# ---------------------------------------------------------------------------------------------
# Process-wide cache and the worker entry point

_CACHE: dict[ExtendConfig, PromptExtender] = {}
_CACHE_LOCK = threading.Lock()


def get_extender(config: ExtendConfig) -> PromptExtender:
    """The process-wide extender for ``config`` (the model is loaded once per process)."""
    with _CACHE_LOCK:
        ext = _CACHE.get(config)
        if ext is None:
            ext = _CACHE[config] = PromptExtender(config)
        return ext


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def model_path_usable(model_path: str | None) -> tuple[bool, str | None]:
    """Cheap availability check (no loading): ``(available, reason_if_not)``."""
    if not model_path:
        return False, "no prompt extension model is configured (set WANSERVE_PROMPT_EXTEND_MODEL_PATH)"
    if not (Path(model_path) / "config.json").is_file():
        return False, f"the prompt extension model path has no config.json: {model_path}"
    return True, None


@dataclass(frozen=True)
class RevisedPrompt:
    prompt: str  # what goes to the text encoder
    extension: ExtendResult | None  # None when extension was not requested


def revise_prompt(
    prompt: str,
    *,
    style: StyleSelection | None = None,
    extend: bool = False,
    extender: PromptExtender | None = None,
    language: LanguageOpt = "auto",
    image: bool = False,
    seed: int | None = None,
) -> RevisedPrompt:
    """Style → optional extension → style again. Without an extender, ``extend`` falls back."""
    styled = apply_style(prompt, style)
    if not extend:
        return RevisedPrompt(styled, None)
    if extender is None:
        lang: Language = language if language != "auto" else ("zh" if is_chinese(prompt) else "en")
        result = ExtendResult(prompt, False, "no prompt extension model is configured on this worker", lang)
    else:
        result = extender.extend(styled, language=language, image=image, style=style, seed=seed)
    if not result.extended:
        return RevisedPrompt(styled, result)
    return RevisedPrompt(apply_style(result.prompt, style, language=result.language), result)

"""Prompt extension: rewrite a short prompt into a detailed one with a local chat LLM.

Any instruction-tuned causal LM with a chat template works (loaded with ``AutoModelForCausalLM``
and ``AutoTokenizer`` from a local folder, never downloaded). Intended for Qwen2.5-Instruct
0.5B-7B (see docs/styles.md); the tests exercise the same path with tiny random Qwen2 models.

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
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from app.core.config import Settings
from app.core.jobstore import JobStore
from app.core.schemas import JobRecord
from app.core.styles import PromptExtensionInfo, StyleSelection, apply_style, is_chinese
from worker.prompt_rules import Language, build_messages, clean_output

log = logging.getLogger(__name__)

LanguageOpt = Literal["auto", "en", "zh"]


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
# The extender


class _Deadline:
    """Stops generation once the deadline passes or the caller gives up (checked per token)."""

    def __init__(self, deadline: float, abandon: threading.Event) -> None:
        self.deadline = deadline
        self.abandon = abandon
        self.fired = False

    def hit(self) -> bool:
        self.fired = self.fired or self.abandon.is_set() or time.monotonic() >= self.deadline
        return self.fired


@cache
def _criterion_class() -> Any:
    """A transformers ``StoppingCriteria`` around `_Deadline` (imported lazily: this module is
    imported by every worker, and transformers only matters where extension is configured)."""
    import torch
    from transformers import StoppingCriteria

    class DeadlineCriterion(StoppingCriteria):
        def __init__(self, deadline: _Deadline) -> None:
            self.deadline = deadline

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            hit = self.deadline.hit()
            return torch.full((input_ids.shape[0],), hit, dtype=torch.bool, device=input_ids.device)

    return DeadlineCriterion


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
        import torch
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
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

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
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                generation_config=gen_config,
                stopping_criteria=StoppingCriteriaList([_criterion_class()(deadline)]),
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


# ---------------------------------------------------------------------------------------------
# Worker integration (settings → extender; job record → final prompt)


def config_from_settings(settings: Settings) -> ExtendConfig | None:
    if not settings.prompt_extend_model_path:
        return None
    return ExtendConfig(
        model_path=settings.prompt_extend_model_path,
        device=settings.prompt_extend_device,
        dtype=settings.prompt_extend_dtype,
        timeout_s=settings.prompt_extend_timeout_s,
        max_new_tokens=settings.prompt_extend_max_new_tokens,
        max_words=settings.prompt_extend_max_words,
        max_words_image=max(20, settings.prompt_extend_max_words // 2),
        do_sample=settings.prompt_extend_sample,
    )


def load_extender(settings: Settings) -> PromptExtender | None:
    """The worker's extender, loaded now; None when none is configured or it fails to load
    (the worker then reports extension as unavailable and keeps serving)."""
    config = config_from_settings(settings)
    if config is None:
        return None
    ext = get_extender(config)
    try:
        ext.load()
    except RuntimeError:
        return None  # already logged with the traceback
    return ext


def prepare_job_prompt(
    rec: JobRecord, *, extender: PromptExtender | None, store: JobStore | None
) -> tuple[str, dict[str, float]]:
    """The prompt to encode for ``rec``, plus timings; runs a requested extension once.

    The outcome is written to the record (``revised_prompt``, ``prompt_extension``) so a
    redelivered job reuses it instead of asking the LLM again.
    """
    info = rec.prompt_extension
    if not rec.prompt_extend or (info is not None and info.status != "pending"):
        return rec.revised_prompt or rec.prompt, {}
    style = StyleSelection.model_validate(rec.style) if rec.style else None
    revised = revise_prompt(
        rec.prompt,
        style=style,
        extend=True,
        extender=extender,
        language=info.language if info is not None else "auto",
        image=rec.input_key is not None,
        seed=rec.params.seed,
    )
    res = revised.extension
    assert res is not None
    new_info = PromptExtensionInfo(
        status="extended" if res.extended else "skipped",
        language=res.language,
        reason=res.reason,
        model=res.model,
        elapsed_s=round(res.elapsed_s, 3),
        seed=res.seed,
    )
    if store is not None:
        store.set_fields(rec.id, {"revised_prompt": revised.prompt, "prompt_extension": new_info})
    return revised.prompt, {"prompt_extension": round(res.elapsed_s, 4)}

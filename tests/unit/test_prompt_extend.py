"""Prompt extension (worker/prompt_extend.py, worker/prompt_rules.py) with a tiny random chat
model built in the test.

No downloads: the tokenizer is a `tokenizers` WordLevel model wrapped in PreTrainedTokenizerFast
with a chat template, the model a 2-layer Qwen2 with random weights; both are saved to a tmp dir
and loaded back by path, exactly as a real local model would be.
"""

import threading
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from app.core.styles import StyleSelection, parse_style  # noqa: E402
from tests.style_support import WORDS, build_tokenizer, save_model  # noqa: E402
from worker.prompt_extend import (  # noqa: E402
    ExtendConfig,
    ExtendResult,
    PromptExtender,
    clear_cache,
    get_extender,
    revise_prompt,
)
from worker.prompt_rules import build_messages, clean_output, system_prompt  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_model(tmp_path_factory.mktemp("tiny-chat"), build_tokenizer()))


def _config(model_dir, **kw):
    base = {"model_path": model_dir, "timeout_s": 30.0, "max_new_tokens": 12, "min_new_tokens": 6}
    return ExtendConfig(**(base | kw))


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def test_load_and_generate_from_path(model_dir):
    ext = PromptExtender(_config(model_dir))
    res = ext.extend("a cat runs")
    assert res.extended, res.reason
    assert res.reason is None and res.language == "en" and res.model
    assert res.prompt and res.prompt != "a cat runs"
    assert set(res.prompt.rstrip(".").split()) <= set(WORDS)  # words from the vocabulary only
    assert "<|im_end|>" not in res.prompt
    assert ext.loaded
    model = ext._model
    again = ext.extend("a cat runs")
    assert ext._model is model  # loaded once
    assert again.prompt == res.prompt  # greedy is deterministic
    assert res.as_record()["extended"] is True


def test_seeded_sampling_is_reproducible(model_dir):
    ext = PromptExtender(_config(model_dir, do_sample=True, temperature=1.5, top_p=1.0))
    a = ext.extend("a dog walks", seed=7)
    b = ext.extend("a dog walks", seed=7)
    assert a.extended and a.seed == 7
    assert a.prompt == b.prompt
    drawn = ext.extend("a dog walks")
    assert isinstance(drawn.seed, int)


def test_get_extender_is_cached(model_dir):
    cfg = _config(model_dir)
    assert get_extender(cfg) is get_extender(cfg)
    assert get_extender(cfg) is not get_extender(_config(model_dir, max_new_tokens=5))


def test_wrong_language_falls_back(model_dir):
    res = PromptExtender(_config(model_dir)).extend("a cat runs", language="zh")
    assert not res.extended
    assert res.prompt == "a cat runs"
    assert "Chinese" in (res.reason or "")


def test_missing_model_falls_back_and_remembers(tmp_path):
    ext = PromptExtender(ExtendConfig(model_path=str(tmp_path / "nope")))
    res = ext.extend("a cat")
    assert (res.prompt, res.extended) == ("a cat", False)
    assert "could not load" in (res.reason or "")
    assert ext.load_error
    assert ext.extend("a cat").reason == res.reason


def test_tokenizer_without_chat_template_falls_back(tmp_path):
    path = save_model(tmp_path, build_tokenizer(chat_template=None))
    res = PromptExtender(_config(str(path))).extend("a cat")
    assert not res.extended and "chat template" in (res.reason or "")


def test_generation_error_falls_back(model_dir, monkeypatch):
    ext = PromptExtender(_config(model_dir))
    ext.load()

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(ext._model, "generate", boom)
    res = ext.extend("a fox jumps")
    assert (res.prompt, res.extended) == ("a fox jumps", False)
    assert res.reason == "generation failed: RuntimeError: boom"
    # the lock was released: the next call works again
    monkeypatch.undo()
    assert ext.extend("a fox jumps").extended


def test_slow_generation_hits_the_deadline(model_dir, monkeypatch):
    ext = PromptExtender(_config(model_dir, timeout_s=0.3, max_new_tokens=200, min_new_tokens=200))
    ext.load()
    real_forward = ext._model.forward

    def slow_forward(*a, **k):
        time.sleep(0.05)
        return real_forward(*a, **k)

    monkeypatch.setattr(ext._model, "forward", slow_forward)
    t0 = time.monotonic()
    res = ext.extend("a cat runs")
    assert time.monotonic() - t0 < 2.0
    assert (res.prompt, res.extended) == ("a cat runs", False)
    assert "timed out" in (res.reason or "")


def test_hung_generation_is_abandoned(model_dir, monkeypatch):
    ext = PromptExtender(_config(model_dir, timeout_s=0.2))
    ext.load()
    release = threading.Event()
    monkeypatch.setattr(ext, "_generate", lambda *a, **k: release.wait(10) and "never")
    t0 = time.monotonic()
    res = ext.extend("a cat runs")
    assert time.monotonic() - t0 < 1.5
    assert not res.extended and "timed out" in (res.reason or "")
    # while the stuck run holds the model, a second request also times out instead of piling up
    res2 = ext.extend("a dog")
    assert not res2.extended and "timed out" in (res2.reason or "")
    release.set()
    for _ in range(100):  # the abandoned run ends and hands the model back
        if ext._gen_lock.acquire(blocking=False):
            ext._gen_lock.release()
            break
        time.sleep(0.02)
    else:
        pytest.fail("generation lock never released")


@pytest.mark.parametrize(
    ("raw", "lang", "limit", "expected"),
    [
        ("<think>hmm</think> A cat runs.", "en", 50, "A cat runs."),
        ('Rewritten prompt: "A cat runs."', "en", 50, "A cat runs."),
        ("**Prompt:** A cat\n\nruns.", "en", 50, "A cat runs."),
        ("One two three. Four five six seven eight nine.", "en", 5, "One two three."),
        ("one two three four five six", "en", 3, "one two three."),
        ("提示词：一只猫在奔跑。它跳过栅栏，尾巴摇摆。", "zh", 12, "一只猫在奔跑。"),
    ],
)
def test_clean_output(raw, lang, limit, expected):
    assert clean_output(raw, language=lang, limit=limit) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "lang", "reason"),
    [
        ("", "en", "empty"),
        ("<think>still thinking", "en", "reasoning"),
        ("一只猫在奔跑", "en", "English"),
        ("A cat runs", "zh", "Chinese"),
    ],
)
def test_clean_output_rejects(raw, lang, reason):
    text, why = clean_output(raw, language=lang, limit=50)
    assert text is None and reason in (why or "")


def test_messages_and_system_prompts():
    style = parse_style({"shot_size": "close_up", "lighting": "soft"})
    msgs = build_messages("a cat", language="en", image=False, limit=120, style=style)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "40-120 words" in msgs[0]["content"] and "English" in msgs[0]["content"]
    assert "close-up shot, soft light" in msgs[1]["content"]
    img = system_prompt(language="zh", image=True, limit=80)
    assert "image-to-video" in img and "at most 80 Chinese characters" in img and "简体中文" in img
    assert build_messages("", language="en", image=True, limit=80)[1]["content"].startswith("(no text")


class _StubExtender(PromptExtender):
    def __init__(self, answer):
        super().__init__(ExtendConfig(model_path="stub"))
        self.answer = answer
        self.seen = None

    def extend(self, prompt, *, language="auto", image=False, style=None, seed=None):
        self.seen = (prompt, language, image, style, seed)
        if self.answer is None:
            return ExtendResult(prompt, False, "timed out after 1s")
        return ExtendResult(self.answer, True, None, "en")


def test_revise_prompt_weaves_style_around_extension():
    style = StyleSelection.model_validate({"shot_size": "close_up", "color_tone": "warm"})
    assert revise_prompt("a cat", style=style).prompt == "a cat. Close-up shot, warm color tone."
    assert revise_prompt("a cat").extension is None

    stub = _StubExtender("Close-up shot of a cat licking its paw on a sofa.")
    out = revise_prompt("a cat", style=style, extend=True, extender=stub, image=True, seed=3)
    assert out.prompt == "Close-up shot of a cat licking its paw on a sofa. Warm color tone."
    assert out.extension is not None and out.extension.extended
    assert stub.seen == ("a cat. Close-up shot, warm color tone.", "auto", True, style, 3)

    failed = revise_prompt("a cat", style=style, extend=True, extender=_StubExtender(None))
    assert failed.prompt == "a cat. Close-up shot, warm color tone."
    assert failed.extension is not None and failed.extension.reason == "timed out after 1s"

    none = revise_prompt("一只猫", extend=True, extender=None)
    assert none.prompt == "一只猫"
    assert none.extension is not None and not none.extension.extended
    assert none.extension.language == "zh" and "no prompt extension model" in (none.extension.reason or "")


# ---------------------------------------------------------------------------------------------
# Worker integration: settings → extender, job record → prompt


def _record(**kw):
    from tests.record_support import tiny_params, tiny_record

    base = {"id": "video_x", "status": "in_progress", "prompt": "a cat", "created_at": 0.0}
    return tiny_record(**(base | {"params": tiny_params(fps=8, seed=11)} | kw))


class _Store:
    def __init__(self):
        self.writes = []

    def set_fields(self, job_id, fields):
        self.writes.append((job_id, fields))


def test_prepare_job_prompt_without_extension():
    from worker.prompt_extend import prepare_job_prompt

    store = _Store()
    rec = _record(revised_prompt="a cat. Close-up shot.", style={"shot_size": ["close_up"]})
    assert prepare_job_prompt(rec, extender=None, store=store) == ("a cat. Close-up shot.", {})
    assert prepare_job_prompt(_record(), extender=None, store=store) == ("a cat", {})
    assert store.writes == []


def test_prepare_job_prompt_runs_extension_once():
    from app.core.styles import PromptExtensionInfo
    from worker.prompt_extend import prepare_job_prompt

    store = _Store()
    stub = _StubExtender("A grey cat stretches on a sofa.")
    rec = _record(
        style={"color_tone": ["warm"]},
        revised_prompt="a cat. Warm color tone.",
        prompt_extend=True,
        prompt_extension=PromptExtensionInfo(language="en"),
        input_key="videos/video_x/input.png",
    )
    prompt, timings = prepare_job_prompt(rec, extender=stub, store=store)
    assert prompt == "A grey cat stretches on a sofa. Warm color tone."
    assert set(timings) == {"prompt_extension"}
    assert stub.seen == ("a cat. Warm color tone.", "en", True, StyleSelection(color_tone=("warm",)), 11)
    [(job_id, fields)] = store.writes
    assert job_id == "video_x" and fields["revised_prompt"] == prompt
    assert fields["prompt_extension"].status == "extended"

    # a redelivered job keeps the recorded outcome and does not ask the LLM again
    done = _record(prompt_extend=True, revised_prompt=prompt, prompt_extension=fields["prompt_extension"])
    stub.seen = None
    assert prepare_job_prompt(done, extender=stub, store=store) == (prompt, {})
    assert stub.seen is None


def test_prepare_job_prompt_skips_without_extender():
    from worker.prompt_extend import prepare_job_prompt

    store = _Store()
    rec = _record(prompt_extend=True, style={"lens": ["macro"]}, revised_prompt="a cat. Macro lens.")
    prompt, _ = prepare_job_prompt(rec, extender=None, store=store)
    assert prompt == "a cat. Macro lens."
    info = store.writes[0][1]["prompt_extension"]
    assert info.status == "skipped" and "no prompt extension model" in info.reason


def test_load_extender_from_settings(model_dir, tmp_path):
    from app.core.config import Settings
    from worker.prompt_extend import config_from_settings, load_extender

    assert config_from_settings(Settings()) is None
    assert load_extender(Settings()) is None
    s = Settings(prompt_extend_model_path=model_dir, prompt_extend_timeout_s=5, prompt_extend_max_words=80)
    cfg = config_from_settings(s)
    assert cfg is not None and cfg.timeout_s == 5 and cfg.max_words == 80 and cfg.max_words_image == 40
    ext = load_extender(s)
    assert ext is not None and ext.loaded
    assert load_extender(Settings(prompt_extend_model_path=str(tmp_path / "missing"))) is None

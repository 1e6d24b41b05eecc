"""A tiny random chat model for prompt-extension tests (no downloads).

The tokenizer is a byte-level BPE (like Qwen's) trained in code on a tiny corpus and wrapped in
``PreTrainedTokenizerFast`` with a chat template; the model is a 2-layer Qwen2 with random weights
whose output layer only favours whole-word tokens, so greedy decoding "says" vocabulary words.
Both are saved to a folder and loaded back by path, exactly like a real local model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = (
    "a the cat dog fox runs walks jumps slowly quickly across through over field forest street city "
    "night day light soft warm cool camera shot close-up wide pans pushes in left right red blue "
    "green sky water wind trees rain snow with and of on at its tail moves looks turns head"
).split()
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(chat_template: str | None = CHAT_TEMPLATE) -> Any:
    """A byte-level BPE tokenizer (like Qwen's) trained in code on a tiny corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([" " + " ".join(WORDS)] * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    if chat_template:
        tok.chat_template = chat_template
    return tok


def save_model(path: Any, tok: Any) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    # Only whole-word tokens get non-zero output rows (scaled up), so greedy decoding of the
    # random model "says" vocabulary words rather than byte fragments or special tokens.
    vocab = tok.get_vocab()
    words = [vocab["\u0120" + w] for w in WORDS if "\u0120" + w in vocab]
    assert len(words) > 30
    keep = torch.zeros(len(tok), dtype=torch.bool)
    keep[words] = True
    with torch.no_grad():
        model.lm_head.weight[~keep] = 0.0
        model.lm_head.weight[keep] *= 20.0
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)


def build_tiny_chat_model(path: Any) -> Path:
    """Build and save the tokenizer + model into ``path``; returns it."""
    return save_model(path, build_tokenizer())

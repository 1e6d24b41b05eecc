"""Tokenizers that need no sentencepiece model: bytes, or words of a small fixed vocabulary.

Used by the tiny presets and the demo model in place of the UMT5 sentencepiece tokenizer.

* `ByteTokenizer`: the id layout follows ByT5 (`transformers.ByT5Tokenizer`): pad 0, eos 1, unk 2,
  UTF-8 byte b -> b + 3, a vocabulary of 384 ids (the top 125 are unused "extra ids"). So a text
  encoder trained with ByT5Tokenizer works with this one and vice versa.
* `WordTokenizer`: lower-cased words and punctuation marks of a fixed vocabulary (pad 0, eos 1,
  unk 2, the vocabulary from 3). Every word outside the vocabulary is the one `unk` id, so a text
  encoder that learned `unk` says nothing treats a word it never saw ("cruises", "corner") as what
  it is to it: noise around the words it knows. The demo model's aligned encoder reads these.

The call shape mirrors what the pipeline uses of a Hugging Face tokenizer:
`tok(texts, padding="max_length", truncation=True, max_length=512, add_special_tokens=True,
return_tensors="pt") -> {"input_ids": LongTensor [B, L], "attention_mask": LongTensor [B, L]}`.

A checkpoint folder marks its tokenizer with a file named `MARKER_FILE` (bytes) or
`WORD_MARKER_FILE` (words; the file holds the vocabulary).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import torch

__all__ = ["MARKER_FILE", "WORD_MARKER_FILE", "ByteTokenizer", "WordTokenizer", "load_marked_tokenizer"]

MARKER_FILE = "wanserve_byte_tokenizer.json"
WORD_MARKER_FILE = "wanserve_word_tokenizer.json"


class _PaddedTokenizer:
    """What both tokenizers share: special ids and the padded batch call."""

    pad_token_id = 0
    eos_token_id = 1
    unk_token_id = 2
    offset = 3
    model_max_length = 512

    def token_ids(self, text: str) -> list[int]:
        """The ids of ``text``, without `</s>`."""
        raise NotImplementedError

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self.token_ids(text)
        return [*ids, self.eos_token_id] if add_special_tokens else ids

    def __call__(
        self,
        texts: str | list[str],
        *,
        padding: bool | str = "max_length",
        truncation: bool = True,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        return_tensors: str | None = "pt",
        return_attention_mask: bool = True,
    ) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        max_len = max_length or self.model_max_length
        rows = []
        for t in texts:
            ids = self.encode(t, add_special_tokens=add_special_tokens)
            if truncation and len(ids) > max_len:
                # Like HF T5 tokenizers: cut the text and keep the trailing </s>.
                ids = ids[: max_len - 1] + [self.eos_token_id] if add_special_tokens else ids[:max_len]
            rows.append(ids)
        width = max_len if padding == "max_length" else max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        out = {"input_ids": input_ids}
        if return_attention_mask:
            out["attention_mask"] = mask
        return out


class ByteTokenizer(_PaddedTokenizer):
    """UTF-8 bytes as tokens; `</s>` appended, right padding with 0.

    With ``known_words``, every word (run of letters and digits) outside that vocabulary is left out
    before the bytes are taken ("a red circle zooms off to the left" -> "a red circle to the left"):
    for an encoder trained on a small closed vocabulary, a word it never saw says nothing it could
    read, and left in, it shifts every byte position after it."""

    vocab_size = 384
    _WORD = re.compile(r"[^\W_]+")

    def __init__(self, known_words: Iterable[str] | None = None) -> None:
        self.known_words: frozenset[str] | None = (
            None if known_words is None else frozenset(w.lower() for w in known_words)
        )

    def filter(self, text: str) -> str:
        """``text`` without its unknown words (unchanged when there is no vocabulary)."""
        if self.known_words is None:
            return text
        known = self.known_words
        kept = self._WORD.sub(lambda m: m.group(0) if m.group(0).lower() in known else "", text)
        kept = re.sub(r"\s+([,.!?;:])", r"\1", re.sub(r"\s+", " ", kept))
        return re.sub(r"^[\s,.!?;:]+", "", kept).rstrip()

    def token_ids(self, text: str) -> list[int]:
        return [b + self.offset for b in self.filter(text).encode("utf-8")]

    def decode(self, ids: list[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        out = bytes(i - self.offset for i in ids if self.offset <= i < 256 + self.offset)
        return out.decode("utf-8", errors="replace")

    # -- folder round trip ----------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        body: dict[str, object] = {"tokenizer": "wanserve-byte", "vocab_size": self.vocab_size}
        if self.known_words is not None:
            body["known_words"] = sorted(self.known_words)
        (folder / MARKER_FILE).write_text(json.dumps(body) + "\n")

    @classmethod
    def is_byte_tokenizer_dir(cls, folder: str | Path) -> bool:
        return (Path(folder) / MARKER_FILE).is_file()

    @classmethod
    def from_dir(cls, folder: str | Path) -> ByteTokenizer:
        text = (Path(folder) / MARKER_FILE).read_text().strip()
        body = json.loads(text) if text else {}
        known = body.get("known_words") if isinstance(body, dict) else None
        if known is not None and not isinstance(known, list):
            raise ValueError(f"{MARKER_FILE}: known_words is not a list of words")
        return cls(None if known is None else [str(w) for w in known])


class WordTokenizer(_PaddedTokenizer):
    """Lower-cased words (runs of letters and digits) and single punctuation marks; `</s>` appended,
    right padding with 0; a word outside ``vocab`` is `unk`."""

    _TOKEN = re.compile(r"[^\W_]+|[^\w\s]|_")

    def __init__(self, vocab: Iterable[str]) -> None:
        self.vocab: tuple[str, ...] = tuple(dict.fromkeys(vocab))
        bad = [w for w in self.vocab if self.split(w) != [w]]
        if bad:
            raise ValueError(f"vocabulary entries that are not single tokens: {bad[:5]}")
        self._ids = {w: i + self.offset for i, w in enumerate(self.vocab)}
        self.vocab_size = len(self.vocab) + self.offset

    @classmethod
    def split(cls, text: str) -> list[str]:
        return cls._TOKEN.findall(text.lower())

    def token_ids(self, text: str) -> list[int]:
        return [self._ids.get(w, self.unk_token_id) for w in self.split(text)]

    def decode(self, ids: list[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        words = []
        for i in ids:
            if i >= self.offset:
                words.append(self.vocab[i - self.offset])
            elif i == self.unk_token_id or not skip_special_tokens:
                words.append({0: "<pad>", 1: "</s>", 2: "<unk>"}[i])
        return " ".join(words)

    # -- folder round trip ----------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        body = {"tokenizer": "wanserve-word", "vocab_size": self.vocab_size, "vocab": list(self.vocab)}
        (folder / WORD_MARKER_FILE).write_text(json.dumps(body, indent=0) + "\n")

    @classmethod
    def from_dir(cls, folder: str | Path) -> WordTokenizer:
        body = json.loads((Path(folder) / WORD_MARKER_FILE).read_text())
        if body.get("tokenizer") != "wanserve-word" or not isinstance(body.get("vocab"), list):
            raise ValueError(f"{WORD_MARKER_FILE} is not a wanserve word vocabulary")
        return cls(str(w) for w in body["vocab"])


def load_marked_tokenizer(folder: str | Path) -> ByteTokenizer | WordTokenizer | None:
    """The tokenizer a folder marks as one of these, or None (a Hugging Face tokenizer folder)."""
    if (Path(folder) / WORD_MARKER_FILE).is_file():
        return WordTokenizer.from_dir(folder)
    if ByteTokenizer.is_byte_tokenizer_dir(folder):
        return ByteTokenizer.from_dir(folder)
    return None

"""A byte-level tokenizer that needs no vocabulary files.

Used by the tiny presets and the demo model in place of the UMT5 sentencepiece tokenizer. The id
layout follows ByT5 (`transformers.ByT5Tokenizer`): pad 0, eos 1, unk 2, UTF-8 byte b -> b + 3,
a vocabulary of 384 ids (the top 125 are unused "extra ids"). So a text encoder trained with
ByT5Tokenizer works with this one and vice versa.

The call shape mirrors what the pipeline uses of a Hugging Face tokenizer:
`tok(texts, padding="max_length", truncation=True, max_length=512, add_special_tokens=True,
return_tensors="pt") -> {"input_ids": LongTensor [B, L], "attention_mask": LongTensor [B, L]}`.

A checkpoint folder marks its tokenizer as this one with a file named `MARKER_FILE`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["MARKER_FILE", "ByteTokenizer"]

MARKER_FILE = "wanserve_byte_tokenizer.json"


class ByteTokenizer:
    """UTF-8 bytes as tokens; `</s>` appended, right padding with 0."""

    pad_token_id = 0
    eos_token_id = 1
    unk_token_id = 2
    offset = 3
    vocab_size = 384
    model_max_length = 512

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [b + self.offset for b in text.encode("utf-8")]
        if add_special_tokens:
            ids.append(self.eos_token_id)
        return ids

    def decode(self, ids: list[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = bytes(i - self.offset for i in ids if self.offset <= i < 256 + self.offset)
        return out.decode("utf-8", errors="replace")

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

    # -- folder round trip ----------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER_FILE).write_text(
            json.dumps({"tokenizer": "wanserve-byte", "vocab_size": self.vocab_size}) + "\n"
        )

    @classmethod
    def is_byte_tokenizer_dir(cls, folder: str | Path) -> bool:
        return (Path(folder) / MARKER_FILE).is_file()

"""The worker's LoRAs: tensors read once into a byte-bounded LRU, checked at start.

A job names LoRAs from `WANSERVE_LORA_DIR` (the gateway has validated names, models and scales);
the pipeline applies them for that job only and removes them after (`model.lora`), so a job
without LoRAs is bit-identical to one before any LoRA job. Reading a rank-64 A14B LoRA from disk
costs seconds; keeping recent ones in RAM makes switching between jobs cost only the apply.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from app.core.loras import catalog
from app.core.schemas import LoraRef

log = logging.getLogger(__name__)


class LoraCache:
    """name -> `model.lora.LoraSpec`, least recently used evicted beyond `max_bytes`."""

    def __init__(self, root: Path | None, max_bytes: int) -> None:
        self.root, self.max_bytes = root, max_bytes
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # files read from disk (for tests and metrics)

    @property
    def nbytes(self) -> int:
        return sum(spec.nbytes for spec in self._items.values())

    def _path(self, name: str) -> Path:
        if self.root is None:
            from model.lora import LoraError

            raise LoraError("this worker has no LoRA folder (WANSERVE_LORA_DIR)")
        single = self.root / f"{name}.safetensors"
        return single if single.is_file() else self.root / name

    def get(self, name: str) -> Any:
        from model.lora import load_lora

        with self._lock:
            if name in self._items:
                self._items.move_to_end(name)
                return self._items[name]
        spec = load_lora(self._path(name), name=name)
        self.loads += 1
        with self._lock:
            self._items[name] = spec
            while len(self._items) > 1 and self.nbytes > self.max_bytes:
                self._items.popitem(last=False)
            if self.nbytes > self.max_bytes:  # a single LoRA over the budget is used, not kept
                self._items.pop(name, None)
        return spec

    def job_loras(self, refs: list[LoraRef]) -> list[tuple[Any, float]]:
        """(LoraSpec, scale) pairs for `pipe.generate(loras=...)`."""
        return [(self.get(r.name), r.scale) for r in refs]


def check_lora_dir(cache: LoraCache, pipe: Any) -> dict[str, str]:
    """Load every LoRA of the folder and check it fits the served model; returns name -> problem.

    Broken files are logged and reported, never fatal: the worker serves the rest.
    """
    from model.lora import LoraError, check_fits

    problems: dict[str, str] = {}
    for info in catalog(cache.root):
        if info.models is not None and pipe.preset.model_id not in info.models:
            continue  # meant for another model
        if info.error is not None:
            problems[info.id] = info.error
            continue
        try:
            spec = cache.get(info.id)
            for i, expert in enumerate(pipe.experts):
                weights = spec.for_expert(i, len(pipe.experts))
                if weights is not None:
                    check_fits(expert, weights)
        except LoraError as e:
            problems[info.id] = str(e)
    for name, problem in problems.items():
        log.error("LoRA %s is unusable: %s", name, problem)
    return problems

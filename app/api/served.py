"""The served models as the create path sees them: `served_models`, reused for a moment.

Reading the worker registry costs three Redis round trips and a preset parse per worker; every
create needs it. A create only asks "is this model served, and with which preset?", and a model
keeps being accepted for ``model_grace_s`` after its last worker anyway, so an answer up to
``ttl_s`` old changes nothing a caller can see. A model missing from the cached answer is always
looked up afresh (a worker that just registered is served at once). `/v1/models`, the metrics and
the admin view keep reading the registry directly.
"""

from __future__ import annotations

import time

import redis.asyncio as aredis

from app.core.registry import WorkerInfo, served_models
from app.core.schemas import ModelInfo

Served = dict[str, tuple[ModelInfo, list[WorkerInfo]]]


class ServedModels:
    def __init__(self, r: aredis.Redis, worker_ttl_s: float, *, ttl_s: float = 1.0) -> None:
        self.r, self.worker_ttl_s, self.ttl_s = r, worker_ttl_s, ttl_s
        self._served: Served = {}
        self._at = float("-inf")

    async def get(self, model_id: str) -> Served:
        """The served models; fresh unless the last read, younger than ``ttl_s``, has ``model_id``."""
        if model_id not in self._served or time.monotonic() - self._at > self.ttl_s:
            self._served = await served_models(self.r, self.worker_ttl_s)
            self._at = time.monotonic()
        return self._served

"""Job priority: ``high`` / ``normal`` / ``low``, served in that order within one model's queue.

Two places carry the order:

- the broker message: Celery's Redis transport keeps one list per priority step of a queue and
  pops them in step order with a single ``BRPOP`` (lowest number first), so a worker that asks for
  its next job always gets the highest waiting priority. ``BROKER_PRIORITY`` maps ours onto the
  transport's default steps ``0, 3, 6``. Separate queues per priority were rejected: the transport
  rotates the queues a worker consumes (``round_robin``), which would serve them in turns.
- the queued zset that answers ``queue_position`` and ``GET /v1/queue``: its score is the priority
  band plus the enqueue time in ms, so ``ZRANK`` counts the jobs that will start first.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

from app.core.errors import FieldError, Forbidden

Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
RANK: dict[str, int] = {p: i for i, p in enumerate(PRIORITIES)}  # 0 = served first
BROKER_PRIORITY: dict[str, int] = {"high": 0, "normal": 3, "low": 6}  # kombu Redis: lowest pops first
_BAND_MS = 10**13  # wider than any epoch in ms until the year 2286; doubles stay exact below 2**53


# kombu's Redis transport names a queue's priority lists ``queue`` (step 0) and ``queue\x06\x16<step>``
_PRIORITY_SEP = "\x06\x16"


def broker_lists(queue: str) -> list[str]:
    """Every Redis list the transport keeps for ``queue``, one per priority step."""
    return [broker_list(queue, step) for step in sorted(set(BROKER_PRIORITY.values()))]


def broker_list(queue: str, step: int) -> str:
    """The list the transport pushes a message of priority ``step`` (one of the steps) onto."""
    return queue if step == 0 else f"{queue}{_PRIORITY_SEP}{step}"


def queue_score(priority: str, created_at: float) -> int:
    """Score in the model's queued zset: priority band first, then enqueue time."""
    return RANK[priority] * _BAND_MS + int(created_at * 1000)


def band(priority: str) -> tuple[int, int]:
    """The [min, max) score range of one priority in the queued zset."""
    lo = RANK[priority] * _BAND_MS
    return lo, lo + _BAND_MS


def enqueued_at(score: float) -> float:
    """Unix seconds a queued zset score was stamped with."""
    return (int(score) % _BAND_MS) / 1000.0


def as_priority(value: str | None) -> Priority:
    return cast(Priority, value) if value in RANK else "normal"


def check_allowed(priority: str, limit: str) -> None:
    """Refuse (403, naming the field) a priority above the caller's limit."""
    if RANK[priority] < RANK[limit]:
        reason = f"this key may use priority {limit!r} at most"
        raise Forbidden(f"priority: {reason}", errors=[FieldError("priority", reason)])

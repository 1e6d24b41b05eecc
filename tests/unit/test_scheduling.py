"""Priority scores and deadline parsing (the pure parts of scheduling)."""

from __future__ import annotations

import pytest

from app.core.cancel_after import parse_cancel_after
from app.core.errors import Forbidden, InvalidInput
from app.core.priority import check_allowed, enqueued_at, queue_score


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(30, 30.0), ("30", 30.0), ("2.5", 2.5), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("500ms", 0.5)],
)
def test_cancel_after_accepts_seconds_and_durations(value: object, seconds: float) -> None:
    assert parse_cancel_after(value) == seconds


@pytest.mark.parametrize("value", [0, -1, "5 minutes", "5x", "m5", "nan", "inf", True, 8 * 24 * 3600, "30s5"])
def test_cancel_after_refuses_nonsense_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_cancel_after(value, field="Cancel-After")
    assert exc.value.errors[0].field == "Cancel-After"


def test_queue_score_orders_by_priority_then_time() -> None:
    early, late = 1_700_000_000.0, 1_800_000_000.0
    assert queue_score("high", late) < queue_score("normal", early) < queue_score("low", early)
    assert queue_score("normal", early) < queue_score("normal", late)
    assert enqueued_at(queue_score("low", early)) == early


def test_priority_above_the_limit_is_forbidden() -> None:
    check_allowed("normal", "normal")
    check_allowed("low", "normal")
    with pytest.raises(Forbidden) as exc:
        check_allowed("high", "normal")
    assert exc.value.errors[0].field == "priority"

"""The worker-side loop of app/core/background.py: keeps going after a failing round, stops on demand."""

from __future__ import annotations

import time

from app.core.background import every


def test_loop_survives_failing_rounds_and_stops() -> None:
    calls: list[float] = []

    def flaky() -> None:
        calls.append(time.monotonic())
        if len(calls) % 2:
            raise ConnectionError("redis away")

    loop = every(0.01, flaky, name="test-loop")
    deadline = time.monotonic() + 10
    while len(calls) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) >= 4  # the odd rounds raised, the loop went on
    loop.stop()
    assert not loop.alive()
    n = len(calls)
    time.sleep(0.05)
    assert len(calls) == n

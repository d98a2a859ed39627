"""engine.ratelimit.RateLimiter with a fake clock and sleep: no test waits for real."""

from __future__ import annotations

from typing import Any

import pytest

from engine.ratelimit import BudgetSpent, RateLimiter, clock_time, first_int

START = 1_483_225_200.0  # 2016-12-31T23:00:00Z
HEADERS = {
    "limit": "X-RateLimit-Limit",
    "remaining": "X-RateLimit-Remaining",
    "reset": "X-RateLimit-Reset",
    "resetFormat": "epochSeconds",
}


class FakeTime:
    """A clock that only moves when the limiter sleeps (or the test says so)."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(
    t: FakeTime, requests: int = 3, period: float = 60, headers: dict[str, str] | None = None
) -> tuple[RateLimiter, list[float]]:
    waits: list[float] = []
    config: dict[str, Any] = {
        "requests": requests,
        "periodSeconds": period,
        "headers": HEADERS if headers is None else headers,
    }
    return RateLimiter(
        config, clock=t.clock, sleep=t.sleep, on_wait=lambda until, _why: waits.append(until)
    ), waits


def test_budget_spent_waits_until_the_reset() -> None:
    t = FakeTime()
    rl, waits = limiter(t, requests=3, period=60)
    for _ in range(3):
        rl.acquire()
    assert t.sleeps == []  # the budget lasts 3 requests

    rl.acquire()  # the 4th: wait for the reset, one period after the first request

    assert waits == [START + 60]
    assert sum(t.sleeps) == pytest.approx(60.0)  # in slices of 0.25 s at most, so a stop is noticed
    assert max(t.sleeps) <= 0.25
    assert t.now >= START + 60
    assert rl.remaining == 2  # a fresh budget, one unit taken
    assert rl.reset_at == pytest.approx(t.now + 60)


def test_budget_spent_without_waiting_raises_budget_spent() -> None:
    t = FakeTime()
    rl, waits = limiter(t, requests=1, period=60)
    rl.acquire()

    with pytest.raises(BudgetSpent) as caught:
        rl.acquire(wait=False)

    assert caught.value.reset_at == START + 60
    assert t.sleeps == [] and waits == []
    assert clock_time(caught.value.reset_at) == "23:01:00 UTC"


def test_remaining_header_with_two_values_reads_the_first() -> None:
    t = FakeTime()
    rl, _ = limiter(t, requests=10_000, period=3600)
    rl.acquire()

    rl.observe({"X-RateLimit-Remaining": "9999, 19988"})

    assert rl.remaining == 9999
    assert rl.observed["remaining"] == 9999
    assert rl.in_flight == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9999, 19988", 9999),
        ("9999,19988", 9999),
        (" 42 ", 42),
        ("0", 0),
        ("12.0", 12),
        ("", None),
        (None, None),
        ("soon", None),
        (", 5", None),
    ],
)
def test_first_int(value: str | None, expected: int | None) -> None:
    assert first_int(value) == expected


def test_remaining_counts_requests_still_in_flight() -> None:
    t = FakeTime()
    rl, _ = limiter(t, requests=100)
    for _ in range(3):
        rl.acquire()

    rl.observe({"X-RateLimit-Remaining": "10"})  # one answered, two still on their way

    assert rl.in_flight == 2
    assert rl.remaining == 8
    rl.release()  # one of them got no answer (dropped connection)
    assert rl.in_flight == 1


def test_remaining_zero_from_the_server_waits_for_its_reset_header() -> None:
    t = FakeTime()
    rl, waits = limiter(t, requests=10_000, period=3600)
    rl.acquire()
    rl.observe(
        {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(START) + 120),
        }
    )
    assert rl.reset_at == START + 120
    assert rl.observed == {"remaining": 0, "resetAt": START + 120}

    rl.acquire()

    assert waits == [START + 120]
    assert sum(t.sleeps) == pytest.approx(
        120.0
    )  # in slices of 0.25 s at most, so a stop is noticed
    assert max(t.sleeps) <= 0.25
    assert rl.remaining == 49  # the limit the server named, not the spec's 10,000


def test_reset_header_in_seconds_from_now() -> None:
    t = FakeTime()
    rl, _ = limiter(t, headers={**HEADERS, "resetFormat": "secondsFromNow"})
    rl.acquire()

    rl.observe({"X-RateLimit-Reset": "30"})

    assert rl.reset_at == START + 30


def test_unreadable_headers_are_ignored() -> None:
    t = FakeTime()
    rl, _ = limiter(t, requests=5)
    rl.acquire()

    rl.observe({"X-RateLimit-Remaining": "lots", "X-RateLimit-Reset": "tomorrow"})

    assert rl.remaining == 4
    assert rl.reset_at == START + 60
    assert rl.in_flight == 0


def test_block_until_pauses_every_request_until_then() -> None:
    t = FakeTime()
    rl, waits = limiter(t, requests=100, period=60)
    rl.acquire()

    rl.block_until(START + 30)  # e.g. a 429 or a 503 naming that time
    with pytest.raises(BudgetSpent) as caught:
        rl.acquire(wait=False)
    assert caught.value.reset_at == START + 30
    rl.acquire()

    assert waits == [START + 30]
    assert sum(t.sleeps) == pytest.approx(30.0)  # in slices of 0.25 s at most, so a stop is noticed
    assert max(t.sleeps) <= 0.25
    assert rl.remaining == 98  # the pause did not spend the budget
    assert rl.in_flight == 2


def test_block_until_later_than_the_reset_extends_the_wait() -> None:
    t = FakeTime()
    rl, waits = limiter(t, requests=100, period=60)
    rl.acquire()

    rl.block_until(START + 500)
    rl.acquire()

    assert waits == [START + 500]
    assert t.now >= START + 500


def test_block_until_an_earlier_time_does_not_shorten_a_pause() -> None:
    t = FakeTime()
    rl, waits = limiter(t, requests=100, period=60)
    rl.block_until(START + 20)
    rl.block_until(START + 10)

    rl.acquire()

    assert waits == [START + 20]


def test_block_until_a_short_pause_does_not_wait_for_the_window_reset() -> None:
    # A 503 with Retry-After: 1 while the hourly window resets in 50 minutes.
    t = FakeTime()
    rl, waits = limiter(t, requests=10_000, period=3600)
    rl.acquire()
    rl.observe({"X-RateLimit-Remaining": "500", "X-RateLimit-Reset": str(int(START) + 3000)})

    rl.block_until(START + 1)
    rl.acquire()

    assert waits == [START + 1]
    assert t.now < START + 2  # resumed after the second the server asked for
    assert rl.remaining == 499


def test_budget_spent_during_a_pause_waits_for_the_later_reset() -> None:
    t = FakeTime()
    rl, waits = limiter(t, requests=1, period=60)
    rl.acquire()
    rl.block_until(START + 10)

    rl.acquire()

    assert waits == [START + 10, START + 60]
    assert t.now >= START + 60


def test_a_stale_remaining_header_does_not_raise_the_budget() -> None:
    t = FakeTime()
    rl, _ = limiter(t, requests=10_000, period=3600)
    for _ in range(3):
        rl.acquire()
    reset = str(int(START) + 3600)

    # The server answered request B (remaining 6) before C (remaining 5), but C's answer
    # is read first.
    rl.observe({"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": reset})
    rl.observe({"X-RateLimit-Remaining": "6", "X-RateLimit-Reset": reset})

    # The server has 5 left and one request (A) is still in flight: at most 4 may go.
    assert rl.remaining <= 4


def test_no_rate_limit_in_the_spec_never_waits() -> None:
    t = FakeTime()
    rl = RateLimiter(None, clock=t.clock, sleep=t.sleep)
    for _ in range(1_000):
        rl.acquire(wait=False)
    assert t.sleeps == []

"""Rate limit: a client-side budget from the spec's `rateLimit`, corrected by response headers.

The budget resets at fixed times (the server's reset header when it sends
one, else one period after the first request). Each send takes one unit;
each response's `remaining` header (minus the requests still in flight)
replaces the local count, so the run spends the whole budget without
provoking 429s. When it is spent, `acquire` waits for the reset or raises
`BudgetSpent`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any


class BudgetSpent(Exception):
    """The budget is spent until `reset_at` and the run may not wait."""

    def __init__(self, reset_at: float) -> None:
        super().__init__(reset_at)
        self.reset_at = reset_at


def first_int(value: str | None) -> int | None:
    """`9999, 19988` -> 9999: the first of comma-separated values, if it is a number."""
    if not value:
        return None
    head = value.split(",", 1)[0].strip()
    try:
        return int(float(head))
    except ValueError:
        return None


class RateLimiter:
    """Counts requests against the budget; thread-safe."""

    def __init__(
        self,
        config: Mapping[str, Any] | None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[float, str], None] | None = None,
    ) -> None:
        self.limit: int | None = config["requests"] if config else None
        self.period: float = config["periodSeconds"] if config else 0
        self.headers: Mapping[str, str] = (config or {}).get("headers", {})
        self.clock, self.sleep, self.on_wait = clock, sleep, on_wait
        self.remaining = self.limit or 0
        self.reset_at: float | None = None
        self.in_flight = 0
        self.blocked_until = 0.0  # a time the server named; the budget waits for it too
        self.blocked_why = ""
        self.observed: dict[str, Any] = {}
        self.lock = threading.Lock()

    def acquire(self, wait: bool = True, stop: Callable[[], bool] = lambda: False) -> bool:
        """Take one unit, waiting for the reset when the budget is spent.

        Returns False when `stop()` became true while waiting; raises BudgetSpent
        instead of waiting when `wait` is false.
        """
        announced = None
        while True:
            with self.lock:
                now = self.clock()
                if self.reset_at is not None and now >= self.reset_at:
                    self.remaining, self.reset_at = self.limit or 0, None
                if now < self.blocked_until:
                    until, why = self.blocked_until, self.blocked_why
                elif self.limit is None or self.remaining > 0:
                    if self.reset_at is None and self.period:
                        self.reset_at = now + self.period
                    self.remaining -= 1
                    self.in_flight += 1
                    return True
                else:
                    until = self.reset_at if self.reset_at is not None else now + self.period
                    why = "rate limit: budget spent"
            if not wait:
                raise BudgetSpent(until)
            if self.on_wait and announced != until:
                announced = until
                self.on_wait(until, why)
            while self.clock() < until:  # in slices, so a stop is noticed at once
                if stop():
                    return False
                self.sleep(min(0.25, max(0.0, until - self.clock()) + 0.01))

    def observe(self, headers: Mapping[str, str]) -> None:
        """A response arrived: correct the budget from its headers."""
        remaining = self._header_int(headers, "remaining")
        limit = self._header_int(headers, "limit")
        reset = self._reset(headers)
        with self.lock:
            self.in_flight = max(0, self.in_flight - 1)
            if limit is not None:
                self.limit = limit
            new_window = reset is not None and reset != self.reset_at
            if reset is not None:
                self.reset_at = reset
                self.observed["resetAt"] = reset
            if remaining is not None:
                # A late answer may report more than is left; only a new window raises the count.
                counted = max(0, remaining - self.in_flight)
                self.remaining = counted if new_window else min(self.remaining, counted)
                self.observed["remaining"] = remaining

    def release(self) -> None:
        """A request got no response (timeout, dropped connection)."""
        with self.lock:
            self.in_flight = max(0, self.in_flight - 1)

    def block_until(self, when: float, why: str = "the destination asked to pause") -> None:
        """The server said: no more requests until `when` (a 429 or maintenance)."""
        with self.lock:
            if when > self.blocked_until:
                self.blocked_until, self.blocked_why = when, why

    def _header_int(self, headers: Mapping[str, str], which: str) -> int | None:
        name = self.headers.get(which)
        return first_int(headers.get(name)) if name else None

    def _reset(self, headers: Mapping[str, str]) -> float | None:
        value = self._header_int(headers, "reset")
        if value is None:
            return None
        if self.headers.get("resetFormat", "epochSeconds") == "secondsFromNow":
            return self.clock() + value
        return float(value)


def clock_time(ts: float) -> str:
    """A time for humans: `14:05:00 UTC`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")

"""Delivery: each Request is sent and ends in an Outcome.

Sends with httpx (keep-alive, a bounded number in flight), inside the rate
limit, with the connection's current token. Every non-2xx response goes
through the spec's error rules: retry with backoff, wait until the time the
server names, refresh the token once, reject the profile, or stop the run.
Requests not sent because the run stopped end as `pending`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx

from engine.auth import AuthError, TokenManager, login_hint
from engine.endpoints import Endpoints
from engine.mapping import Skipped
from engine.ratelimit import BudgetSpent, RateLimiter, clock_time
from engine.templating import Request, RequestTemplates
from engine.translation import Response, Translation, translate

State = Literal["delivered", "skipped", "rejected", "failed", "pending"]
DEFAULT_POLICY = {
    "maxAttempts": 5,
    "initialBackoffSeconds": 1.0,
    "backoffMultiplier": 2.0,
    "maxBackoffSeconds": 60.0,
    "jitter": True,
    "maxWaitSeconds": 3900.0,
    "timeoutSeconds": 30.0,
}
MAX_RATE_LIMITED_WAITS = 20
# A 401 refreshes the token once; short-lived tokens may expire again before a retry,
# so one request may refresh a few times, never in a loop.
MAX_REFRESHES = 3


@dataclass(frozen=True)
class Outcome:
    """The final state of one request (its profiles and identities), or of a skipped profile."""

    state: State
    refs: tuple[str, ...]
    identities: tuple[str, ...] = ()
    rule: str | None = None
    message: str = ""
    status: int | None = None
    attempts: int = 0
    category: str | None = None
    request: dict[str, Any] | None = None  # for dead letters: what was sent, secrets redacted
    response: str | None = None  # for dead letters: the start of the response body

    def report(self) -> dict[str, Any]:
        """One line of `--report`: no secrets, only what the user needs to act."""
        return {
            "profiles": list(self.refs),
            "identities": list(self.identities),
            "outcome": self.state,
            "rule": self.rule or self.category,
            "message": self.message,
            "status": self.status,
            "attempts": self.attempts,
        }


def skipped_outcome(skipped: Skipped) -> Outcome:
    return Outcome(
        "skipped",
        (skipped.ref,),
        skipped.identities,
        None,
        skipped.reason,
        category=skipped.category,
    )


@dataclass
class DeliveryOptions:
    """How `push` sends: requests in flight, whether to wait for the rate limit, timeout."""

    concurrency: int = 4
    wait: bool = True
    timeout: float | None = None


class Delivery:
    """Sends requests for one spec and connection."""

    def __init__(
        self,
        templates: RequestTemplates,
        tokens: TokenManager | None,
        limiter: RateLimiter,
        http: httpx.Client,
        endpoints: Endpoints,
        options: DeliveryOptions,
        notice: Callable[[str], None] = lambda _: None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        spec = templates.spec
        self.templates = templates
        self.tokens = tokens
        self.limiter = limiter
        self.http = http
        self.endpoints = endpoints
        self.options = options
        self.notice = notice
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.policy = {**DEFAULT_POLICY, **spec.data.get("retryPolicy", {})}
        self.timeout = options.timeout or self.policy["timeoutSeconds"]
        self.rules = spec.data.get("errorTranslation", [])
        self.stopped: str | None = None  # why no more requests are sent
        self.failed_run = False
        self.retries = 0
        self.lock = threading.Lock()

    def run(
        self,
        events: Iterable[Request | Skipped],
        before_send: Callable[[Request], None] = lambda _: None,
    ) -> Iterator[Outcome]:
        """An Outcome for every request and skipped profile, as they complete.

        `before_send` is called (in this thread) just before a request is handed to a sender.
        """
        limit = max(1, self.options.concurrency)
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="send") as pool:
            in_flight: set[Future[Outcome]] = set()
            for event in events:
                if isinstance(event, Skipped):
                    yield skipped_outcome(event)
                    continue
                if self.stopped:
                    yield self._pending(event, 0)
                    continue
                if len(in_flight) >= limit:  # so at most `limit` are sent but not yet recorded
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
                before_send(event)
                in_flight.add(pool.submit(self.deliver, event))
            while in_flight:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)

    def deliver(self, request: Request) -> Outcome:
        """Send one request until it is delivered, rejected, given up on, or the run stops."""
        attempts, waits, refreshes = 0, 0, 0
        while True:
            if self.stopped:
                return self._pending(request, attempts)
            try:
                if not self.limiter.acquire(self.options.wait, lambda: self.stopped is not None):
                    return self._pending(request, attempts)
            except BudgetSpent as exc:
                self.stop(
                    f"the rate-limit budget is spent until {clock_time(exc.reset_at)} (--no-wait)"
                )
                return self._pending(request, attempts)
            attempts += 1
            try:
                auth = self.tokens.auth_data() if self.tokens else {}
            except AuthError as exc:
                self.limiter.release()
                return self._fail_run(request, attempts, str(exc))
            result = self._send(request, auth)
            if isinstance(result, httpx.Response) and 200 <= result.status_code < 300:
                return Outcome(
                    "delivered",
                    request.refs,
                    request.identities,
                    status=result.status_code,
                    attempts=attempts,
                )
            translation, status = self._translate(request, result)
            action = translation.action
            if action == "REJECT":
                excerpt = result.text[:2000] if isinstance(result, httpx.Response) else None
                return Outcome(
                    "rejected",
                    request.refs,
                    request.identities,
                    translation.rule,
                    translation.message,
                    status,
                    attempts,
                    request=request.shown(),
                    response=excerpt,
                )
            if action == "FAIL_RUN":
                return self._fail_run(
                    request, attempts, translation.message, translation.rule, status
                )
            if action == "REFRESH_TOKEN_THEN_RETRY" and self.tokens and refreshes < MAX_REFRESHES:
                refreshes += 1
                try:
                    self.tokens.after_unauthorized(auth)
                except AuthError as exc:
                    return self._fail_run(request, attempts, str(exc), translation.rule, status)
                continue
            if action == "REFRESH_TOKEN_THEN_RETRY":
                hint = f"still refused after {refreshes} token refreshes"
                if self.tokens:
                    c = self.tokens.credentials
                    hint += f"; {login_hint(self.tokens.spec, c.connection)}"
                return self._fail_run(
                    request, attempts, f"{translation.message} ({hint})", translation.rule, status
                )
            if action == "RATE_LIMITED" and waits < MAX_RATE_LIMITED_WAITS:
                waits += 1
                why = "rate limit: budget spent" if status == 429 else translation.message
                if not self._wait_until(translation.retry_at, why):
                    return self._pending(request, attempts)
                continue
            if attempts >= self.policy["maxAttempts"]:
                message = f"{translation.message} (gave up after {attempts} attempts)"
                return Outcome(
                    "failed",
                    request.refs,
                    request.identities,
                    translation.rule,
                    message,
                    status,
                    attempts,
                )
            with self.lock:
                self.retries += 1
            self._pause(self._backoff(attempts))

    def _send(self, request: Request, auth: dict[str, str]) -> httpx.Response | httpx.HTTPError:
        headers = {**request.headers, **self.templates.auth_headers(auth)}
        try:
            response = self.http.request(
                request.method,
                self.endpoints.apply(request.url),
                headers=headers,
                content=request.body.encode(),
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            self.limiter.release()
            return exc
        self.limiter.observe(response.headers)
        return response

    def _translate(
        self, request: Request, result: httpx.Response | httpx.HTTPError
    ) -> tuple[Translation, int | None]:
        if isinstance(result, httpx.HTTPError):
            what = "timed out" if isinstance(result, httpx.TimeoutException) else "failed"
            return Translation(None, "RETRY", f"the request {what} ({type(result).__name__})"), None
        try:
            body: Any = result.json()
        except ValueError:
            body = result.text
        response = Response(result.status_code, result.headers, body)
        return translate(
            self.rules, response, context=request.message_context()
        ), result.status_code

    def _wait_until(self, retry_at: datetime | None, why: str) -> bool:
        """Wait for a server-named time; False (the run stops) when too far or --no-wait."""
        now = self.limiter.clock()
        until = (
            retry_at.timestamp()
            if retry_at
            else (self.limiter.reset_at or now + self.policy["initialBackoffSeconds"])
        )
        if not self.options.wait or until - now > self.policy["maxWaitSeconds"]:
            self.stop(f"the destination asks to wait until {clock_time(until)}")
            return False
        self.limiter.block_until(until, why)
        return True

    def _pause(self, seconds: float) -> None:
        """Sleep before a retry, in slices, so a stop (SIGTERM, Ctrl-C) is noticed at once."""
        left = seconds
        while not self.stopped and left > 0:
            step = min(0.25, left)
            self.sleep(step)
            left -= step

    def _backoff(self, attempt: int) -> float:
        p = self.policy
        delay = min(
            p["maxBackoffSeconds"],
            p["initialBackoffSeconds"] * p["backoffMultiplier"] ** (attempt - 1),
        )
        return self.rng.uniform(delay / 2, delay) if p["jitter"] else delay

    def stop(self, reason: str) -> None:
        """Send no more requests; the ones not sent end as pending."""
        with self.lock:
            if self.stopped is None:
                self.stopped = reason
                self.notice(f"stopping: {reason}")

    def _fail_run(
        self,
        request: Request,
        attempts: int,
        message: str,
        rule: str | None = None,
        status: int | None = None,
    ) -> Outcome:
        with self.lock:
            self.failed_run = True
        self.stop(message)
        return Outcome("failed", request.refs, request.identities, rule, message, status, attempts)

    def _pending(self, request: Request, attempts: int) -> Outcome:
        return Outcome(
            "pending",
            request.refs,
            request.identities,
            None,
            f"not sent: {self.stopped}",
            None,
            attempts,
        )

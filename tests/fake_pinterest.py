"""A fake Pinterest customer-list API for the tests.

Real HTTP on 127.0.0.1 (random port), standard library only. It implements
``PATCH /v5/ad_accounts/{ad_account_id}/customer_lists/{customer_list_id}``
as destinations/pinterest.json describes it: a bearer token, a JSON body
``{"operation_type": "ADD" | "REMOVE", "records": "h1,h2,..."}`` of SHA-256
hashes, at most ``max_records`` records per request, a fixed-window rate limit
with ``X-RateLimit-*`` headers (reset in seconds from now) and a 429 body,
errors as ``{"code": N, "message": "..."}``, and fault injection
(``fail_next``). It keeps each list's members, so tests assert the final state.

Usage::

    with FakePinterest(lists={"643": set()}) as fake:
        httpx.patch(f"{fake.url}/v5/ad_accounts/{fake.ad_account_id}/customer_lists/643", ...)
        assert fake.lists["643"] == {...}
"""

from __future__ import annotations

import collections
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["FakePinterest"]

_PATH = re.compile(r"^/v5/ad_accounts/([^/?]+)/customer_lists/([^/?]+)$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


def _json(status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()) -> _Response:
    body = json.dumps(obj).encode()
    return _Response(status, body, [("Content-Type", "application/json"), *headers])


def _error(
    status: int, code: int, message: str, headers: Iterable[tuple[str, str]] = ()
) -> _Response:
    return _json(status, {"code": code, "message": message}, headers)


class FakePinterest:
    """Customer lists of one ad account; start it and point a client at ``url``."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        ad_account_id: str = "549756359984",
        lists: dict[str, Iterable[str]] | None = None,
        max_records: int = 10_000,
        rate_limit: int = 400,
        rate_window: float = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.ad_account_id = ad_account_id
        self.lists: dict[str, set[str]] = {k: set(v) for k, v in (lists or {}).items()}
        self.max_records = max_records
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.clock = clock
        self.url = ""
        # One entry per request: time, method, path, list, operation, records, status, headers.
        self.log: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []  # bugs in the fake itself (answered 500)
        self.lock = threading.RLock()
        self._batches: collections.Counter[str] = collections.Counter()
        self._window_start: float | None = None
        self._window_used = 0
        self._fail: collections.deque[tuple[int, int | None]] = collections.deque()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> FakePinterest:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakePinterest:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- fault injection and helpers ------------------------------------------------

    def fail_next(self, count: int, status: int = 502, *, retry_after: int | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (before auth and rate limit)."""
        HTTPStatus(status)
        with self.lock:
            self._fail.extend([(status, retry_after)] * count)

    def exhaust_rate_limit(self) -> None:
        """Spend the whole budget of the current window."""
        with self.lock:
            self._roll_window(self.clock())
            self._window_used = max(self._window_used, self.rate_limit)

    def statuses(self) -> collections.Counter[int]:
        with self.lock:
            return collections.Counter(entry["status"] for entry in self.log)

    # -- internals ----------------------------------------------------------------

    def _roll_window(self, now: float) -> float:
        """Start a new fixed window if due; return when the current one resets."""
        start = (now // self.rate_window) * self.rate_window
        if start != self._window_start:
            self._window_start, self._window_used = start, 0
        return start + self.rate_window

    def _rate_headers(self, now: float, reset_at: float) -> list[tuple[str, str]]:
        remaining = max(self.rate_limit - self._window_used, 0)
        return [
            ("X-RateLimit-Limit", str(self.rate_limit)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", str(max(math.ceil(reset_at - now), 1))),
        ]

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Response:
        now = self.clock()
        entry: dict[str, Any] = {"time": now, "method": method, "path": path}
        with self.lock:
            self.log.append(entry)
            fail = self._fail.popleft() if self._fail else None
            response = (
                self._fault(*fail)
                if fail
                else self._answer(method, path, headers, body, now, entry)
            )
            entry["status"] = response.status
            entry["headers"] = dict(response.headers)
            entry["body"] = response.body.decode()
            return response

    @staticmethod
    def _fault(status: int, retry_after: int | None) -> _Response:
        extra = [("Retry-After", str(retry_after))] if retry_after is not None else []
        if status >= 500:
            return _Response(
                status, HTTPStatus(status).phrase.encode(), [("Content-Type", "text/plain"), *extra]
            )
        return _error(status, 0, HTTPStatus(status).phrase + ".", extra)

    def _answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        now: float,
        entry: dict[str, Any],
    ) -> _Response:
        if headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, 2, "Authentication failed.")
        reset_at = self._roll_window(now)
        if self._window_used >= self.rate_limit:
            return _error(
                429,
                29,
                "You have exceeded your rate limit. Try again later.",
                self._rate_headers(now, reset_at),
            )
        self._window_used += 1
        rate = self._rate_headers(now, reset_at)
        match = _PATH.match(path)
        if match is None or method != "PATCH":
            return _error(404, 0, f"No route for {method} {path}.", rate)
        account, list_id = match.groups()
        entry["list"] = list_id
        if account != self.ad_account_id:
            return _error(403, 3, "Authorization failed.", rate)
        if list_id not in self.lists:
            return _error(404, 2625, "Customer list not found.", rate)
        if not headers.get("content-type", "").startswith("application/json"):
            return _error(415, 0, "Unsupported media type.", rate)
        try:
            request = json.loads(body)
            operation, records = request["operation_type"], request["records"]
        except (ValueError, KeyError, TypeError):
            return _error(
                400, 1, "Invalid parameters: a JSON body with operation_type and records.", rate
            )
        if operation not in ("ADD", "REMOVE") or not isinstance(records, str):
            return _error(400, 1, "Invalid parameters: operation_type must be ADD or REMOVE.", rate)
        hashes = [r for r in records.split(",") if r]
        entry["operation"], entry["records"] = operation, hashes
        if not hashes:
            return _error(400, 1, "Invalid parameters: no records.", rate)
        if len(hashes) > self.max_records:
            return _error(
                400, 1, f"Too many records: at most {self.max_records} per request.", rate
            )
        bad = [r for r in hashes if not _HASH.match(r)]
        if bad:
            return _error(400, 1, f"Invalid record {bad[0][:80]!r}: expected a SHA-256 hash.", rate)
        members = self.lists[list_id]
        if operation == "ADD":
            members.update(hashes)
        else:
            members.difference_update(hashes)
        self._batches[list_id] += 1
        return _json(
            200,
            {
                "ad_account_id": account,
                "id": list_id,
                "name": f"List {list_id}",
                "type": "customerlist",
                "status": "PROCESSING",
                "num_batches": self._batches[list_id],
                "num_uploaded_user_records": len(hashes) if operation == "ADD" else 0,
                "num_removed_user_records": len(hashes) if operation == "REMOVE" else 0,
                "created_time": 1452208622,
                "updated_time": int(now),
                "exceptions": {},
            },
            rate,
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakePinterest

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients hanging up mid-request are expected here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""

    def _dispatch(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            resp = fake._handle(self.command, self.path, headers, body)
        except Exception as exc:  # a bug in the fake: record it, answer 500
            fake.errors.append(exc)
            resp = _error(500, 0, repr(exc))
        self.send_response(resp.status)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch

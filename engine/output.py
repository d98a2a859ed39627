"""How requests, skipped profiles and summaries are shown to the user."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from engine.mapping import Skipped
from engine.pipeline import Tally
from engine.templating import Request


def request_json(request: Request) -> str:
    """One request as one JSON line: method, url, headers, body (parsed when JSON), profiles."""
    return json.dumps({**request.shown(), "profiles": list(request.refs)}, ensure_ascii=False)


def request_http(request: Request) -> str:
    """One request as a raw HTTP/1.1 message."""
    parts = urlsplit(request.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    body = request.body.encode()
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines) + "\r\n\r\n" + request.body


def request_pretty(request: Request) -> tuple[str, str, str]:
    """Request line with headers, the body, and the body's syntax name for highlighting."""
    head = f"{request.method} {request.url}    # {', '.join(request.refs)}\n"
    head += "".join(f"{name}: {value}\n" for name, value in request.headers.items())
    if request.is_json:
        return head, json.dumps(request.json_body, indent=2, ensure_ascii=False), "json"
    return head, request.body, "text"


def skipped_line(skipped: Skipped) -> str:
    return f"skipped {skipped.ref}: {skipped.reason}"


def skipped_json(skipped: Skipped) -> str:
    return json.dumps(
        {"profile": skipped.ref, "category": skipped.category, "reason": skipped.reason},
        ensure_ascii=False,
    )


def summary(tally: Tally) -> str:
    """`read 8 profiles: 6 rendered, 2 skipped (1 missing-identity, 1 no-audience); 7 requests`."""
    skipped = sum(tally.skipped.values())
    detail = ", ".join(f"{n:,} {category}" for category, n in sorted(tally.skipped.items()))
    detail = f" ({detail})" if detail else ""
    return (
        f"read {count(tally.read, 'profile')}: {tally.rendered:,} rendered,"
        f" {skipped:,} skipped{detail}; {count(tally.requests, 'request')}"
    )


def forecast(requests: int, rate_limit: dict[str, Any] | None) -> str:
    """How long the requests take at the spec's rate limit."""
    if not rate_limit:
        return f"{count(requests, 'request')}; the spec sets no rate limit"
    per, period = rate_limit["requests"], rate_limit["periodSeconds"]
    seconds = requests * period / per
    return f"{count(requests, 'request')}, {_duration(seconds)} at {per:,} per {_period(period)}"


def count(n: int, word: str) -> str:
    """`1 request`, `2,340 requests`."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"about {count(minutes, 'minute')}"
    return f"about {seconds / 3600:.1f} hours"


def _period(seconds: int) -> str:
    names = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
    return names.get(seconds, f"{seconds:,} seconds")

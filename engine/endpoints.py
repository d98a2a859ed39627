"""Endpoint overrides: point a spec's URLs at a test or sandbox server.

`https://api.outreach.io=http://127.0.0.1:8080` sends what would go to the
first origin to the second. Plain http is allowed only to loopback addresses.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


class EndpointError(ValueError):
    """An override that is malformed or points somewhere it may not."""


def _origin(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise EndpointError(f"{what} {url!r} must be an origin like https://host[:port]")
    return f"{parts.scheme}://{parts.netloc}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Endpoints:
    """Origin rewrites applied to every outgoing URL (API and OAuth)."""

    def __init__(self, overrides: list[str] | tuple[str, ...] = ()) -> None:
        self.rewrites: list[tuple[str, str]] = []
        for item in overrides:
            source, sep, target = item.partition("=")
            if not sep:
                raise EndpointError(f"--endpoint-override {item!r}: expected ORIGIN=ORIGIN")
            src, dst = _origin(source, "origin"), _origin(target, "override")
            host = urlsplit(dst).hostname or ""
            if dst.startswith("http://") and not is_loopback(host):
                raise EndpointError(
                    f"--endpoint-override {item!r}: plain http is allowed only for loopback"
                    " addresses (127.0.0.1, ::1, localhost); use https"
                )
            self.rewrites.append((src, dst))

    def apply(self, url: str) -> str:
        for source, target in self.rewrites:
            if url == source or url.startswith(source + "/") or url.startswith(source + "?"):
                return target + url[len(source) :]
        return url

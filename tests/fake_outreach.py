"""A fake Outreach API server for the test suite.

Real HTTP on 127.0.0.1 (random port), standard library only. It follows
``shared/reference/outreach.md``: OAuth 2 authorization code grant with
rotating refresh tokens, ``PATCH``/``GET /api/v2/prospects/{id}`` with the
JSON:API errors Outreach answers, a per-user fixed-window rate limit with its
headers and exact 429 message, and fault injection (5xx, dropped
connections, slow responses, expired tokens).

Usage::

    with FakeOutreach() as fake:
        fake.add_prospect(1, firstName="Ada")
        token = fake.issue_tokens()["access_token"]
        httpx.patch(f"{fake.url}/api/v2/prospects/1", ...)
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import json
import math
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

__all__ = ["FakeOutreach"]

JSON_API = "application/vnd.api+json"
JSON = "application/json; charset=utf-8"

READ_ONLY_ATTRIBUTES = frozenset(
    {"name", "createdAt", "updatedAt", "engagedAt", "openCount", "clickCount", "replyCount"}
)
STRING_ATTRIBUTES = frozenset(
    {
        "firstName",
        "lastName",
        "middleName",
        "nickname",
        "title",
        "occupation",
        "addressCity",
        "addressCountry",
        "addressState",
        "addressStreet",
        "addressStreet2",
        "addressZip",
        "timeZone",
        "gender",
        "source",
        "externalId",
        "company",
    }
)
ARRAY_ATTRIBUTES = frozenset({"tags", "emails", "workPhones", "mobilePhones"})
KNOWN_ATTRIBUTES = STRING_ATTRIBUTES | ARRAY_ATTRIBUTES | {"optedOut", "score"}
STRING_MAX = 255
CUSTOM_MAX = 32_000
CUSTOM_FIELDS = 150
CODE_LIFETIME = 600
REFRESH_TOKEN_LIFETIME = 14 * 24 * 3600

# Doorkeeper (the OAuth server behind Outreach) wording.
INVALID_CLIENT = (
    "Client authentication failed due to unknown client, no client authentication "
    "included, or unsupported authentication method."
)
INVALID_GRANT = (
    "The provided authorization grant is invalid, expired, revoked, does not match "
    "the redirection URI used in the authorization request, or was issued to another "
    "client."
)
INVALID_REQUEST = (
    "The request is missing a required parameter, includes an unsupported parameter "
    "value, or is otherwise malformed."
)
UNSUPPORTED_GRANT_TYPE = (
    "The authorization grant type is not supported by the authorization server."
)

_CUSTOM_RE = re.compile(r"custom([1-9][0-9]*)")
_PROSPECT_RE = re.compile(r"/api/v2/prospects/([^/]+)")


def _utc(ts: float) -> str:
    """Format epoch seconds the way Outreach's error messages do."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))


def _custom_index(name: str) -> int | None:
    match = _CUSTOM_RE.fullmatch(name)
    if match and 1 <= int(match.group(1)) <= CUSTOM_FIELDS:
        return int(match.group(1))
    return None


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


def _json(
    status: int, obj: Any, content_type: str = JSON, headers: Iterable[tuple[str, str]] = ()
) -> _Response:
    body = json.dumps(obj).encode()
    return _Response(status, body, [("Content-Type", content_type), *headers])


def _error(error_id: str, title: str, detail: str, pointer: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"id": error_id, "title": title, "detail": detail}
    if pointer is not None:
        err["source"] = {"pointer": pointer}
    return err


def _errors(status: int, *errors: dict[str, Any]) -> _Response:
    return _json(status, {"errors": list(errors)}, JSON_API)


def _oauth_error(status: int, error: str, description: str) -> _Response:
    return _json(
        status,
        {"error": error, "error_description": description},
        headers=[("Cache-Control", "no-store"), ("Pragma", "no-cache")],
    )


def _camel(phrase: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", phrase)
    return words[0].lower() + "".join(w.capitalize() for w in words[1:]) if words else "error"


@dataclass
class _AccessToken:
    expires_at: float
    scopes: tuple[str, ...]


@dataclass
class _Grant:
    expires_at: float
    scopes: tuple[str, ...]
    redirect_uri: str | None = None


class FakeOutreach:
    """A fake Outreach API on 127.0.0.1; start it, point a client at ``url``."""

    def __init__(
        self,
        *,
        client_id: str = "test-client",
        client_secret: str = "test-secret",
        redirect_uri: str | None = None,
        token_lifetime: int = 7200,
        rate_limit: int = 10_000,
        rate_window: int = 3600,
        scopes: Iterable[str] = ("prospects.read", "prospects.write"),
        clock: Callable[[], float] = time.time,
        string_max: int = STRING_MAX,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.token_lifetime = token_lifetime
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.scopes = tuple(scopes)
        self.clock = clock
        # Outreach documents 255; one client saw names refused above 50 (reference/outreach.md).
        self.string_max = string_max

        self.url = ""
        self.prospects: dict[int, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.token_mints = 0  # successful answers of POST /oauth/token
        self.errors: list[BaseException] = []  # bugs in the fake itself (answered 500)

        self.lock = threading.RLock()
        self._codes: dict[str, _Grant] = {}
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _Grant] = {}
        self._window_start: float | None = None
        self._window_used = 0
        self._fail: collections.deque[tuple[int, int]] = collections.deque()
        self._drop = 0
        self._delay: collections.deque[float] = collections.deque()

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeOutreach:
        """Bind a random port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("FakeOutreach already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="fake-outreach",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close idle keep-alive connections, wake delayed requests."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOutreach:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state helpers for tests ---------------------------------------------

    def add_prospect(self, prospect_id: int, **attributes: Any) -> None:
        """Create (or replace) a prospect in the store."""
        with self.lock:
            self.prospects[prospect_id] = dict(attributes)

    def authorize(self, *, redirect_uri: str, state: str, scope: str) -> str:
        """Return an authorization code as if the user clicked "allow".

        ``state`` and ``scope`` are accepted for symmetry with the authorize
        page; tokens always get the scopes given to the constructor.
        """
        if self.redirect_uri is not None and redirect_uri != self.redirect_uri:
            raise ValueError(f"redirect_uri {redirect_uri!r} is not registered")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self._codes[code] = _Grant(self.clock() + CODE_LIFETIME, self.scopes, redirect_uri)
        return code

    def issue_tokens(self) -> dict[str, Any]:
        """Mint a token set directly (not counted in ``token_mints``)."""
        with self.lock:
            return self._mint(self.scopes)

    def expire_all_tokens(self) -> None:
        """Make every access token issued so far answer 401 (as expired)."""
        with self.lock:
            for token in self._access.values():
                token.expires_at = -math.inf

    def revoke_refresh_tokens(self) -> None:
        """Make every refresh token issued so far answer ``invalid_grant``."""
        with self.lock:
            self._refresh.clear()

    # -- fault injection (API requests only, before auth and rate limiting) --

    def fail_next(self, count: int, status: int = 502, *, retry_after: int = 1) -> None:
        """Answer the next ``count`` API requests with ``status`` (JSON:API error).

        503 is ``scheduledServerMaintenance`` with a ``Retry-After`` of
        ``retry_after`` seconds and the same moment named in the detail.
        """
        HTTPStatus(status)  # reject nonsense early
        with self.lock:
            self._fail.extend([(status, retry_after)] * count)

    def drop_next(self, count: int) -> None:
        """Close the connection of the next ``count`` API requests without answering."""
        with self.lock:
            self._drop += count

    def delay_next(self, count: int, seconds: float) -> None:
        """Sleep ``seconds`` before handling each of the next ``count`` API requests."""
        with self.lock:
            self._delay.extend([seconds] * count)

    def exhaust_rate_limit(self) -> None:
        """Spend the whole budget of the current rate-limit window."""
        with self.lock:
            self._roll_window(self.clock())
            self._window_used = max(self._window_used, self.rate_limit)

    # -- internals -------------------------------------------------------------

    def _mint(self, scopes: tuple[str, ...]) -> dict[str, Any]:
        now = self.clock()
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(32)
        self._access[access] = _AccessToken(now + self.token_lifetime, scopes)
        self._refresh[refresh] = _Grant(now + REFRESH_TOKEN_LIFETIME, scopes)
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "refresh_token": refresh,
            "scope": " ".join(scopes),
            "created_at": int(now),
        }

    def _roll_window(self, now: float) -> float:
        """Start a new fixed window if due; return the window's reset time."""
        start = (now // self.rate_window) * self.rate_window
        if start != self._window_start:
            self._window_start = start
            self._window_used = 0
        return start + self.rate_window

    def _handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> _Response | None:
        """Answer one request; ``None`` means drop the connection."""
        path = urlsplit(target).path
        with self.lock:
            self.requests.append(
                {
                    "method": method,
                    "path": target,
                    "headers": dict(headers),
                    "body": body.decode("utf-8", "replace"),
                }
            )
            is_api = path.startswith("/api/")
            delay = self._delay.popleft() if is_api and self._delay else 0.0
            drop = is_api and self._drop > 0
            if drop:
                self._drop -= 1
            fail = self._fail.popleft() if is_api and not drop and self._fail else None
        if delay:
            self._stopping.wait(delay)
        if drop:
            return None
        if fail is not None:
            return self._fault(*fail)
        with self.lock:
            if path == "/oauth/authorize" and method == "GET":
                return self._oauth_authorize(target)
            if path == "/oauth/token" and method == "POST":
                return self._oauth_token(headers, body)
            if is_api:
                return self._api(method, path, headers, body)
            return _errors(404, self._route_not_found(method, path))

    def _fault(self, status: int, retry_after: int) -> _Response:
        if status == 503:
            at = _utc(self.clock() + retry_after)
            detail = f"Outreach is undergoing scheduled maintenance; please try again at {at}."
            err = _error("scheduledServerMaintenance", "Scheduled Server Maintenance", detail)
            resp = _errors(503, err)
            resp.headers.append(("Retry-After", str(retry_after)))
            return resp
        if status == 502:
            detail = "The server received an invalid response from an upstream server."
            return _errors(502, _error("badGateway", "Bad Gateway", detail))
        if status == 500:
            detail = "An unexpected error occurred; please try again."
            return _errors(500, _error("internalServerError", "Internal Server Error", detail))
        phrase = HTTPStatus(status).phrase
        return _errors(status, _error(_camel(phrase), phrase, phrase + "."))

    @staticmethod
    def _route_not_found(method: str, path: str) -> dict[str, Any]:
        return _error("routeNotFound", "Route Not Found", f"No route matches [{method}] {path!r}.")

    # -- OAuth ---------------------------------------------------------------------

    def _oauth_authorize(self, target: str) -> _Response:
        query = {
            k: v[0] for k, v in parse_qs(urlsplit(target).query, keep_blank_values=True).items()
        }
        if query.get("client_id") != self.client_id:
            return _oauth_error(400, "invalid_client", INVALID_CLIENT)
        redirect_uri = query.get("redirect_uri")
        if not redirect_uri or (
            self.redirect_uri is not None and redirect_uri != self.redirect_uri
        ):
            return _oauth_error(
                400,
                "invalid_redirect_uri",
                "The requested redirect uri is malformed or doesn't match client redirect URI.",
            )
        if query.get("response_type") != "code":
            return _oauth_error(
                400,
                "unsupported_response_type",
                "The authorization server does not support this response type.",
            )
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(self.clock() + CODE_LIFETIME, self.scopes, redirect_uri)
        params = {"code": code}
        if "state" in query:
            params["state"] = query["state"]
        sep = "&" if "?" in redirect_uri else "?"
        return _Response(302, b"", [("Location", redirect_uri + sep + urlencode(params))])

    def _oauth_token(self, headers: dict[str, str], body: bytes) -> _Response:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "application/json" or body.lstrip().startswith(b"{"):
                params = json.loads(body or b"{}")
                if not isinstance(params, dict):
                    raise ValueError("not an object")
            else:
                params = {
                    k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()
                }
        except (ValueError, UnicodeDecodeError):
            return _oauth_error(400, "invalid_request", INVALID_REQUEST)

        client_id, client_secret = params.get("client_id"), params.get("client_secret")
        auth = headers.get("authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id = client_secret = None
        if client_id != self.client_id or client_secret != self.client_secret:
            return _oauth_error(401, "invalid_client", INVALID_CLIENT)

        now = self.clock()
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            code = params.get("code")
            if not code:
                return _oauth_error(400, "invalid_request", INVALID_REQUEST)
            grant = self._codes.get(code)
            if (
                grant is None
                or grant.expires_at <= now
                or params.get("redirect_uri") != grant.redirect_uri
            ):
                return _oauth_error(400, "invalid_grant", INVALID_GRANT)
            del self._codes[code]
        elif grant_type == "refresh_token":
            refresh = params.get("refresh_token")
            if not refresh:
                return _oauth_error(400, "invalid_request", INVALID_REQUEST)
            grant = self._refresh.pop(refresh, None)
            if grant is None or grant.expires_at <= now:
                return _oauth_error(400, "invalid_grant", INVALID_GRANT)
        elif not grant_type:
            return _oauth_error(400, "invalid_request", INVALID_REQUEST)
        else:
            return _oauth_error(400, "unsupported_grant_type", UNSUPPORTED_GRANT_TYPE)

        self.token_mints += 1
        tokens = self._mint(grant.scopes)
        return _json(200, tokens, headers=[("Cache-Control", "no-store"), ("Pragma", "no-cache")])

    # -- API -----------------------------------------------------------------------

    def _authenticate(self, headers: dict[str, str]) -> _AccessToken | _Response:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            description = "No access token was provided."
        else:
            access = self._access.get(token.strip())
            if access is None:
                description = "The access token is invalid."
            elif access.expires_at <= self.clock():
                description = "The access token expired."
            else:
                return access
        return _json(401, {"error": "Invalid JWT token.", "description": description})

    def _api(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Response:
        access = self._authenticate(headers)
        if isinstance(access, _Response):
            return access

        now = self.clock()
        reset = self._roll_window(now)
        self._window_used += 1
        rate_headers = [
            ("X-RateLimit-Limit", str(self.rate_limit)),
            ("X-RateLimit-Remaining", str(max(0, self.rate_limit - self._window_used))),
            ("X-RateLimit-Reset", str(math.ceil(reset))),
        ]
        if self._window_used > self.rate_limit:
            detail = (
                f"You have exceeded your permitted rate limit of {self.rate_limit:,}; "
                f"please try again at {_utc(reset)}."
            )
            resp = _errors(429, _error("rateLimitExceeded", "Rate Limit Exceeded", detail))
        else:
            resp = self._route(method, path, headers, body, access)
        resp.headers.extend(rate_headers)
        return resp

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes, access: _AccessToken
    ) -> _Response:
        match = _PROSPECT_RE.fullmatch(path)
        raw_id = match.group(1) if match else ""
        if method not in ("GET", "PATCH") or not (raw_id.isascii() and raw_id.isdigit()):
            return _errors(404, self._route_not_found(method, path))
        prospect_id = int(raw_id)

        if method == "PATCH":
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != JSON_API:
                err = {
                    "id": "unsupportedMediaType",
                    "title": "Unsupported Media Type",
                    "details": f"Expected Content-Type header to be '{JSON_API}'.",
                }
                return _errors(415, err)

        needed = "prospects.write" if method == "PATCH" else "prospects.read"
        if needed not in access.scopes and "prospects.all" not in access.scopes:
            detail = (
                f"Your OAuth token does not have the '{needed}' scope required for this request."
            )
            return _errors(
                403, _error("unauthorizedOauthScope", "Unauthorized OAuth Scope", detail)
            )

        if method == "GET":
            if prospect_id not in self.prospects:
                return self._not_found(prospect_id)
            return self._prospect_document(prospect_id)

        attributes = _parse_document(body, prospect_id)
        if isinstance(attributes, _Response):
            return attributes
        if prospect_id not in self.prospects:
            return self._not_found(prospect_id)
        invalid = _validate(attributes, self.string_max)
        if invalid is not None:
            return invalid
        self.prospects[prospect_id].update(attributes)
        return self._prospect_document(prospect_id)

    @staticmethod
    def _not_found(prospect_id: int) -> _Response:
        detail = f"Could not find 'prospect' with ID '{prospect_id}'."
        return _errors(404, _error("resourceNotFound", "Resource Not Found", detail))

    def _prospect_document(self, prospect_id: int) -> _Response:
        data = {
            "type": "prospect",
            "id": prospect_id,
            "attributes": dict(self.prospects[prospect_id]),
            "links": {"self": f"{self.url}/api/v2/prospects/{prospect_id}"},
        }
        return _json(200, {"data": data}, JSON_API)


def _bad_request(detail: str, pointer: str | None = None) -> _Response:
    return _errors(400, _error("badRequest", "Bad Request", detail, pointer))


def _parse_document(body: bytes, prospect_id: int) -> dict[str, Any] | _Response:
    """Check the JSON:API envelope of a prospect PATCH; return its attributes."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _bad_request("The request body is not valid JSON.")
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        return _bad_request("The request body must contain a 'data' object.", "/data")
    if data.get("type") != "prospect":
        return _bad_request("Expected resource type 'prospect'.", "/data/type")
    data_id = data.get("id")
    if isinstance(data_id, bool) or not isinstance(data_id, int) or data_id != prospect_id:
        return _bad_request(
            f"Expected the integer id {prospect_id}, the id in the URL.", "/data/id"
        )
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        return _bad_request(
            "The request body must contain an 'attributes' object.", "/data/attributes"
        )
    return attributes


def _validate(attributes: dict[str, Any], string_max: int) -> _Response | None:
    """Return a 400 (read-only/unknown) or 422 (type/length) error, if any."""
    bad: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for name, value in attributes.items():
        pointer = f"/data/attributes/{name}"
        custom = _custom_index(name) is not None
        if name in READ_ONLY_ATTRIBUTES:
            bad.append(
                _error("badRequest", "Bad Request", f"'{name}' is a read-only attribute.", pointer)
            )
        elif not custom and name not in KNOWN_ATTRIBUTES:
            bad.append(
                _error(
                    "badRequest",
                    "Bad Request",
                    f"'{name}' is not an attribute of 'prospect'.",
                    pointer,
                )
            )
        elif custom or name in STRING_ATTRIBUTES:
            if value is None and custom:
                continue
            if not isinstance(value, str):
                kind = "a string or null" if custom else "a string"
                invalid.append(_invalid(pointer, f"'{name}' must be {kind}."))
            elif len(value) > (limit := CUSTOM_MAX if custom else string_max):
                detail = f"'{name}' is too long (maximum is {limit:,} characters)."
                invalid.append(
                    _error(
                        "validationDataTooLongError", "Validation Data Too Long", detail, pointer
                    )
                )
        elif name in ARRAY_ATTRIBUTES:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                invalid.append(_invalid(pointer, f"'{name}' must be an array of strings."))
        elif name == "optedOut":
            if not isinstance(value, bool):
                invalid.append(_invalid(pointer, f"'{name}' must be a boolean."))
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            invalid.append(_invalid(pointer, f"'{name}' must be a number."))
    if bad:
        return _errors(400, *bad)
    if invalid:
        return _errors(422, *invalid)
    return None


def _invalid(pointer: str, detail: str) -> dict[str, Any]:
    return _error("validationError", "Validation Error", detail, pointer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOutreach

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients hanging up mid-request are expected here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small writes: avoid 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""

    def setup(self) -> None:
        super().setup()
        with self.server.fake.lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.fake.lock:
                self.server.fake._connections.discard(self.connection)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        fake = self.server.fake
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            resp = fake._handle(self.command, self.path, headers, body)
        except Exception as exc:  # a bug in the fake: record it, answer 500
            fake.errors.append(exc)
            resp = _errors(500, _error("fakeServerError", "Fake Server Error", repr(exc)))
        if resp is None:
            self.close_connection = True
            return
        self.send_response(resp.status)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch

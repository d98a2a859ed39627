"""Auth: OAuth 2 login and tokens that stay valid through a long run.

The spec's `customerAuthenticationConfigurations[0]` drives everything:
authorization and token URLs, scopes, and where the token response keeps
its fields. `TokenManager` refreshes shortly before expiry and after a 401,
one refresh at a time, and persists a rotated refresh token before using it.
"""

from __future__ import annotations

import http.server
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from engine.credentials import (
    CLIENT_ID_ENV,
    CLIENT_SECRET_ENV,
    CredentialError,
    Credentials,
    CredentialStore,
)
from engine.endpoints import Endpoints
from engine.ratelimit import first_int
from engine.spec import Spec

REFRESH_MARGIN = 300  # seconds before expiry when a token is refreshed
MIN_MINT_INTERVAL = 60  # Outreach may answer 429 to more than one mint a minute
ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # an OAuth `error` worth showing


class AuthError(Exception):
    """The run cannot authenticate; the message says what the user should do."""


class MintTooSoon(AuthError):
    """The token endpoint refused another token this soon (HTTP 429)."""

    def __init__(self, message: str, wait: int) -> None:
        super().__init__(message)
        self.wait = wait


class ClientRefused(AuthError):
    """The token endpoint refused the OAuth app's client id or secret: logging in cannot help."""


def login_hint(spec: Spec, connection: str) -> str:
    return f"log in again: `dest-engine auth login {spec.destination} --connection {connection}`"


def auth_config(spec: Spec) -> dict[str, Any]:
    return spec.data["customerAuthenticationConfigurations"][0]  # type: ignore[no-any-return]


def token_paths(config: dict[str, Any]) -> dict[str, str]:
    """Where a token response keeps the access token, refresh token and lifetime."""
    return {
        "access": config.get("accessTokenResponsePath", "access_token"),
        "refresh": config.get("refreshTokenResponsePath", "refresh_token"),
        "expires": config.get("expiresInResponsePath", "expires_in"),
    }


class OAuthClient:
    """Talks to the spec's OAuth 2 endpoints."""

    def __init__(
        self,
        spec: Spec,
        client_id: str,
        client_secret: str,
        http: httpx.Client,
        endpoints: Endpoints | None = None,
    ) -> None:
        self.spec = spec
        self.config = auth_config(spec)
        self.client_id = client_id
        self.client_secret = client_secret
        self.http = http
        self.endpoints = endpoints or Endpoints()

    @property
    def paths(self) -> dict[str, str]:
        return token_paths(self.config)

    def authorization_url(self, redirect_uri: str, state: str) -> str:
        query = urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": " ".join(self.config.get("scope", [])),
                "state": state,
            }
        )
        return self.endpoints.apply(self.config["authorizationUrl"]) + "?" + query

    def exchange_code(self, code: str, redirect_uri: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        return self._token_request(self.config["accessTokenUrl"], form)

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        url = self.config.get("refreshTokenUrl", self.config["accessTokenUrl"])
        return self._token_request(
            url, {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    def _token_request(self, url: str, form: dict[str, str]) -> dict[str, Any]:
        auth: tuple[str, str] | None = None
        if self.config.get("options", {}).get("useBasicAuth"):
            auth = (self.client_id, self.client_secret)
        else:
            form = {**form, "client_id": self.client_id, "client_secret": self.client_secret}
        try:
            response = self.http.post(
                self.endpoints.apply(url), data=form, auth=auth or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as exc:
            raise AuthError(
                f"the token endpoint could not be reached ({type(exc).__name__})"
            ) from None
        try:
            body = response.json()
        except (ValueError, RecursionError):
            body = None
        if response.status_code == 429:
            wait = first_int(response.headers.get("Retry-After")) or MIN_MINT_INTERVAL
            raise MintTooSoon(f"the token endpoint asks to wait {wait} s (HTTP 429)", wait)
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, str) or not ERROR_CODE.fullmatch(error):
            error = None
        detail = f"HTTP {response.status_code}" + (f" {error}" if error else "")
        if error == "invalid_client" or (response.status_code == 401 and error != "invalid_grant"):
            raise ClientRefused(
                f"the OAuth app's client id or secret is wrong (the token endpoint answered"
                f" {detail}); check {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV}"
            )
        if response.status_code != 200:
            raise AuthError(f"the token endpoint refused ({detail})")
        if not isinstance(body, dict):
            raise AuthError(f"the token endpoint answered {detail} without a JSON object")
        return body


class TokenManager:
    """The connection's current access token, refreshed when needed, one refresh at a time."""

    def __init__(
        self,
        spec: Spec,
        store: CredentialStore,
        credentials: Credentials,
        oauth: OAuthClient | None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spec = spec
        self.sleep = sleep
        self.store = store
        self.credentials = credentials
        self.oauth = oauth
        self.clock = clock
        self.lock = threading.Lock()
        self.refreshes = 0
        self.failure: AuthError | None = None  # a refresh that failed: no other thread retries it

    def auth_data(self) -> dict[str, str]:
        """`authData` for templates, refreshing first when the token is about to expire."""
        with self.lock:
            c = self.credentials
            expiring = c.expires_at is not None and c.expires_at - self.clock() < REFRESH_MARGIN
            recently = self.clock() - c.obtained_at < MIN_MINT_INTERVAL
            expired = c.expires_at is not None and c.expires_at <= self.clock()
            if expiring and (expired or not recently):
                self._refresh()
            return self._data()

    def after_unauthorized(self, used: dict[str, str]) -> None:
        """A request with `used` got 401: refresh, unless another thread already did (or failed)."""
        with self.lock:
            if self.failure is not None:
                raise self.failure
            if self._data() != used:
                return
            try:
                self._refresh()
            except AuthError as exc:
                self.failure = exc
                raise

    def _data(self) -> dict[str, str]:
        c = self.credentials
        if c.auth_type == "BASIC":
            return {"username": c.username or "", "password": c.password or ""}
        return {"accessToken": c.access_token or "", "tokenType": c.token_type}

    def _refresh(self) -> None:
        c = self.credentials
        hint = login_hint(self.spec, c.connection)
        if self.oauth is None or not c.refresh_token:
            raise AuthError(
                f"the access token of connection {c.connection!r} expired or was refused; {hint}"
            )
        try:
            try:
                tokens = self.oauth.refresh(c.refresh_token)
            except MintTooSoon as exc:  # minted too recently: wait as asked, once
                self.sleep(min(exc.wait, MIN_MINT_INTERVAL + 5))
                tokens = self.oauth.refresh(c.refresh_token)
            updated = c.with_tokens(tokens, self.oauth.paths, self.clock())
            self.store.save(updated)  # persisted before use: the old refresh token is dead now
        except ClientRefused as exc:
            raise AuthError(f"refreshing the access token failed: {exc}") from None
        except (AuthError, CredentialError) as exc:
            raise AuthError(f"refreshing the access token failed: {exc}; {hint}") from None
        self.credentials = updated
        self.refreshes += 1


def load_credentials(spec: Spec, connection: str, store: CredentialStore) -> Credentials:
    """The stored credentials of a connection, or an error saying how to log in."""
    credentials = store.load(connection, spec.destination)
    if credentials is None:
        raise AuthError(
            f"connection {connection!r} has no credentials; log in first:"
            f" `dest-engine auth login {spec.destination} --connection {connection}`"
        )
    if credentials.destination != spec.destination:
        raise AuthError(
            f"connection {connection!r} belongs to destination {credentials.destination!r},"
            f" not {spec.destination!r}"
        )
    return credentials


# --- the authorization code flow --------------------------------------------


class _Callback(http.server.BaseHTTPRequestHandler):
    """Receives the browser's redirect with `code` and `state`."""

    server: _CallbackServer

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        self.server.result = {k: v[0] for k, v in query.items()}
        ok = "code" in query and query.get("state", [""])[0] == self.server.state
        text = (
            "dest-engine is connected. You can close this tab."
            if ok
            else "dest-engine could not complete the login. Go back to the terminal."
        )
        body = f"<!doctype html><title>dest-engine</title><p>{text}</p>".encode()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _CallbackServer(http.server.HTTPServer):
    result: dict[str, str] | None = None
    state: str = ""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a broken browser request: keep waiting for a good one, print no traceback


def login(
    spec: Spec,
    connection: str,
    store: CredentialStore,
    oauth: OAuthClient,
    open_url: Callable[[str], Any],
    port: int = 0,
    timeout: float = 300,
    clock: Callable[[], float] = time.time,
) -> Credentials:
    """Run the authorization code flow with a callback listener on 127.0.0.1, then store tokens."""
    try:
        server = _CallbackServer(("127.0.0.1", port), _Callback)
    except OSError as exc:
        raise AuthError(
            f"cannot listen on 127.0.0.1:{port} for the login's answer"
            f" ({exc.strerror or type(exc).__name__}); choose another with --port"
        ) from None
    server.state = secrets.token_urlsafe(24)
    server.timeout = timeout
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/callback"
    try:
        open_url(oauth.authorization_url(redirect_uri, server.state))
        deadline = time.monotonic() + timeout
        while server.result is None and time.monotonic() < deadline:
            server.handle_request()
    finally:
        server.server_close()
    result = server.result
    if result is None:
        raise AuthError(f"no answer from the browser within {timeout:g} seconds; try again")
    if result.get("state") != server.state:
        raise AuthError(
            "the login answer's state does not match this login (possible forgery); try again"
        )
    if "code" not in result:
        reason = result.get("error_description") or result.get("error") or "no code"
        raise AuthError(f"the login was not completed: {reason}")
    tokens = oauth.exchange_code(result["code"], redirect_uri)
    credentials = Credentials(
        connection=connection,
        destination=spec.destination,
        auth_type=auth_config(spec)["authType"],
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
    ).with_tokens(tokens, oauth.paths, clock())
    store.save(credentials)
    return credentials

"""Credentials: each connection's tokens, in a file only the user can read.

Files live in `$DEST_ENGINE_CONFIG_DIR/connections/` (default: the user's
config directory). Writes are atomic and synced before they count, so a
rotated refresh token survives a crash right after it was issued. Tokens are
checked when they arrive and when a file is read: one that could break an
HTTP header (a line break, white space, a non-ASCII character) is refused
with its field named, never shown.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

CONFIG_ENV = "DEST_ENGINE_CONFIG_DIR"
CLIENT_ID_ENV = "DEST_ENGINE_CLIENT_ID"
CLIENT_SECRET_ENV = "DEST_ENGINE_CLIENT_SECRET"
CONNECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600  # seconds: a token lifetime beyond ten years is a mistake
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z


class CredentialError(Exception):
    """Missing, unreadable or unusable credentials; the message says what to do."""


@dataclass(frozen=True)
class Credentials:
    """What dest-engine keeps for one connection. Secrets never leave this file."""

    connection: str
    destination: str
    auth_type: str
    access_token: str | None = None
    refresh_token: str | None = None
    token_type: str = "Bearer"
    expires_at: float | None = None
    scope: list[str] = field(default_factory=list)
    obtained_at: float = 0.0
    client_id: str | None = None
    client_secret: str | None = None
    username: str | None = None
    password: str | None = None

    def with_tokens(
        self,
        tokens: dict[str, Any],
        paths: dict[str, str],
        now: float,
        source: str = "the token response",
    ) -> Credentials:
        """These credentials updated from a token set; CredentialError if it is unusable.

        A refused token is never shown: the message names the field, `source` and the problem.
        """
        access_name = paths.get("access", "access_token")
        refresh_name = paths.get("refresh", "refresh_token")
        expires_name = paths.get("expires", "expires_in")
        tokens = _usual_spellings(tokens, expires_name)
        access = tokens.get(access_name)
        if access is None or access == "":
            raise CredentialError(f"{source} has no {access_name}")
        checks = [
            (access_name, _token, access),
            (refresh_name, _optional(_token), tokens.get(refresh_name)),
            ("token_type", _optional(_token), tokens.get("token_type")),
            (expires_name, _optional(_lifetime), tokens.get(expires_name)),
            ("scope", _optional(_scope_string), tokens.get("scope")),
        ]
        for name, check, value in checks:
            if problem := check(value):
                raise CredentialError(f"{name} in {source} {problem}")
        expires_in = tokens.get(expires_name)
        scope = tokens.get("scope")
        return replace(
            self,
            access_token=access,
            refresh_token=tokens.get(refresh_name) or self.refresh_token,
            token_type=tokens.get("token_type") or "Bearer",
            expires_at=None if expires_in is None else now + expires_in,
            scope=self.scope if scope is None else scope.split(),
            obtained_at=now,
        )

    def with_password(self, login: dict[str, Any], now: float, source: str) -> Credentials:
        """These credentials with BASIC's `username` and `password`; CredentialError if unusable."""
        username, password = login.get("username"), login.get("password")
        if username is None:
            raise CredentialError(
                f'{source} has no username (BASIC takes {{"username": ..., "password": ...}})'
            )
        for name, value in (("username", username), ("password", password)):
            if problem := _optional(_text)(value):
                raise CredentialError(f"{name} in {source} {problem}")
        if ":" in username:
            raise CredentialError(f"username in {source} contains ':', which BASIC does not allow")
        return replace(self, username=username, password=password, obtained_at=now)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """Everything about the connection except secrets."""
        now = time.time() if now is None else now
        left = None if self.expires_at is None else int(self.expires_at - now)
        return {
            "connection": self.connection,
            "destination": self.destination,
            "authType": self.auth_type,
            "scope": self.scope,
            "obtainedAt": _iso(self.obtained_at),
            "expiresAt": _iso(self.expires_at) if self.expires_at else None,
            "expiresInSeconds": left,
            "hasRefreshToken": bool(self.refresh_token),
        }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# --- what a field may hold: each check returns the problem, never the value -------------

Check = Callable[[Any], str | None]
TOKEN_CHARACTERS = re.compile(r"[^!-~]")  # a token: printable ASCII without spaces
SCOPE_CHARACTERS = re.compile(r"[^ -~]")  # scopes: printable ASCII, separated by spaces
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown(value: Any) -> str:
    """A JSON value as a message may show it: a number, boolean or null as is, else its type."""
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value)
    return text if len(text) <= 20 else text[:17] + "..."


def _bad_character(value: str, refused: re.Pattern[str]) -> str | None:
    """The first refused character of `value`, described by kind and position."""
    match = refused.search(value)
    if match is None:
        return None
    char = match.group()
    if char in "\r\n":
        what = "a line break"
    elif CONTROL_CHARACTERS.match(char):
        what = "a control character"
    elif char.isspace():
        what = "white space"
    else:
        what = "a non-ASCII character"
    return f"contains {what} at character {match.start() + 1}"


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, not {_shown(value)}"


def _token(value: Any) -> str | None:
    problem = _bad_character(value, TOKEN_CHARACTERS) if isinstance(value, str) else None
    return _string(value) or (problem and f"{problem} (a token is printable ASCII without spaces)")


def _text(value: Any) -> str | None:
    problem = _bad_character(value, CONTROL_CHARACTERS) if isinstance(value, str) else None
    return _string(value) or (problem and f"{problem} (control characters are not allowed)")


def _number(value: Any, low: float, high: float, what: str) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
        return None
    return f"must be {what}, not {_shown(value)}"


def _usual_spellings(tokens: dict[str, Any], expires_name: str) -> dict[str, Any]:
    """Spellings some token endpoints use: the lifetime as a numeric string, scopes as a list."""
    tokens = dict(tokens)
    expires = tokens.get(expires_name)
    if isinstance(expires, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", expires.strip()):
        tokens[expires_name] = float(expires)
    scope = tokens.get("scope")
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        tokens["scope"] = " ".join(scope)
    return tokens


def _lifetime(value: Any) -> str | None:
    return _number(
        value, 1, MAX_EXPIRES_IN, f"a number of seconds from 1 to {MAX_EXPIRES_IN} (10 years)"
    )


def _timestamp(value: Any) -> str | None:
    return _number(value, 0, MAX_TIMESTAMP, "a time in epoch seconds")


def _scope_string(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a string of scopes separated by spaces, not {_shown(value)}"
    problem = _bad_character(value, SCOPE_CHARACTERS)
    return problem and f"{problem} (scopes are printable ASCII separated by spaces)"


def _scope_list(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"must be a list of scopes, not {_shown(value)}"
    return next(filter(None, map(_token, value)), None)


STORED_FIELDS: dict[str, Check] = {
    "destination": _string,
    "auth_type": _string,
    "access_token": _optional(_token),
    "refresh_token": _optional(_token),
    "token_type": _token,
    "expires_at": _optional(_timestamp),
    "scope": _scope_list,
    "obtained_at": _timestamp,
    "client_id": _optional(_string),
    "client_secret": _optional(_string),
    "username": _optional(_text),
    "password": _optional(_text),
}


def _stored(data: Any, connection: str) -> Credentials | str:
    """The credentials a file holds, or what is wrong with it."""
    if not isinstance(data, dict):
        return f"holds {_shown(data)}, not a JSON object"
    try:
        credentials = Credentials(**data)
    except TypeError:
        return "lacks fields dest-engine needs, or has fields it does not know"
    if credentials.connection != connection:
        return "holds another connection"
    for name, check in STORED_FIELDS.items():
        if problem := check(getattr(credentials, name)):
            return f"is damaged: {name} {problem}"
    return credentials


def config_dir() -> Path:
    """Where dest-engine keeps credentials: $DEST_ENGINE_CONFIG_DIR or the user config folder."""
    override = os.environ.get(CONFIG_ENV)
    return Path(override) if override else Path(platformdirs.user_config_dir("dest-engine"))


class CredentialStore:
    """Reads and writes connections' credentials."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = (directory or config_dir()) / "connections"

    def path(self, connection: str) -> Path:
        if not CONNECTION_NAME.match(connection):
            raise CredentialError(
                f"connection name {connection!r} must be letters, digits, '.', '_' or '-'"
                " (64 at most), starting with a letter or digit"
            )
        return self.directory / f"{connection}.json"

    def load(self, connection: str, spec: str = "SPEC") -> Credentials | None:
        """The connection's credentials, None if it has none, CredentialError if unusable.

        `spec` completes the login command the error suggests.
        """
        path = self.path(connection)
        try:
            found = _stored(json.loads(path.read_text(encoding="utf-8")), connection)
        except FileNotFoundError:
            return None
        except OSError as exc:
            found = f"cannot be read ({exc.strerror or type(exc).__name__})"
        except (ValueError, RecursionError):
            found = "is not a JSON credentials file"
        if isinstance(found, Credentials):
            return found
        raise CredentialError(
            f"the credentials file {path} of connection {connection!r} {found};"
            f" log in again (`dest-engine auth login {spec} --connection {connection}`)"
            f" or forget them (`dest-engine auth logout --connection {connection}`)"
        )

    def save(self, credentials: Credentials) -> None:
        """Write atomically with mode 0600; return only once the data is on disk."""
        path = self.path(credentials.connection)
        try:
            self._write(path, credentials)
        except OSError as exc:
            raise CredentialError(
                f"the credentials of connection {credentials.connection!r} cannot be saved in"
                f" {self.directory} ({exc.strerror or type(exc).__name__}); make that folder"
                f" writable, or choose another with {CONFIG_ENV}"
            ) from None

    def _write(self, path: Path, credentials: Credentials) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(asdict(credentials), out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def delete(self, connection: str) -> bool:
        """Forget the connection's credentials; False if it had none."""
        path = self.path(connection)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise CredentialError(
                f"the credentials file {path} of connection {connection!r} cannot be removed"
                f" ({exc.strerror or type(exc).__name__}); remove it by hand"
            ) from None
        return True

"""Credentials: each connection's tokens, in a file only the user can read.

Files live in `$DEST_ENGINE_CONFIG_DIR/connections/` (default: the user's
config directory). Writes are atomic and synced before they count, so a
rotated refresh token survives a crash right after it was issued.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

CONFIG_ENV = "DEST_ENGINE_CONFIG_DIR"
CONNECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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

    def with_tokens(self, tokens: dict[str, Any], paths: dict[str, str], now: float) -> Credentials:
        """These credentials updated from a token endpoint response."""
        access = tokens.get(paths.get("access", "access_token"))
        if not isinstance(access, str) or not access:
            raise CredentialError("the token response has no access token")
        refresh = tokens.get(paths.get("refresh", "refresh_token")) or self.refresh_token
        expires_in = tokens.get(paths.get("expires", "expires_in"))
        scope = tokens.get("scope")
        return replace(
            self,
            access_token=access,
            refresh_token=refresh,
            token_type=str(tokens.get("token_type") or "Bearer"),
            expires_at=now + float(expires_in) if isinstance(expires_in, int | float) else None,
            scope=scope.split() if isinstance(scope, str) else self.scope,
            obtained_at=now,
        )

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

    def load(self, connection: str) -> Credentials | None:
        path = self.path(connection)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Credentials(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise CredentialError(
                f"the credentials of connection {connection!r} ({path}) cannot be read"
                f" ({type(exc).__name__}); run `dest-engine auth login` again"
            ) from None

    def save(self, credentials: Credentials) -> None:
        """Write atomically with mode 0600; return only once the data is on disk."""
        path = self.path(credentials.connection)
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
        path = self.path(connection)
        if not path.exists():
            return False
        path.unlink()
        return True

"""`dest-engine auth`: connect an account (login, import), show its status, log out."""

from __future__ import annotations

import json
import os
import sys
import time
import webbrowser

import click
import httpx

from engine.auth import (
    AuthError,
    OAuthClient,
    auth_config,
    login,
    token_paths,
)
from engine.cli_common import EXIT_USAGE, endpoint_option, endpoints_or_exit, fail, spec_or_exit
from engine.credentials import (
    CLIENT_ID_ENV,
    CLIENT_SECRET_ENV,
    CredentialError,
    Credentials,
    CredentialStore,
)


def client_credentials(stored: Credentials | None = None, prompt: bool = True) -> tuple[str, str]:
    """Client id and secret: from the environment, the stored connection, or a prompt."""
    client_id = os.environ.get(CLIENT_ID_ENV) or (stored.client_id if stored else None)
    secret = os.environ.get(CLIENT_SECRET_ENV) or (stored.client_secret if stored else None)
    if prompt:
        client_id = client_id or click.prompt("OAuth client id", err=True)
        secret = secret or click.prompt("OAuth client secret", hide_input=True, err=True)
    return client_id or "", secret or ""


def store_for(connection: str) -> CredentialStore:
    """The credential store, once `connection` is a valid name (else exit 2)."""
    store = CredentialStore()
    try:
        store.path(connection)
    except CredentialError as exc:
        fail(str(exc), EXIT_USAGE)
    return store


@click.group()
def auth() -> None:
    """Connect an account: log in, import tokens, show status, log out.

    Tokens are kept per connection in a file only you can read (mode 0600) in
    your config folder, or in $DEST_ENGINE_CONFIG_DIR. OAuth client id and
    secret come from $DEST_ENGINE_CLIENT_ID / $DEST_ENGINE_CLIENT_SECRET or a prompt.
    """


@auth.command("login")
@click.argument("spec_ref", metavar="SPEC")
@click.option("--connection", required=True, help="Name of the connection (an account).")
@click.option(
    "--no-browser", is_flag=True, help="Print the login URL instead of opening a browser."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8910,
    show_default=True,
    help="Port of the callback listener on 127.0.0.1 (the redirect URI is"
    " http://127.0.0.1:PORT/callback); 0 picks a free one.",
)
@click.option(
    "--timeout",
    type=click.IntRange(1, 86400),
    default=300,
    show_default=True,
    help="Seconds to wait for the browser.",
)
@endpoint_option
def auth_login(
    spec_ref: str,
    connection: str,
    no_browser: bool,
    port: int,
    timeout: int,
    overrides: tuple[str, ...],
) -> None:
    """Log in through the browser (OAuth 2 authorization code) and store the tokens."""
    spec = spec_or_exit(spec_ref)
    if auth_config(spec)["authType"] != "OAUTH2":
        raise click.UsageError(
            f"{spec.destination} does not use OAuth 2: use `dest-engine auth import`"
        )
    endpoints = endpoints_or_exit(overrides)
    store = store_for(connection)
    client_id, secret = client_credentials()

    def open_url(url: str) -> None:
        if no_browser or not webbrowser.open(url):
            click.echo(
                f"Open this URL in a browser to connect {spec.data['title']}:\n{url}", err=True
            )
        else:
            click.echo("Waiting for the login in your browser...", err=True)

    with httpx.Client(timeout=30) as http:
        oauth = OAuthClient(spec, client_id, secret, http, endpoints)
        try:
            credentials = login(spec, connection, store, oauth, open_url, port, timeout)
        except (AuthError, CredentialError, OSError) as exc:
            fail(str(exc))
    click.echo(
        f"connected {connection!r} ({spec.destination}); credentials in {store.path(connection)}",
        err=True,
    )
    _print_status(credentials, "text")


@auth.command("import")
@click.argument("spec_ref", metavar="SPEC")
@click.option("--connection", required=True, help="Name of the connection (an account).")
def auth_import(spec_ref: str, connection: str) -> None:
    """Read a token set as JSON from stdin (for machines without a browser).

    OAuth token responses work as they are (access_token, refresh_token,
    expires_in, scope); BASIC takes {"username": ..., "password": ...}.
    """
    spec = spec_or_exit(spec_ref)
    config = auth_config(spec)
    if config["authType"] == "NONE":
        fail(f"{spec.destination} needs no credentials; there is nothing to import", EXIT_USAGE)
    store = store_for(connection)
    try:
        tokens = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    except OSError as exc:
        fail(f"stdin cannot be read ({exc.strerror or type(exc).__name__})", EXIT_USAGE)
    except UnicodeDecodeError:
        fail("stdin is not UTF-8 text", EXIT_USAGE)
    except json.JSONDecodeError as exc:
        fail(f"stdin is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", EXIT_USAGE)
    except (ValueError, RecursionError):
        fail("stdin is JSON too deeply nested or with too long a number", EXIT_USAGE)
    if not isinstance(tokens, dict):
        fail("stdin must hold a JSON object", EXIT_USAGE)
    client_id, secret = client_credentials(prompt=False)
    base = Credentials(
        connection,
        spec.destination,
        config["authType"],
        client_id=client_id or None,
        client_secret=secret or None,
    )
    try:
        if config["authType"] == "BASIC":
            credentials = base.with_password(tokens, time.time(), "stdin")
        else:
            credentials = base.with_tokens(tokens, token_paths(config), time.time(), "stdin")
    except CredentialError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        store.save(credentials)
    except CredentialError as exc:
        fail(str(exc))
    click.echo(f"imported credentials for {connection!r} ({spec.destination})", err=True)
    _print_status(credentials, "text")


@auth.command("status")
@click.option("--connection", required=True, help="Name of the connection.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def auth_status(connection: str, fmt: str) -> None:
    """Show a connection's destination, scopes and token expiry (never the tokens)."""
    store = store_for(connection)
    try:
        credentials = store.load(connection)
    except CredentialError as exc:
        fail(str(exc))
    if credentials is None:
        fail(
            f"connection {connection!r} has no credentials; run"
            f" `dest-engine auth login SPEC --connection {connection}`"
        )
    _print_status(credentials, fmt)


@auth.command("logout")
@click.option("--connection", required=True, help="Name of the connection.")
def auth_logout(connection: str) -> None:
    """Forget a connection's credentials."""
    store = store_for(connection)
    try:
        removed = store.delete(connection)
    except CredentialError as exc:
        fail(str(exc))
    click.echo(
        f"logged out of {connection!r}" if removed else f"{connection!r} had no credentials",
        err=True,
    )


def _print_status(credentials: Credentials, fmt: str) -> None:
    info = credentials.summary()
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    expiry = "no expiry" if info["expiresAt"] is None else f"expires {info['expiresAt']}"
    if info["expiresInSeconds"] is not None:
        left = info["expiresInSeconds"]
        expiry += " (expired)" if left <= 0 else f" (in {left // 60} min)"
    click.echo(f"connection: {info['connection']}")
    click.echo(f"destination: {info['destination']} ({info['authType']})")
    click.echo(f"scopes: {' '.join(info['scope']) or '-'}")
    click.echo(
        f"token: obtained {info['obtainedAt']}, {expiry},"
        f" refresh token: {'yes' if info['hasRefreshToken'] else 'no'}"
    )

"""What the commands share: exit codes, common options, and how an unusable input ends a run."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from engine.endpoints import EndpointError, Endpoints
from engine.findings import InvalidInput, UnreadableInput
from engine.spec import Spec, load_spec

# 1 is a failed run or an invalid input; 2 an unreadable input or a wrong command line.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED, EXIT_STOPPED = 0, 1, 2, 3, 4

state_option = click.option(
    "--state",
    type=click.Path(dir_okay=False),
    help="The ledger file (default: per connection, in your data folder or $DEST_ENGINE_DATA_DIR).",
)
endpoint_option = click.option(
    "--endpoint-override",
    "overrides",
    multiple=True,
    metavar="ORIGIN=ORIGIN",
    help="Send what would go to ORIGIN to another origin, e.g."
    " https://api.outreach.io=http://127.0.0.1:8080 (plain http only to loopback). Repeatable.",
)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Say what went wrong on stderr and exit with `code`."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def unusable(exc: InvalidInput | UnreadableInput) -> NoReturn:
    """An input file that cannot be used: its findings, then exit 1 (invalid) or 2 (unreadable)."""
    if isinstance(exc, UnreadableInput):
        fail(str(exc), EXIT_USAGE)
    for finding in exc.findings:
        click.echo(str(finding), err=True)
    sys.exit(EXIT_FAILED)


def spec_or_exit(ref: str) -> Spec:
    """The spec, or its findings on stderr and exit 1 (2 when it cannot be read)."""
    try:
        return load_spec(ref)
    except (InvalidInput, UnreadableInput) as exc:
        unusable(exc)


def endpoints_or_exit(overrides: tuple[str, ...]) -> Endpoints:
    """The --endpoint-override rewrites, or a usage error (exit 2)."""
    try:
        return Endpoints(overrides)
    except EndpointError as exc:
        raise click.UsageError(str(exc)) from None

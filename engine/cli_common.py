"""What the commands share: exit codes, common options, and how an unusable input ends a run."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NoReturn, TextIO

import click

from engine.endpoints import EndpointError, Endpoints
from engine.findings import InvalidInput, UnreadableInput
from engine.profiles import Record, read_profiles
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


def check_output(option: str, path: str, inputs: Mapping[str, str | Path | None]) -> None:
    """Before any work: refuse (exit 2) an output file that is one of `inputs` (by what they
    are, e.g. "profiles") or that cannot be written. `-` (stdout) is always fine."""
    if path == "-":
        return
    out = Path(path)
    for name, source in inputs.items():
        if source is not None and str(source) != "-" and _same_file(out, Path(source)):
            fail(f"{option} {path} is the {name} file; choose another file", EXIT_USAGE)
    problem = unwritable(out)
    if problem:
        fail(f"cannot write {path}: {problem}", EXIT_USAGE)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def unwritable(path: Path) -> str | None:
    """Why a file cannot be created or replaced at `path`; None when it can."""
    if path.exists():
        return None if os.access(path, os.W_OK) else "permission denied"
    return _folder_problem(path.parent)


def unwritable_folder(path: Path) -> str | None:
    """Why files cannot be written under the folder `path`, made with its parents as needed."""
    while not path.exists() and path != path.parent:
        path = path.parent  # the nearest folder that exists is where the first one is made
    return _folder_problem(path)


def _folder_problem(folder: Path) -> str | None:
    if not folder.exists():
        return f"the folder {folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    return None if os.access(folder, os.W_OK | os.X_OK) else "permission denied"


@contextlib.contextmanager
def output_file(path: str | None) -> Iterator[TextIO | None]:
    """`path` open for writing (stdout for `-`; None for no path), or exit 2 saying why not."""
    if path is None or path == "-":
        yield None if path is None else sys.stdout
        return
    try:
        out = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as exc:
        fail(f"cannot write {path}: {os_reason(exc)}", EXIT_USAGE)
    with out:
        yield out


def os_reason(exc: OSError) -> str:
    """`no such file or directory`: an OS error's reason, as the rest of a message."""
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]


def profiles_or_exit(source: str) -> Iterator[Record]:
    """The profiles, with a file opened now rather than at the first read, so a missing or
    unreadable file ends the command (exit 2) before any work. Stdin is read when needed."""
    records = read_profiles(source)
    if source == "-":
        return records
    try:
        first = next(records, None)
    except UnreadableInput as exc:
        unusable(exc)
    return records if first is None else itertools.chain([first], records)

"""The commands that deliver and read the ledger: push, status, failed."""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.activation import load_activation
from engine.auth import (
    AuthError,
    OAuthClient,
    TokenManager,
    auth_config,
    load_credentials,
)
from engine.cli_auth import client_credentials
from engine.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_STOPPED,
    EXIT_USAGE,
    check_output,
    endpoint_option,
    endpoints_or_exit,
    fail,
    output_file,
    profiles_or_exit,
    spec_or_exit,
    state_option,
    unusable,
)
from engine.credentials import CredentialError, CredentialStore
from engine.delivery import Delivery, DeliveryOptions, Outcome
from engine.endpoints import Endpoints
from engine.findings import InvalidInput, UnreadableInput
from engine.ledger import Ledger, default_path
from engine.pipeline import RENDER_ERROR, Pipeline, redacted_auth_data
from engine.profiles import is_json_array
from engine.ratelimit import RateLimiter, clock_time
from engine.spec import Spec
from engine.sync import Sync


@click.command()
@click.argument("spec_ref", metavar="SPEC")
@click.option(
    "--activation", required=True, type=click.Path(dir_okay=False), help="Activation file."
)
@click.option(
    "--profiles", required=True, help="Profiles: a JSONL or JSON-array file, or - for stdin."
)
@click.option(
    "--connection", help="Connection whose credentials to use (default: the activation's)."
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    help="Write every profile's outcome here as JSONL (- for stdout).",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="When the rate-limit budget is spent, stop (exit 4) instead of waiting for the reset.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Requests in flight at most.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    help="Seconds to wait for a response (default: the spec's retryPolicy.timeoutSeconds).",
)
@click.option("--limit", type=click.IntRange(min=0), help="Push only the first N profiles.")
@click.option("--full", is_flag=True, help="Send every profile, changed or not.")
@click.option(
    "--follow",
    is_flag=True,
    help="Keep reading profiles as they arrive (with --profiles -) until the input ends or"
    " SIGTERM/Ctrl-C; what is not sent yet stays staged for the next run.",
)
@state_option
@endpoint_option
def push(
    spec_ref: str,
    activation: str,
    profiles: str,
    connection: str | None,
    report_path: str | None,
    no_wait: bool,
    concurrency: int,
    timeout: float | None,
    limit: int | None,
    full: bool,
    follow: bool,
    state: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Deliver what changed: render exactly what `render` shows, then send it.

    Profiles are first staged in the connection's ledger (only identities whose
    data differs from what the destination last received; the newest update
    wins), then sent. A run that is interrupted or killed loses nothing: the
    next run sends what is still staged.

    Exit 0 when every profile was delivered, unchanged or skipped by design, 3
    when some were rejected, 1 when the run failed or a profile could not be
    rendered, 4 when it stopped with work left (--no-wait, an interruption, or a
    wait longer than the spec allows), 2 when an input cannot be read.
    """
    spec = spec_or_exit(spec_ref)
    endpoints = endpoints_or_exit(overrides)
    try:
        act = load_activation(activation, spec)
        pipeline = Pipeline(spec, act, redacted_auth_data(spec))
    except (InvalidInput, UnreadableInput) as exc:
        unusable(exc)
    connection = connection or act.connection
    if report_path:
        ledger_path = Path(state) if state else default_path(connection)
        inputs: dict[str, str | Path] = {"profiles": profiles, "activation": activation}
        inputs |= {"spec": spec.path, "ledger": ledger_path}
        check_output("--report", report_path, inputs)
    records = profiles_or_exit(profiles)
    if limit is not None:
        records = itertools.islice(records, limit)
    unreadable: UnreadableInput | None = None
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits) as http, _progress(Console(stderr=True), profiles) as progress:
        tokens = _tokens(spec, connection, CredentialStore(), http, endpoints)
        ledger = _ledger(connection, state)
        ledger.set_meta(
            "run", {"spec": str(spec.path.resolve()), "activation": str(Path(activation).resolve())}
        )
        run = ledger.start_run("push")
        delivery = _delivery(
            spec, pipeline, tokens, http, endpoints, progress, no_wait, concurrency, timeout
        )
        sync = Sync(spec, pipeline, ledger, delivery)
        counts = _counts()
        with output_file(report_path) as report, _interruptible(delivery):
            if follow:
                outcomes = sync.follow(records)
            else:
                outcomes = itertools.chain(sync.stage(records, full), sync.send())
            try:
                _consume(outcomes, report, progress, counts)
            except UnreadableInput as exc:  # the profiles, past their start
                unreadable = exc
    ledger.set_meta("rateLimit", delivery.limiter.observed or None)
    summary = _summary(pipeline, counts, delivery, sync)
    code = EXIT_USAGE if unreadable else _exit_code(counts, delivery)
    ledger.finish_run(run, {"summary": summary, "exit": code})
    ledger.close()
    click.echo(summary, err=True)
    if unreadable:
        unusable(unreadable)
    sys.exit(code)


def _ledger(connection: str, state: str | None) -> Ledger:
    try:
        return Ledger(Path(state) if state else default_path(connection))
    except (OSError, sqlite3.Error) as exc:
        fail(f"the ledger {state or default_path(connection)} cannot be opened: {exc}")


def _existing_ledger(connection: str, state: str | None) -> Ledger:
    """The connection's ledger, or exit 1 when there is none (none is created)."""
    path = Path(state) if state else default_path(connection)
    if not path.exists():
        fail(f"no ledger for {connection!r} at {path}: nothing was pushed with it yet")
    return _ledger(connection, state)


def _delivery(
    spec: Spec,
    pipeline: Pipeline,
    tokens: TokenManager | None,
    http: httpx.Client,
    endpoints: Endpoints,
    progress: _Log,
    no_wait: bool,
    concurrency: int,
    timeout: float | None,
) -> Delivery:
    announced: set[float] = set()

    def waiting(until: float, why: str) -> None:
        if until not in announced:  # once per wait, however many senders wait
            announced.add(until)
            progress.log(f"{why}; resuming at {clock_time(until)}")

    limiter = RateLimiter(spec.data.get("rateLimit"), on_wait=waiting)
    options = DeliveryOptions(concurrency, not no_wait, timeout)
    return Delivery(pipeline.templates, tokens, limiter, http, endpoints, options, progress.log)


@contextlib.contextmanager
def _interruptible(delivery: Delivery) -> Iterator[None]:
    """SIGTERM and Ctrl-C stop sending new requests; the ones in flight finish and are recorded."""

    def stop(signum: int, _frame: Any) -> None:
        delivery.stop(
            f"interrupted ({signal.Signals(signum).name}); what was not sent stays staged"
        )

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _tokens(
    spec: Spec, connection: str, store: CredentialStore, http: httpx.Client, endpoints: Endpoints
) -> TokenManager | None:
    config = auth_config(spec)
    if config["authType"] == "NONE":
        return None
    try:
        credentials = load_credentials(spec, connection, store)
    except (AuthError, CredentialError) as exc:
        fail(str(exc))
    oauth = None
    if config["authType"] == "OAUTH2":
        client_id, secret = client_credentials(credentials, prompt=False)
        oauth = OAuthClient(spec, client_id, secret, http, endpoints)
    return TokenManager(spec, store, credentials, oauth)


class _Log:
    """Progress for a terminal (rich) or plain log lines."""

    def __init__(self, console: Console, total: int | None) -> None:
        self.console = console
        self.bar: Progress | None = None
        self.task: Any = None
        self.last = time.monotonic()
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("pushing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=console,
            )
            self.task = self.bar.add_task("push", total=total, detail="")

    def log(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def advance(self, done: int, counts: Counter[str]) -> None:
        detail = ", ".join(f"{n:,} {state}" for state, n in sorted(counts.items()))
        if self.bar is not None:
            self.bar.update(self.task, completed=done, detail=detail)
        elif time.monotonic() - self.last >= 10:
            self.last = time.monotonic()
            self.log(f"{done:,} outcomes so far: {detail}")


@contextlib.contextmanager
def _progress(console: Console, profiles: str) -> Iterator[_Log]:
    total = _count_lines(profiles)
    log = _Log(console, total)
    if log.bar is None:
        yield log
        return
    with log.bar:
        yield log


def _count_lines(profiles: str) -> int | None:
    """Profiles in a JSONL file (for the progress bar); None for stdin or JSON arrays."""
    if profiles == "-":
        return None
    try:
        if is_json_array(Path(profiles)):
            return None
        with open(profiles, "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return None


def _counts() -> dict[str, Counter[str]]:
    """Outcomes by state, skipped profiles by category, rejections by rule."""
    return {"states": Counter(), "skipped": Counter(), "rejected": Counter()}


def _consume(
    outcomes: Iterator[Outcome],
    report: TextIO | None,
    progress: _Log,
    counts: dict[str, Counter[str]],
) -> None:
    """Count, log and report every outcome as it comes."""
    states, skipped, rejected = counts["states"], counts["skipped"], counts["rejected"]
    done = 0
    for outcome in outcomes:
        states[outcome.state] += 1
        if outcome.state == "skipped":
            skipped[outcome.category or "other"] += 1
            done += 1
            if outcome.category == RENDER_ERROR:  # a template problem, not a skip by design
                progress.log(
                    f"{RENDER_ERROR} {', '.join(outcome.identities or outcome.refs)}:"
                    f" {outcome.message}"
                )
        else:
            done += len(outcome.refs)
            if outcome.state == "rejected":
                rejected[outcome.rule or "no rule"] += 1
            if outcome.state in ("rejected", "failed"):
                progress.log(
                    f"{outcome.state} {', '.join(outcome.identities or outcome.refs)}:"
                    f" {outcome.message}"
                )
        if report is not None:
            report.write(json.dumps(outcome.report(), ensure_ascii=False) + "\n")
        progress.advance(done, states)


def _by(counter: Counter[str]) -> str:
    return (
        " (" + ", ".join(f"{n:,} {k}" for k, n in sorted(counter.items())) + ")" if counter else ""
    )


def _summary(
    pipeline: Pipeline, counts: dict[str, Counter[str]], delivery: Delivery, sync: Sync
) -> str:
    s = counts["states"]
    sent = s["delivered"] + s["rejected"] + s["failed"]
    lines = [
        f"read {pipeline.tally.read:,} profiles; {s['skipped']:,} skipped{_by(counts['skipped'])};"
        f" {sync.unchanged:,} unchanged; {sync.staged:,} staged",
        f"requests: {sent:,} sent, {s['delivered']:,} delivered,"
        f" {s['rejected']:,} rejected{_by(counts['rejected'])},"
        f" {s['failed']:,} failed, {s['pending']:,} pending; {delivery.retries:,} retried",
    ]
    if delivery.stopped:
        lines.append(f"stopped: {delivery.stopped}")
    return "\n".join(lines)


def _exit_code(counts: dict[str, Counter[str]], delivery: Delivery) -> int:
    s = counts["states"]
    if delivery.failed_run or s["failed"] or counts["skipped"][RENDER_ERROR]:
        return EXIT_FAILED
    if s["pending"]:
        return EXIT_STOPPED
    return EXIT_REJECTED if s["rejected"] else EXIT_OK


@click.command()
@click.option("--connection", required=True, help="Name of the connection.")
@state_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def status(connection: str, state: str | None, fmt: str) -> None:
    """What the ledger knows: delivered, staged and rejected identities, last runs, rate limit."""
    path = Path(state) if state else default_path(connection)
    ledger = _existing_ledger(connection, state)
    info = ledger.status()
    ledger.close()
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    pending = info["pending"]
    click.echo(f"connection: {connection} (ledger {path})")
    click.echo(f"delivered: {info['delivered']:,} identities")
    click.echo(f"staged: {sum(pending.values()):,}{_by(Counter(pending))}")
    letters = info["deadLetters"]
    click.echo(f"rejected (dead letters): {sum(letters.values()):,}{_by(Counter(letters))}")
    budget = info["rateLimit"]
    if budget:
        reset = f", resets at {clock_time(budget['resetAt'])}" if "resetAt" in budget else ""
        click.echo(f"rate limit last seen: {budget.get('remaining', '?')} requests left{reset}")
    for run in info["runs"]:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run["startedAt"]))
        outcome = (run["summary"] or {}).get("summary", "did not finish (interrupted or killed)")
        click.echo(
            f"run {run['id']} ({run['command']}, {started} UTC): " + outcome.replace("\n", "; ")
        )


@click.group()
def failed() -> None:
    """Rejected profiles (dead letters): list, show, export, and retry them."""


@failed.command("list")
@click.option("--connection", required=True, help="Name of the connection.")
@state_option
@click.option("--rule", help="Only those of this error rule.")
def failed_list(connection: str, state: str | None, rule: str | None) -> None:
    """One line per rejected identity: identity, rule, status, message."""
    for letter in _letters(connection, state, rule):
        click.echo(
            f"{letter['identity']}\t{letter['rule']}\t{letter['status']}\t{letter['message']}"
        )


@failed.command("show")
@click.argument("identity")
@click.option("--connection", required=True, help="Name of the connection.")
@state_option
def failed_show(identity: str, connection: str, state: str | None) -> None:
    """Everything kept about one rejected identity (e.g. OutreachId=123), as JSON."""
    matches = [
        letter for letter in _letters(connection, state, None) if letter["identity"] == identity
    ]
    if not matches:
        listing = f"dest-engine failed list --connection {connection}"
        fail(f"no dead letter for {identity!r}; `{listing}` shows them")
    click.echo(json.dumps(matches[0], indent=2, ensure_ascii=False))


@failed.command("export")
@click.option("--connection", required=True, help="Name of the connection.")
@state_option
@click.option("--rule", help="Only those of this error rule.")
def failed_export(connection: str, state: str | None, rule: str | None) -> None:
    """All dead letters as JSONL on stdout."""
    for letter in _letters(connection, state, rule):
        click.echo(json.dumps(letter, ensure_ascii=False))


@failed.command("retry")
@click.option("--connection", required=True, help="Name of the connection.")
@state_option
@click.option("--rule", help="Only those of this error rule.")
@click.option("--spec", "spec_ref", help="The spec (default: the one of the last push).")
@click.option(
    "--activation",
    type=click.Path(dir_okay=False),
    help="The activation (default: the one of the last push).",
)
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True)
@endpoint_option
def failed_retry(
    connection: str,
    state: str | None,
    rule: str | None,
    spec_ref: str | None,
    activation: str | None,
    concurrency: int,
    overrides: tuple[str, ...],
) -> None:
    """Send rejected profiles again through the normal pipeline (after fixing the cause)."""
    ledger = _existing_ledger(connection, state)
    last = ledger.meta("run") or {}
    spec_ref, activation = spec_ref or last.get("spec"), activation or last.get("activation")
    if not spec_ref or not activation:
        fail("give --spec and --activation (no earlier push recorded them)")
    spec = spec_or_exit(spec_ref)
    endpoints = endpoints_or_exit(overrides)
    try:
        pipeline = Pipeline(spec, load_activation(activation, spec), redacted_auth_data(spec))
    except (InvalidInput, UnreadableInput) as exc:
        unusable(exc)
    moved = ledger.requeue(rule)
    click.echo(f"retrying {moved:,} rejected identities", err=True)
    run = ledger.start_run("failed retry")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits) as http, _progress(Console(stderr=True), "-") as progress:
        tokens = _tokens(spec, connection, CredentialStore(), http, endpoints)
        delivery = _delivery(
            spec, pipeline, tokens, http, endpoints, progress, False, concurrency, None
        )
        sync = Sync(spec, pipeline, ledger, delivery)
        counts = _counts()
        with _interruptible(delivery):
            _consume(sync.send(), None, progress, counts)
    summary = _summary(pipeline, counts, delivery, sync)
    ledger.finish_run(run, {"summary": summary, "exit": _exit_code(counts, delivery)})
    ledger.close()
    click.echo(summary, err=True)
    sys.exit(_exit_code(counts, delivery))


def _letters(connection: str, state: str | None, rule: str | None) -> list[dict[str, Any]]:
    ledger = _existing_ledger(connection, state)
    letters = ledger.dead_letters(rule)
    ledger.close()
    return letters

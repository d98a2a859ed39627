"""The `dest-engine` command line: click commands over the pipeline stages."""

from __future__ import annotations

import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource
from rich.console import Console
from rich.syntax import Syntax

from engine.activation import check_activation, load_activation
from engine.catalog import example_path
from engine.cli_auth import auth
from engine.cli_authoring import docs, explain, list_destinations, new
from engine.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    check_output,
    fail,
    output_file,
    profiles_or_exit,
    state_option,
    unusable,
)
from engine.cli_delivery import failed, push, status
from engine.findings import (
    Document,
    Finding,
    InvalidInput,
    UnreadableInput,
    display_path,
    read_text,
)
from engine.ledger import Ledger, default_path
from engine.mapping import Skipped
from engine.output import (
    count,
    forecast,
    request_http,
    request_json,
    request_pretty,
    skipped_json,
    skipped_line,
    summary,
)
from engine.pipeline import (
    RENDER_ERROR,
    Pipeline,
    preview_activation,
    redacted_auth_data,
    target_problem,
    template_groups,
)
from engine.profiles import Record
from engine.samples import sample_profiles
from engine.spec import Spec, check_spec, load_spec
from engine.sync import Sync, preview
from engine.templating import RenderError, Request, TemplateSource


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dest-engine")
def main() -> None:
    """dest-engine: activate customer audiences into SaaS destinations, declaratively.

    A destination is a JSON spec plus Jinja templates. `validate` checks one,
    `render` shows the exact requests (a dry run), `push` sends them.
    """


@main.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option(
    "--activation",
    "activation",
    type=click.Path(dir_okay=False),
    help="Also check this activation file against the (single) spec.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: machine-readable findings.",
)
def validate(specs: tuple[str, ...], activation: str | None, fmt: str) -> None:
    """Check destination specs (paths, or names from ./destinations and the bundled ones).

    Reports JSON syntax errors, then every JSON Schema error, then semantic
    problems (templates, names they use, regexes, hosts, error-rule examples),
    each with file, line and JSON pointer. Exit 0 valid, 1 invalid, 2 unreadable.
    """
    if activation and len(specs) != 1:
        raise click.UsageError("--activation checks one spec: give exactly one SPEC")
    results: list[dict[str, Any]] = []
    unreadable = False
    for ref in specs:
        try:
            findings = check_spec(ref)
            if activation and not _errors(findings):
                findings += check_activation(activation, ref)
        except UnreadableInput as exc:
            unreadable = True
            results.append({"spec": ref, "valid": False, "error": str(exc), "findings": []})
            continue
        results.append({"spec": ref, "valid": not _errors(findings), "findings": findings})
    _print_validation(results, fmt)
    if unreadable:
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_OK if all(r["valid"] for r in results) else EXIT_FAILED)


def _errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def _print_validation(results: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        out = [{**r, "findings": [f.as_dict() for f in r["findings"]]} for r in results]
        click.echo(json.dumps({"results": out}, indent=2, ensure_ascii=False))
        return
    for r in results:
        if "error" in r:
            click.echo(f"error: {r['error']}", err=True)
            continue
        for finding in r["findings"]:
            click.echo(str(finding))
        errors = len(_errors(r["findings"]))
        warnings = len(r["findings"]) - errors
        verdict = "valid" if r["valid"] else "invalid"
        click.echo(
            f"{r['spec']}: {verdict} ({count(errors, 'error')}, {count(warnings, 'warning')})"
        )


@main.command()
@click.argument("spec_ref", metavar="SPEC")
@click.option(
    "--activation",
    type=click.Path(dir_okay=False),
    help="Activation file (default: the destination's bundled example).",
)
@click.option(
    "--diff",
    is_flag=True,
    help="Instead of requests, show per identity what changed since the last push (field by"
    " field: old -> new) and what is unchanged.",
)
@click.option("--connection", help="With --diff: the connection whose ledger to compare with.")
@state_option
@click.option(
    "--profiles",
    help="Profiles: a JSONL or JSON-array file, or - for stdin (default: the bundled example).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "pretty", "http"]),
    default="json",
    show_default=True,
    help="json: one request per line; pretty: readable; http: raw HTTP messages.",
)
@click.option(
    "--skipped",
    "skipped_path",
    type=click.Path(dir_okay=False),
    help="Write skipped profiles to this file as JSONL instead of to stderr (not -: stdout"
    " carries the requests). Render errors are shown on stderr as well.",
)
@click.option("--limit", type=click.IntRange(min=0), help="Render only the first N profiles.")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    help="Render N generated sample profiles instead of a profiles file.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample.")
@click.option(
    "--template",
    "template_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Render this template instead of the spec's body (needs --target-profiles).",
)
@click.option(
    "--target-profiles",
    "target_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Target-shaped profiles (identityMap, attributes, segmentMembership) as a JSON"
    " array, for --template.",
)
@click.pass_context
def render(
    ctx: click.Context,
    diff: bool,
    connection: str | None,
    state: str | None,
    spec_ref: str,
    activation: str | None,
    profiles: str | None,
    fmt: str,
    skipped_path: str | None,
    limit: int | None,
    sample: int | None,
    seed: int,
    template_path: str | None,
    target_path: str | None,
) -> None:
    """Dry run: print the exact requests `push` would send, without sending.

    Secrets are redacted. Skipped profiles and a closing summary go to stderr.
    With no --activation and --profiles, renders the destination's bundled example.
    Exit 0 when every profile rendered or was skipped by design, 1 for an invalid
    input or a profile the templates fail on (render-error), 2 for an unreadable input.
    """
    _refuse_ignored_options(ctx)
    try:
        spec = load_spec(spec_ref)
        if template_path or target_path:
            _render_template(spec, activation, template_path, target_path)
        activation = _default_example(spec, activation, "activation.json", "--activation")
        if sample is None:
            profiles = _default_example(spec, profiles, "profiles.jsonl", "--profiles")
        if skipped_path:
            inputs = {"profiles": profiles, "activation": activation, "spec": spec.path}
            check_output("--skipped", skipped_path, inputs)
        act = load_activation(activation, spec)
        pipeline = Pipeline(spec, act, redacted_auth_data(spec))
        if sample is not None:
            records: Iterable[Record] = sample_profiles(spec, act, sample, seed)
        else:
            assert profiles is not None  # given, or the bundled example
            records = profiles_or_exit(profiles)
        if limit is not None:
            records = itertools.islice(records, limit)
        if diff:
            _print_diff(spec, pipeline, records, connection or act.connection, state)
            return
        _print_requests(pipeline.run(records), fmt, skipped_path)
    except (InvalidInput, UnreadableInput) as exc:
        unusable(exc)
    click.echo(summary(pipeline.tally), err=True)
    click.echo(
        "forecast: " + forecast(pipeline.tally.requests, spec.data.get("rateLimit")), err=True
    )
    sys.exit(EXIT_FAILED if pipeline.tally.skipped[RENDER_ERROR] else EXIT_OK)


TEMPLATE_OPTIONS = ("spec_ref", "activation", "template_path", "target_path")


def _refuse_ignored_options(ctx: click.Context) -> None:
    """A usage error (exit 2) for an option that the others would leave without effect."""
    given = [n for n in ctx.params if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE]
    template = "template_path" in given or "target_path" in given
    for name in given:
        if template and name not in TEMPLATE_OPTIONS:
            why = "does not apply to --template, which renders --target-profiles"
        elif name == "profiles" and "sample" in given:
            why = "cannot go with --sample, which renders generated profiles instead"
        elif name == "seed" and "sample" not in given:
            why = "goes with --sample: it seeds the generated profiles"
        elif name in ("connection", "state") and "diff" not in given:
            why = "goes with --diff: render itself reads no ledger"
        elif name in ("fmt", "skipped_path") and "diff" in given:
            why = "does not apply to --diff, which shows changes, not requests"
        else:
            continue
        option = next(p.opts[0] for p in ctx.command.params if p.name == name)
        raise click.UsageError(f"{option} {why}")
    if ctx.params["skipped_path"] == "-":
        raise click.UsageError(
            "--skipped takes a file, not -: stdout carries the requests, and without"
            " --skipped the skipped profiles go to stderr"
        )


def _print_diff(
    spec: Spec, pipeline: Pipeline, records: Iterable[Record], connection: str, state: str | None
) -> None:
    path = Path(state) if state else default_path(connection)
    ledger = Ledger(path if path.exists() else Path(":memory:"))
    kinds: Counter[str] = Counter()
    for change in preview(Sync(spec, pipeline, ledger), records):
        if isinstance(change, Skipped):
            click.echo(skipped_line(change), err=True)
            continue
        kinds[change.kind] += 1
        fields = "; ".join(
            f"{name}: {json.dumps(old)} -> {json.dumps(new)}" for name, old, new in change.fields
        )
        click.echo(
            f"{change.kind} {change.identity} ({change.ref})" + (f": {fields}" if fields else "")
        )
    ledger.close()
    to_send = kinds["new"] + kinds["changed"]
    click.echo(
        f"{kinds['new']:,} new, {kinds['changed']:,} changed, {kinds['unchanged']:,} unchanged"
        f" (ledger {path if path.exists() else 'not created yet'})",
        err=True,
    )
    click.echo("forecast: " + forecast(to_send, spec.data.get("rateLimit")), err=True)


def _default_example(spec: Spec, given: str | None, name: str, option: str) -> str:
    if given:
        return given
    example = example_path(spec.destination, name)
    if example is None:
        raise click.UsageError(
            f"{spec.destination} has no bundled example {name}: give {option} FILE"
        )
    click.echo(f"using the bundled example {display_path(example)}", err=True)
    return str(example)


def _print_requests(
    events: Iterable[Request | Skipped], fmt: str, skipped_path: str | None
) -> None:
    console = Console(highlight=False, soft_wrap=True) if fmt == "pretty" else None
    with output_file(skipped_path) as skipped_file:
        for event in events:
            if isinstance(event, Skipped):
                if skipped_file:
                    skipped_file.write(skipped_json(event) + "\n")
                if not skipped_file or event.category == RENDER_ERROR:
                    click.echo(skipped_line(event), err=True)
            elif console is not None:
                head, body, lexer = request_pretty(event)
                console.print(head, end="", markup=False)
                console.print(Syntax(body, lexer, theme="ansi_dark", background_color="default"))
            elif fmt == "http":
                click.echo(request_http(event) + "\r\n")
            else:
                click.echo(request_json(event))


def _render_template(
    spec: Spec, activation: str | None, template_path: str | None, target_path: str | None
) -> NoReturn:
    """`render --template`: each aggregation group's output; exit 1 if a group fails."""
    if not (template_path and target_path):
        raise click.UsageError("--template and --target-profiles go together")
    if activation is None and example_path(spec.destination, "activation.json") is None:
        act = preview_activation(spec)  # no aliases or customerData to read
    else:
        act = load_activation(
            _default_example(spec, activation, "activation.json", "--activation"), spec
        )
    targets = _target_profiles(Path(target_path))
    path = Path(template_path)
    source = TemplateSource(read_text(path), "JINJA", display_path(path), "", "body", path)
    groups, failed = 0, False
    try:
        for group in template_groups(source, targets, spec, act):
            if isinstance(group, Skipped):
                click.echo(skipped_line(group), err=True)
                failed = failed or group.category == RENDER_ERROR
                continue
            groups += 1
            key = json.dumps(group["aggregationKey"], ensure_ascii=False)
            click.echo(f"--- group {groups}, aggregationKey {key}")
            click.echo(group["output"])
    except RenderError as exc:
        fail(str(exc))
    click.echo(
        f"{count(len(targets), 'target profile')}: {count(groups, 'group')} rendered", err=True
    )
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


def _target_profiles(path: Path) -> list[dict[str, Any]]:
    """The JSON array of objects in `path` (a UTF-8 BOM allowed); InvalidInput saying where not."""
    name = display_path(path)
    text = read_text(path).removeprefix("\ufeff")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            [Finding(name, f"invalid JSON: {exc.msg}", "", exc.lineno, exc.colno)]
        ) from None
    if not isinstance(data, list):
        raise InvalidInput([Finding(name, "give a JSON array of target profiles", "", 1, 1)])
    doc = Document(path, name, data, text)
    for i, item in enumerate(data):
        problem = target_problem(item)
        if problem:
            line, column = doc.location(f"/{i}")
            raise InvalidInput([Finding(name, f"item {i + 1}: {problem}", "", line, column)])
    return data


for command in (push, auth, status, failed, list_destinations, docs, explain, new):
    main.add_command(command)

"""The `dest-engine` command line: click commands over the pipeline stages."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from engine.findings import Finding, InvalidInput, UnreadableInput
from engine.spec import check_spec

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


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
                from engine.activation import check_activation

                findings += check_activation(activation, ref)
        except UnreadableInput as exc:
            unreadable = True
            results.append({"spec": ref, "valid": False, "error": str(exc), "findings": []})
            continue
        results.append({"spec": ref, "valid": not _errors(findings), "findings": findings})
    _print_validation(results, fmt)
    if unreadable:
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_OK if all(r["valid"] for r in results) else EXIT_INVALID)


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
            f"{r['spec']}: {verdict} ({_plural(errors, 'error')}, {_plural(warnings, 'warning')})"
        )


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def fail(exc: InvalidInput | UnreadableInput) -> None:
    """Print why an input is unusable and exit with the matching code."""
    if isinstance(exc, UnreadableInput):
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    for finding in exc.findings:
        click.echo(str(finding), err=True)
    sys.exit(EXIT_INVALID)

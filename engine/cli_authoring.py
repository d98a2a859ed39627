"""The commands for destination authors: list, docs, explain, new."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
import httpx

from engine.catalog import search_dirs
from engine.cli_common import (
    EXIT_USAGE,
    check_output,
    fail,
    os_reason,
    output_file,
    spec_or_exit,
    unusable,
    unwritable_folder,
)
from engine.docs import ACTIONS, destination_docs
from engine.findings import InvalidInput, UnreadableInput, load_document, read_text
from engine.scaffold import scaffold
from engine.spec import check_spec
from engine.translation import Response
from engine.translation import explain as explain_response


@click.command("list")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def list_destinations(fmt: str) -> None:
    """The available destinations (./destinations first, then the bundled ones)."""
    rows, seen = [], set()
    for folder in search_dirs():
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            if path.stem in seen:
                continue
            seen.add(path.stem)
            try:
                data = load_document(path).data
                auth = data["customerAuthenticationConfigurations"][0]["authType"]
                row = {
                    "name": path.stem,
                    "title": data["title"],
                    "category": data.get("uiAttributes", {}).get("category", "-"),
                    "auth": auth,
                    "identities": list(data["identityNamespaces"]),
                    "valid": not [f for f in check_spec(str(path)) if f.severity == "error"],
                    "path": str(path),
                }
            except (InvalidInput, UnreadableInput, KeyError, TypeError, IndexError):
                row = {
                    "name": path.stem,
                    "title": "-",
                    "category": "-",
                    "auth": "-",
                    "identities": [],
                    "valid": False,
                    "path": str(path),
                }
            rows.append(row)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "" if r["valid"] else "  (invalid: run dest-engine validate)"
        identities = ", ".join(r["identities"])
        click.echo(f"{r['name']}\t{r['title']}\t{r['category']}\t{r['auth']}\t{identities}{state}")


@click.command()
@click.argument("spec_ref", metavar="SPEC")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Write to this file instead of stdout.",
)
def docs(spec_ref: str, output: str | None) -> None:
    """The destination's user documentation, as Markdown, generated from its spec."""
    spec = spec_or_exit(spec_ref)
    if output:
        check_output("--output", output, {"spec": spec.path})
    text = destination_docs(spec)
    with output_file(output) as out:
        if out is None:
            click.echo(text, nl=False)
        else:
            out.write(text)
    if output and output != "-":
        click.echo(f"wrote {output}", err=True)


@click.command()
@click.argument("spec_ref", metavar="SPEC")
@click.argument("response_file", metavar="RESPONSE_FILE", type=click.Path(dir_okay=False))
def explain(spec_ref: str, response_file: str) -> None:
    """Which error rule a response hits, why, and what dest-engine would do.

    RESPONSE_FILE is JSON: {"status": 404, "headers": {...}, "body": ...}, or - for stdin.
    """
    spec = spec_or_exit(spec_ref)
    response = _read_response(response_file)
    result = explain_response(spec.data.get("errorTranslation", []), response)
    translation = result["translation"]
    for attempt in result["tried"]:
        hit = all(ok for ok, _ in attempt["reasons"])
        where = f"/errorTranslation/{attempt['index']}"
        click.echo(f"{'matches' if hit else 'no match'}: rule {attempt['rule']!r} ({where})")
        for ok, reason in attempt["reasons"]:
            click.echo(f"  {'+' if ok else '-'} {reason}")
    if translation.rule is None:
        click.echo("no rule matches: the fallback applies")
    click.echo(f"action: {translation.action}: {ACTIONS[translation.action]}")
    if translation.retry_at is not None:
        click.echo(f"retry at: {translation.retry_at.isoformat()}")
    click.echo(f"message: {translation.message}")


def _read_response(response_file: str) -> Response:
    """The response to explain, or exit 2 saying what is wrong with the file."""
    name = "stdin" if response_file == "-" else response_file
    try:
        text = sys.stdin.read() if response_file == "-" else read_text(Path(response_file))
        example = json.loads(text)
    except UnreadableInput as exc:
        unusable(exc)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        unusable(UnreadableInput(f"{name}: not JSON ({exc.msg} at {where})"))
    status = example.get("status") if isinstance(example, dict) else None
    headers = example.get("headers", {}) if isinstance(example, dict) else None
    status_ok = type(status) is int and 100 <= status <= 599
    headers_ok = isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
    if not (status_ok and headers_ok):
        unusable(
            UnreadableInput(
                f'{name}: give an object like {{"status": 404, "headers": {{}}, "body": {{}}}}'
                " (status: an integer from 100 to 599; headers: an object of strings)"
            )
        )
    assert isinstance(example, dict) and isinstance(status, int)
    return Response(status, httpx.Headers(headers), example.get("body"))


@click.command()
@click.argument("name")
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Project folder to write into.",
)
def new(name: str, root: str) -> None:
    """Scaffold a destination that validates and renders as it is: spec, template, example, test."""
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", name):
        raise click.UsageError(
            "NAME must be lower-case letters, digits and dashes, starting with a letter"
        )
    problem = unwritable_folder(Path(root))
    if problem:
        fail(f"cannot write {root}: {problem}", EXIT_USAGE)
    try:
        written = scaffold(name, Path(root))
    except FileExistsError as exc:
        raise click.UsageError(f"these files exist already, nothing written: {exc}") from None
    except OSError as exc:
        fail(f"cannot write {exc.filename}: {os_reason(exc)}; nothing written", EXIT_USAGE)
    for path in written:
        click.echo(f"wrote {path}")
    cd = "" if Path(root).resolve() == Path.cwd().resolve() else f"cd {root} && "
    click.echo(f"next: {cd}dest-engine validate {name} && dest-engine render {name}", err=True)

"""The commands for destination authors: `docs`, `explain`, `new` and `list`.

Every test runs the real command through click's CliRunner (prog name `dest-engine`),
from the checkout's top folder unless it builds its own folder in tmp_path. Expected
outputs are written out in full. Where the expectation depends on the destinations in
the checkout (which others may add to), the test derives it from the spec files with its
own small code, never with the engine's.

Tests marked `xfail(strict=True, reason="ENGINE BUG: ...")` (or "SPEC BUG") state the
correct behaviour the engine does not have yet; when it is fixed they XPASS, which fails
the run, so the marker must then be removed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
DESTINATIONS = ROOT / "destinations"
OUTREACH = json.loads((DESTINATIONS / "outreach.json").read_text(encoding="utf-8"))
INVALID = "  (invalid: run dest-engine validate)"

REJECT_ACTION = (
    "action: REJECT: The profile is not delivered and is kept as a dead letter; fix the cause,"
    " then `dest-engine failed retry --connection NAME`."
)


@pytest.fixture(autouse=True)
def _in_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the checkout's top folder (tests that need another folder chdir again)."""
    monkeypatch.chdir(ROOT)


def invoke(*args: str, stdin: str | None = None, check: bool = True) -> Result:
    """Run `dest-engine ARGS`; with `check`, an unexpected exception fails the test as itself."""
    result = CliRunner().invoke(main, list(args), input=stdin, prog_name="dest-engine")
    if check and result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def usage_error(command: str, usage: str, message: str) -> str:
    """click's usage error on stderr, as the user sees it."""
    return (
        f"Usage: dest-engine {command} {usage}\n"
        f"Try 'dest-engine {command} --help' for help.\n\n"
        f"Error: {message}\n"
    )


def section(page: str, heading: str) -> list[str]:
    """The lines of a Markdown page's `## heading` section, up to the next `## `."""
    lines = page.splitlines()
    start = lines.index(f"## {heading}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def cells(row: str) -> list[str]:
    """A Markdown table row's cells (`\\|` is a pipe inside a cell)."""
    assert row.startswith("| ") and row.endswith(" |"), row
    return [c.replace("\\|", "|") for c in re.split(r" (?<!\\)\| ", row[2:-2])]


def parse_error(command: str) -> str | None:
    """Why click refuses `command` (a quoted `dest-engine ...` line) as written, or None."""
    args = shlex.split(command)[1:]
    group: click.Group = main
    ctx = click.Context(main, info_name="dest-engine")
    while True:
        if not args:
            return "no command"
        name, args = args[0], args[1:]
        sub = group.get_command(ctx, name)
        if sub is None:
            return f"no command {name!r}"
        if isinstance(sub, click.Group):
            group, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
            continue
        try:
            sub.make_context(name, args, parent=ctx)
        except click.ClickException as exc:
            return exc.format_message()
        return None


QUOTED_COMMAND = re.compile(r"`(?:[A-Z_]+=\S+ )*(dest-engine [^`]*)`")


# --- dest-engine docs ---------------------------------------------------------------------


def docs_page() -> str:
    result = invoke("docs", "outreach")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_docs_page_snapshot(snapshot: Any) -> None:
    """The whole page, reviewed: prerequisites, guardrails, identities, mapping, errors."""
    assert docs_page() == snapshot


def test_docs_page_sections() -> None:
    page = docs_page()
    assert page.startswith(f"# Outreach\n\n{OUTREACH['description']}\n\n")
    assert [line for line in page.splitlines() if line.startswith("#")] == [
        "# Outreach",
        "## Prerequisites",
        "## Guardrails",
        "## Supported identities",
        "## Export type and frequency",
        "## Mapping",
        "## Errors and troubleshooting",
    ]
    assert page.endswith("\n") and not page.endswith("\n\n")


def test_docs_identity_row() -> None:
    assert section(docs_page(), "Supported identities") == [
        "",
        "| target identity | description | mandatory |",
        "|---|---|---|",
        "| `OutreachId` | The numeric prospect id, the number in the prospect's Outreach URL."
        " Typical source: the identity namespace Oid. Values must match `^[1-9][0-9]{0,17}$`;"
        " others are skipped. | yes |",
        "",
    ]


def test_docs_mapping_id() -> None:
    mapping = section(docs_page(), "Mapping")
    assert mapping[-3:] == [
        "Each activated audience needs a **Mapping ID** (Custom field number): The number N of"
        " the Outreach prospect custom field customN (1 to 150) that receives the audience"
        " status.",
        "Valid values: an integer from 1 to 150. Two audiences cannot share a Mapping ID;"
        " `dest-engine validate --activation` checks both.",
        "",
    ]
    assert mapping[:2] == [
        "",
        'Required: map a source identity to `OutreachId`, e.g. `{"source":'
        ' "identityMap.<namespace>", "target": "OutreachId"}`.',
    ]
    rows = [line for line in mapping if line.startswith("| `") or line.startswith("| names")]
    expected_names = [
        f"`{f['name']}`" if "name" in f else f"names matching `{f['namePattern']}`"
        for f in OUTREACH["schemaConfig"]["profileFields"]
    ]
    assert [cells(row)[0] for row in rows] == expected_names
    assert cells(rows[-1]) == [
        "names matching `^custom([1-9]|[1-9][0-9]|1[0-4][0-9]|150)$`",
        "Outreach custom fields custom1..custom150. Fields used as audience Mapping IDs carry"
        " the audience status.",
        "string",
    ]


def test_docs_rate_limit() -> None:
    guardrails = section(docs_page(), "Guardrails")
    assert guardrails == [
        "",
        "- Rate limit: 10,000 requests per hour per user. dest-engine paces itself to it"
        " (following the destination's rate-limit headers) and, when the budget is spent, waits"
        " for the reset and says when it resumes (`push --no-wait` stops instead).",
        "- One profile per request.",
        "- Transient failures are retried up to 5 attempts with exponential backoff.",
        "- Requests go only to `api.outreach.io`.",
        "",
    ]


def test_docs_one_row_per_error_rule() -> None:
    """Every rule of the spec has its row, in the spec's order: a new rule is covered too."""
    errors = section(docs_page(), "Errors and troubleshooting")
    assert errors[1:3] == [
        "| response | rule | what you see | what happens and what to do |",
        "|---|---|---|---|",
    ]
    rows = [line for line in errors[3:] if line.startswith("| ")]
    rules = OUTREACH["errorTranslation"]
    assert len(rows) == len(rules)
    for row, rule in zip(rows, rules, strict=True):
        response, name, seen, todo = cells(row)
        assert name == f"`{rule['name']}`"
        statuses = ", ".join(str(s) for s in rule["match"]["status"])
        equals = [
            f"{c['pointer']} = {c['equals']}"
            for c in rule["match"].get("body", [])
            if "equals" in c
        ]
        assert response == statuses + (f" ({'; '.join(equals)})" if equals else "")
        assert seen, rule["name"]
        assert "{{" not in seen and "{%" not in seen, seen
        if "message" in rule["examples"][0]["expect"]:
            assert seen == rule["examples"][0]["expect"]["message"]
        assert todo.startswith(rule["description"] + " "), todo
    assert errors[-2:] == [
        "",
        "A response no rule matches: 5xx and 408 are retried, 429 waits, anything else rejects"
        " the profile. `dest-engine explain outreach RESPONSE.json` says which rule a response"
        " hits and why.",
    ]


def test_docs_error_rows_exact() -> None:
    rows = {
        cells(line)[1]: line
        for line in section(docs_page(), "Errors and troubleshooting")
        if line.startswith("| ") and not line.startswith("| response")
    }
    assert rows["`prospect-not-found`"] == (
        "| 404 (/errors/0/id = resourceNotFound) | `prospect-not-found` | Outreach has no prospect"
        " with this OutreachId (Could not find 'prospect' with ID '1'.). Check the profile's"
        " identity mapped to OutreachId. | No prospect has this OutreachId. The profile is not"
        " delivered and is kept as a dead letter; fix the cause, then"
        " `dest-engine failed retry --connection NAME`. |"
    )
    assert rows["`rate-limited`"] == (
        "| 429 | `rate-limited` | Outreach's rate limit is reached: You have exceeded your"
        " permitted rate limit of 10,000; please try again at 2017-01-01T00:00:00. | The hourly"
        " budget of 10,000 requests is spent; the message names when it resets (UTC)."
        " dest-engine waits until the time the destination names, then goes on. |"
    )
    assert rows["`token-invalid`"] == (
        "| 401 | `token-invalid` | Outreach did not accept the access token; dest-engine"
        " refreshes it and retries. | The access token is missing, invalid or expired."
        " dest-engine refreshes the access token once and retries; if that fails, log in again. |"
    )


def test_docs_prerequisites() -> None:
    assert section(docs_page(), "Prerequisites") == [
        "",
        "- An OAuth 2 app of Outreach: note its **client id** and **client secret**, and register"
        " the redirect URI `http://127.0.0.1:8910/callback`.",
        "- A user who may grant the scopes `prospects.read`, `prospects.write`.",
        "- Connect: `DEST_ENGINE_CLIENT_ID=... DEST_ENGINE_CLIENT_SECRET=... dest-engine auth"
        " login outreach --connection NAME` (a browser opens; on a machine without one,"
        " `dest-engine auth import outreach --connection NAME` reads a token set on stdin).",
        "",
    ]


def test_docs_connect_commands_parse() -> None:
    """The login and import commands the page gives run as written."""
    commands = QUOTED_COMMAND.findall("\n".join(section(docs_page(), "Prerequisites")))
    assert commands == [
        "dest-engine auth login outreach --connection NAME",
        "dest-engine auth import outreach --connection NAME",
    ]
    assert [parse_error(c) for c in commands] == [None, None]
    assert parse_error("dest-engine auth login outreach") == "Missing option '--connection'."


def test_docs_advice_commands_parse() -> None:
    """Every command in the 'what happens and what to do' column runs as written."""
    rows = [
        cells(line)
        for line in section(docs_page(), "Errors and troubleshooting")
        if line.startswith("| ") and not line.startswith("| response")
    ]
    commands = {c for row in rows for c in QUOTED_COMMAND.findall(row[3])}
    assert commands
    assert {c: parse_error(c) for c in commands} == dict.fromkeys(commands)


def test_docs_rule_messages_commands_parse() -> None:
    """Every command a rule's message (the 'what you see' column) gives runs as written."""
    rows = [
        cells(line)
        for line in section(docs_page(), "Errors and troubleshooting")
        if line.startswith("| ") and not line.startswith("| response")
    ]
    commands = {c for row in rows for c in QUOTED_COMMAND.findall(row[2])}
    assert commands
    assert {c: parse_error(c) for c in commands} == dict.fromkeys(commands)


def test_docs_output_file(tmp_path: Path) -> None:
    target = tmp_path / "outreach.md"
    result = invoke("docs", "outreach", "--output", str(target))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"wrote {target}\n"
    assert target.read_text(encoding="utf-8") == docs_page()


def test_docs_output_dash_is_stdout() -> None:
    result = invoke("docs", "outreach", "-o", "-")
    assert result.exit_code == 0
    assert result.stdout == docs_page()
    assert result.stderr == ""
    assert not Path("-").exists()


def test_docs_output_in_a_missing_folder(tmp_path: Path) -> None:
    target = tmp_path / "nodir" / "outreach.md"
    result = invoke("docs", "outreach", "-o", str(target))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: cannot write {target}: the folder {tmp_path / 'nodir'} does not exist\n"
    )


def test_docs_output_that_is_the_spec_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "destinations" / "mine.json"
    spec.parent.mkdir()
    shutil.copy(DESTINATIONS / "outreach.json", spec)
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    before = spec.read_bytes()
    result = invoke("docs", str(spec), "-o", str(spec))
    assert result.exit_code == 2
    assert result.stderr == f"error: --output {spec} is the spec file; choose another file\n"
    assert spec.read_bytes() == before


def test_docs_unknown_destination() -> None:
    names = ", ".join(sorted(p.stem for p in DESTINATIONS.glob("*.json")))
    result = invoke("docs", "nope")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: no destination named 'nope' in ./destinations or the bundled ones;"
        f" available: {names}\n"
    )


# --- dest-engine explain ------------------------------------------------------------------

RESPONSE_404 = {
    "status": 404,
    "headers": {"Content-Type": "application/vnd.api+json"},
    "body": {
        "errors": [
            {
                "id": "resourceNotFound",
                "title": "Resource Not Found",
                "detail": "Could not find 'prospect' with ID '42'.",
            }
        ]
    },
}
EXPLAIN_404 = f"""\
no match: rule 'token-invalid' (/errorTranslation/0)
  - status 404 is not in [401]
no match: rule 'missing-scope' (/errorTranslation/1)
  - status 404 is not in [403]
  - /errors/0/id is "resourceNotFound" (wanted: equals "unauthorizedOauthScope")
no match: rule 'forbidden' (/errorTranslation/2)
  - status 404 is not in [403]
  - /errors/0/id is "resourceNotFound" (wanted: equals "unauthorizedRequest")
matches: rule 'prospect-not-found' (/errorTranslation/3)
  + status 404 is in [404]
  + /errors/0/id is "resourceNotFound" (wanted: equals "resourceNotFound")
{REJECT_ACTION}
message: Outreach has no prospect with this OutreachId (Could not find 'prospect' with ID '42'.). Check the profile's identity mapped to OutreachId.
"""

RESPONSE_429 = {
    "status": 429,
    "headers": {
        "X-RateLimit-Limit": "10000",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1483232400",
    },
    "body": {
        "errors": [
            {
                "id": "rateLimitExceeded",
                "title": "Rate Limit Exceeded",
                "detail": "You have exceeded your permitted rate limit of 10,000; please try"
                " again at 2017-01-01T00:00:00.",
            }
        ]
    },
}
EXPLAIN_429 = """\
no match: rule 'token-invalid' (/errorTranslation/0)
  - status 429 is not in [401]
no match: rule 'missing-scope' (/errorTranslation/1)
  - status 429 is not in [403]
  - /errors/0/id is "rateLimitExceeded" (wanted: equals "unauthorizedOauthScope")
no match: rule 'forbidden' (/errorTranslation/2)
  - status 429 is not in [403]
  - /errors/0/id is "rateLimitExceeded" (wanted: equals "unauthorizedRequest")
no match: rule 'prospect-not-found' (/errorTranslation/3)
  - status 429 is not in [404]
  - /errors/0/id is "rateLimitExceeded" (wanted: equals "resourceNotFound")
no match: rule 'route-not-found' (/errorTranslation/4)
  - status 429 is not in [404]
  - /errors/0/id is "rateLimitExceeded" (wanted: equals "routeNotFound")
no match: rule 'unsupported-media-type' (/errorTranslation/5)
  - status 429 is not in [415]
no match: rule 'value-too-long' (/errorTranslation/6)
  - status 429 is not in [422]
  - /errors/0/id is "rateLimitExceeded" (wanted: equals "validationDataTooLongError")
no match: rule 'invalid-value' (/errorTranslation/7)
  - status 429 is not in [422]
no match: rule 'bad-request' (/errorTranslation/8)
  - status 429 is not in [400]
matches: rule 'rate-limited' (/errorTranslation/9)
  + status 429 is in [429]
action: RATE_LIMITED: dest-engine waits until the time the destination names, then goes on.
retry at: 2017-01-01T00:00:00+00:00
message: Outreach's rate limit is reached: You have exceeded your permitted rate limit of 10,000; please try again at 2017-01-01T00:00:00.
"""

EXPLAIN_409_NO_RULE = f"""\
no match: rule 'token-invalid' (/errorTranslation/0)
  - status 409 is not in [401]
no match: rule 'missing-scope' (/errorTranslation/1)
  - status 409 is not in [403]
  - /errors/0/id is "conflict" (wanted: equals "unauthorizedOauthScope")
no match: rule 'forbidden' (/errorTranslation/2)
  - status 409 is not in [403]
  - /errors/0/id is "conflict" (wanted: equals "unauthorizedRequest")
no match: rule 'prospect-not-found' (/errorTranslation/3)
  - status 409 is not in [404]
  - /errors/0/id is "conflict" (wanted: equals "resourceNotFound")
no match: rule 'route-not-found' (/errorTranslation/4)
  - status 409 is not in [404]
  - /errors/0/id is "conflict" (wanted: equals "routeNotFound")
no match: rule 'unsupported-media-type' (/errorTranslation/5)
  - status 409 is not in [415]
no match: rule 'value-too-long' (/errorTranslation/6)
  - status 409 is not in [422]
  - /errors/0/id is "conflict" (wanted: equals "validationDataTooLongError")
no match: rule 'invalid-value' (/errorTranslation/7)
  - status 409 is not in [422]
no match: rule 'bad-request' (/errorTranslation/8)
  - status 409 is not in [400]
no match: rule 'rate-limited' (/errorTranslation/9)
  - status 409 is not in [429]
no match: rule 'maintenance' (/errorTranslation/10)
  - status 409 is not in [503]
no rule matches: the fallback applies
{REJECT_ACTION}
message: HTTP 409 matched no error rule; add a rule to the spec's errorTranslation to explain it
"""
RESPONSE_409 = {
    "status": 409,
    "body": {"errors": [{"id": "conflict", "title": "Conflict", "detail": "Conflict."}]},
}
CATCH_ALLS = ("server-error", "client-error")
OBJECT_LIKE = (
    'give an object like {"status": 404, "headers": {}, "body": {}}'
    " (status: an integer from 100 to 599; headers: an object of strings)"
)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def explain(response_file: Path | str, spec: str = "outreach", stdin: str | None = None) -> Result:
    return invoke("explain", spec, str(response_file), stdin=stdin)


def test_explain_not_found(tmp_path: Path) -> None:
    result = explain(write_json(tmp_path / "404.json", RESPONSE_404))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == EXPLAIN_404


def test_explain_rate_limited(tmp_path: Path) -> None:
    """The reset time comes from the message (the first retryAt source), not the header."""
    result = explain(write_json(tmp_path / "429.json", RESPONSE_429))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == EXPLAIN_429


def test_explain_rate_limited_header_only(tmp_path: Path) -> None:
    """A body without the time: the second source, X-RateLimit-Reset (epoch seconds)."""
    response = {"status": 429, "headers": {"X-RateLimit-Reset": "1483232400"}, "body": "Slow down"}
    result = explain(write_json(tmp_path / "429.json", response))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-4:] == [
        "  + status 429 is in [429]",
        "action: RATE_LIMITED: dest-engine waits until the time the destination names, then goes on.",
        "retry at: 2017-01-01T01:00:00+00:00",
        "message: Outreach's rate limit is reached:",
    ]


def test_explain_catch_all(tmp_path: Path) -> None:
    result = explain(write_json(tmp_path / "409.json", RESPONSE_409))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-5:] == [
        "  - status 409 is not in [5xx]",
        "matches: rule 'client-error' (/errorTranslation/12)",
        "  + status 409 is in [4xx]",
        REJECT_ACTION,
        "message: Outreach refused the update (HTTP 409).",
    ]


def test_explain_no_rule_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec without the catch-all rules: a 409 gets the fallback, and explain says so."""
    variant = {
        **OUTREACH,
        "name": "x",
        "errorTranslation": [
            r for r in OUTREACH["errorTranslation"] if r["name"] not in CATCH_ALLS
        ],
    }
    assert len(variant["errorTranslation"]) == len(OUTREACH["errorTranslation"]) - 2
    (tmp_path / "destinations").mkdir()
    write_json(tmp_path / "destinations" / "x.json", variant)
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    monkeypatch.chdir(tmp_path)
    assert invoke("validate", "x").exit_code == 0
    result = explain(write_json(tmp_path / "409.json", RESPONSE_409), spec="x")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == EXPLAIN_409_NO_RULE


def test_explain_stdin() -> None:
    result = explain("-", stdin=json.dumps(RESPONSE_404))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == EXPLAIN_404


def test_explain_not_json(tmp_path: Path) -> None:
    path = tmp_path / "response.json"
    path.write_text("HTTP/1.1 404 Not Found\n", encoding="utf-8")
    result = explain(path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {path}: not JSON (Expecting value at line 1, column 1)\n"


@pytest.mark.parametrize(
    "text",
    ['{"status": "404", "body": {}}', '{"body": {}}', "[404]", "404", '{"status": 404.0}'],
    ids=["string-status", "no-status", "array", "number", "float-status"],
)
def test_explain_without_integer_status(tmp_path: Path, text: str) -> None:
    path = tmp_path / "response.json"
    path.write_text(text, encoding="utf-8")
    result = explain(path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {path}: {OBJECT_LIKE}\n"


def test_explain_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    result = explain(path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {path}: no such file\n"


def test_explain_boolean_status(tmp_path: Path) -> None:
    path = write_json(tmp_path / "response.json", {"status": True})
    result = explain(path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}: ")


def test_explain_status_out_of_range(tmp_path: Path) -> None:
    path = write_json(tmp_path / "response.json", {"status": 4040})
    result = explain(path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}: ")


@pytest.mark.parametrize(
    "headers",
    [[["X-RateLimit-Reset", "1"], 5], "Retry-After: 5", {"Retry-After": 5}],
    ids=["list", "string", "int-value"],
)
def test_explain_bad_headers(tmp_path: Path, headers: Any) -> None:
    path = write_json(tmp_path / "response.json", {"status": 429, "headers": headers})
    result = invoke("explain", "outreach", str(path), check=False)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: ")


def test_explain_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "response.json"
    path.write_bytes(b'\xff\xfe{"status": 404}')
    result = invoke("explain", "outreach", str(path), check=False)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: ")


def test_explain_stdin_not_json_names_stdin() -> None:
    result = explain("-", stdin="oops")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert not result.stderr.startswith("error: -:"), result.stderr
    assert "stdin" in result.stderr
    assert result.stderr.endswith(": not JSON (Expecting value at line 1, column 1)\n")


# --- dest-engine new ----------------------------------------------------------------------

DEMO_FILES = [
    "destinations/demo.json",
    "templates/demo/body.json.j2",
    "examples/demo/activation.json",
    "examples/demo/profiles.jsonl",
    "tests/test_demo.py",
    "schemas/destination.schema.json",
]
DEMO_HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer [REDACTED]"}
DEMO_REQUESTS = [
    {
        "method": "PUT",
        "url": "https://api.example.com/v1/eu/contacts/101",
        "headers": DEMO_HEADERS,
        "body": {
            "id": "101",
            "properties": {"firstName": "Ada", "lastName": "Lovelace"},
            "lists": {"add": ["list-news"], "remove": []},
        },
        "profiles": ["line 1"],
    },
    {
        "method": "PUT",
        "url": "https://api.example.com/v1/eu/contacts/102",
        "headers": DEMO_HEADERS,
        "body": {
            "id": "102",
            "properties": {"firstName": "Alan"},
            "lists": {"add": ["list-trial"], "remove": ["list-news"]},
        },
        "profiles": ["line 2"],
    },
]
BAD_NAME = "NAME must be lower-case letters, digits and dashes, starting with a letter"


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_new_scaffolds_a_working_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("new", "demo")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"wrote {f}" for f in DEMO_FILES]
    assert result.stderr == "next: dest-engine validate demo && dest-engine render demo\n"
    assert files_under(tmp_path) == set(DEMO_FILES)

    validate = invoke("validate", "demo")
    assert validate.exit_code == 0, validate.stdout + validate.stderr
    assert validate.stdout == "demo: valid (0 errors, 0 warnings)\n"

    render = invoke("render", "demo")
    assert render.exit_code == 0, render.stderr
    assert [json.loads(line) for line in render.stdout.splitlines()] == DEMO_REQUESTS
    assert render.stderr.splitlines() == [
        "using the bundled example examples/demo/activation.json",
        "using the bundled example examples/demo/profiles.jsonl",
        "read 2 profiles: 2 rendered, 0 skipped; 2 requests",
        "forecast: 2 requests, under a minute at 100 per minute",
    ]

    first = run_pytest(tmp_path, "--snapshot-update")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 passed" in first.stdout, first.stdout
    snapshot_file = tmp_path / "tests" / "__snapshots__" / "test_demo.ambr"
    assert "https://api.example.com/v1/eu/contacts/102" in snapshot_file.read_text("utf-8")
    second = run_pytest(tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 passed" in second.stdout, second.stdout


def test_new_scaffold_docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scaffold documents itself: its docs page has a settings table and its rules."""
    monkeypatch.chdir(tmp_path)
    assert invoke("new", "demo").exit_code == 0
    page = invoke("docs", "demo").stdout
    assert (
        "| `region` | An example per-connection setting, read as customerData.region. | no | `eu`, `us` |"
        in page.splitlines()
    )
    assert "- Rate limit: 100 requests per minute per connection." in page
    assert "Valid values: a string matching `^[A-Za-z0-9_-]{1,64}$`." in page
    for name in ("unauthorized", "not-found", "rate-limited", "server-error", "client-error"):
        assert f" | `{name}` | " in page, name


def test_new_refuses_existing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("new", "demo").exit_code == 0
    spec = tmp_path / "destinations" / "demo.json"
    spec.write_text('{"edited": true}\n', encoding="utf-8")
    (tmp_path / "examples" / "demo" / "profiles.jsonl").unlink()
    before = {f: (tmp_path / f).read_bytes() for f in files_under(tmp_path)}

    result = invoke("new", "demo")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == usage_error(
        "new",
        "[OPTIONS] NAME",
        "these files exist already, nothing written: destinations/demo.json,"
        " templates/demo/body.json.j2, examples/demo/activation.json, tests/test_demo.py",
    )
    assert {f: (tmp_path / f).read_bytes() for f in files_under(tmp_path)} == before
    assert not (tmp_path / "examples" / "demo" / "profiles.jsonl").exists()


def test_new_into_a_folder_that_cannot_be_written() -> None:
    result = invoke("new", "demo", "--dir", "/proc/1")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == "error: cannot write /proc/1: permission denied\n"


def test_new_under_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("proj").write_text("a file\n", encoding="utf-8")
    result = invoke("new", "demo", "--dir", "proj/sub")
    assert result.exit_code == 2
    assert result.stderr == "error: cannot write proj/sub: proj is not a folder\n"
    assert files_under(tmp_path) == {"proj"}


def test_new_that_fails_midway_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").mkdir()
    write_text = Path.write_text

    def disk_full(path: Path, text: str, encoding: str | None = None) -> int:
        if path.name == "profiles.jsonl":
            raise OSError(28, "No space left on device", str(path))
        return write_text(path, text, encoding=encoding)

    monkeypatch.setattr(Path, "write_text", disk_full)
    result = invoke("new", "demo")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: cannot write examples/demo/profiles.jsonl: no space left on device;"
        " nothing written\n"
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["examples"]


@pytest.mark.parametrize("name", ["Bad_Name", "demo_x", "1demo", "demo.x", "a" * 64])
def test_new_refuses_bad_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("new", name)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == usage_error("new", "[OPTIONS] NAME", BAD_NAME)
    assert files_under(tmp_path) == set()


def test_new_into_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("new", "demo-two", "--dir", "proj")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "wrote proj/destinations/demo-two.json",
        "wrote proj/templates/demo-two/body.json.j2",
        "wrote proj/examples/demo-two/activation.json",
        "wrote proj/examples/demo-two/profiles.jsonl",
        "wrote proj/tests/test_demo_two.py",
        "wrote proj/schemas/destination.schema.json",
    ]
    monkeypatch.chdir(tmp_path / "proj")
    assert invoke("validate", "demo-two").stdout == "demo-two: valid (0 errors, 0 warnings)\n"
    assert invoke("render", "demo-two").exit_code == 0


def test_new_into_dir_next_hint_names_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("new", "demo", "--dir", "proj")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("next: "), result.stderr
    assert "proj" in result.stderr, result.stderr


# --- dest-engine list ---------------------------------------------------------------------


def is_valid(path: Path) -> bool:
    """What `dest-engine validate` says of the spec (list must agree with it)."""
    return invoke("validate", str(path)).exit_code == 0


def expected_line(path: Path) -> str:
    """The list line for a spec file, read with this test's own code."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fields = [
            data["title"],
            data.get("uiAttributes", {}).get("category", "-"),
            data["customerAuthenticationConfigurations"][0]["authType"],
            ", ".join(data["identityNamespaces"]),
        ]
    except (ValueError, KeyError, TypeError, IndexError):
        return f"{path.stem}\t-\t-\t-\t{INVALID}"
    return "\t".join([path.stem, *fields]) + ("" if is_valid(path) else INVALID)


def bundled_specs() -> list[Path]:
    return sorted(DESTINATIONS.glob("*.json"))


def test_list_in_checkout() -> None:
    """In the checkout, ./destinations is the bundled folder: each spec once."""
    result = invoke("list")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [expected_line(p) for p in bundled_specs()]
    assert "outreach\tOutreach\tcrm\tOAUTH2\tOutreachId" in result.stdout.splitlines()


def test_list_json() -> None:
    result = invoke("list", "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [p.stem for p in bundled_specs()]
    assert next(r for r in rows if r["name"] == "outreach") == {
        "name": "outreach",
        "title": "Outreach",
        "category": "crm",
        "auth": "OAUTH2",
        "identities": ["OutreachId"],
        "valid": True,
        "path": str(DESTINATIONS / "outreach.json"),
    }


def test_list_local_invalid_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local specs come first; an invalid one says so, whether it parses or not."""
    local = tmp_path / "destinations"
    local.mkdir()
    (local / "broken.json").write_text('{"name": "broken",', encoding="utf-8")
    write_json(local / "nobody.json", {**OUTREACH, "name": "nobody"})  # no templates/ here
    monkeypatch.chdir(tmp_path)
    result = invoke("list")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"broken\t-\t-\t-\t{INVALID}",
        f"nobody\tOutreach\tcrm\tOAUTH2\tOutreachId{INVALID}",
        *[expected_line(p) for p in bundled_specs()],
    ]
    rows = json.loads(invoke("list", "--format", "json").stdout)
    assert [(r["name"], r["valid"]) for r in rows[:2]] == [("broken", False), ("nobody", False)]
    assert rows[0]["path"] == str(local / "broken.json")


def test_list_local_spec_shadows_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "destinations").mkdir()
    write_json(
        tmp_path / "destinations" / "outreach.json", {**OUTREACH, "title": "Outreach (local)"}
    )
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    monkeypatch.chdir(tmp_path)
    rows = json.loads(invoke("list", "--format", "json").stdout)
    outreach = [r for r in rows if r["name"] == "outreach"]
    assert len(outreach) == 1
    assert outreach[0]["title"] == "Outreach (local)"
    assert outreach[0]["valid"] is True
    assert outreach[0]["path"] == str(tmp_path / "destinations" / "outreach.json")
    assert rows[0] == outreach[0]

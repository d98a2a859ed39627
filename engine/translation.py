"""Error translation: a response becomes an action and a message for the user.

The spec's `errorTranslation` rules are tried in order; the first whose
conditions all hold decides. A response no rule matches gets the fallback:
5xx and 408 are retried, 429 waits, anything else rejects the profile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import httpx
from jinja2 import Template, TemplateError, TemplateSyntaxError

from engine.namecheck import check_names
from engine.templating import ENVIRONMENTS, TemplateSource, parse

if TYPE_CHECKING:
    from engine.findings import Document, Finding
    from engine.spec import Spec

Action = Literal["RETRY", "RATE_LIMITED", "REFRESH_TOKEN_THEN_RETRY", "REJECT", "FAIL_RUN"]
MISSING = object()
# Relative retry times in rule examples ("Retry-After: 120") count from this instant.
EXAMPLE_NOW = datetime(2017, 1, 1, tzinfo=UTC)
GAP_PROBES = (400, 401, 403, 404, 408, 409, 415, 422, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class Response:
    """What came back: status, headers (case-insensitive) and body (JSON or text)."""

    status: int
    headers: httpx.Headers
    body: Any

    @classmethod
    def from_example(cls, example: Mapping[str, Any]) -> Response:
        return cls(
            example["status"], httpx.Headers(example.get("headers", {})), example.get("body")
        )


@dataclass(frozen=True)
class Translation:
    """The outcome of one response: which rule, what to do, when to retry, what to say."""

    rule: str | None
    action: Action
    message: str
    retry_at: datetime | None = None


def translate(
    rules: list[dict[str, Any]],
    response: Response,
    now: datetime | None = None,
    context: Mapping[str, Any] | None = None,
) -> Translation:
    """Apply the first matching rule, or the fallback.

    `context` (the request's `input` and `destination`) is there for the message.
    """
    now = now or datetime.now(UTC)
    for rule in rules:
        if matches(rule["match"], response):
            retry_at = read_retry_at(rule.get("retryAt", []), response, now)
            message = render_message(rule["message"], response, context)
            return Translation(rule["name"], rule["action"], message, retry_at)
    return fallback(response)


def fallback(response: Response) -> Translation:
    """What happens to a response no rule matches."""
    status = response.status
    what = f"HTTP {status} matched no error rule"
    if status >= 500 or status == 408:
        return Translation(None, "RETRY", f"{what}; retrying")
    if status == 429:
        return Translation(None, "RATE_LIMITED", f"{what}; waiting before retrying")
    return Translation(
        None, "REJECT", f"{what}; add a rule to the spec's errorTranslation to explain it"
    )


def matches(match: Mapping[str, Any], response: Response) -> bool:
    """Whether every condition of a rule's `match` holds."""
    statuses = match.get("status")
    if statuses is not None and not any(_status_matches(s, response.status) for s in statuses):
        return False
    for cond in match.get("body", []):
        if not _condition(cond, json_pointer(response.body, cond["pointer"])):
            return False
    for cond in match.get("headers", []):
        if not _condition(cond, response.headers.get(cond["header"], MISSING)):
            return False
    return True


def _status_matches(expected: int | str, status: int) -> bool:
    if isinstance(expected, int):
        return expected == status
    return str(status)[0] == expected[0]


def _condition(cond: Mapping[str, Any], value: Any) -> bool:
    if "exists" in cond and cond["exists"] != (value is not MISSING):
        return False
    if value is MISSING:
        return "exists" in cond and not cond["exists"]
    if "equals" in cond and not (value == cond["equals"] and type(value) is type(cond["equals"])):
        return False
    return not (
        "regex" in cond and not (isinstance(value, str) and re.search(cond["regex"], value))
    )


def json_pointer(document: Any, pointer: str) -> Any:
    """The value at `pointer`, or MISSING."""
    value = document
    for part in pointer.split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return MISSING
    return value


def read_retry_at(
    sources: list[dict[str, Any]], response: Response, now: datetime
) -> datetime | None:
    """The first retry time the sources yield."""
    for source in sources:
        if "header" in source:
            raw = response.headers.get(source["header"])
        else:
            found = json_pointer(response.body, source.get("pointer", ""))
            raw = None if found is MISSING else str(found)
        if raw is None:
            continue
        if "regex" in source:
            m = re.search(source["regex"], raw)
            if m is None:
                continue
            raw = (
                m.group("time")
                if "time" in m.re.groupindex
                else m.group(1)
                if m.groups()
                else m.group(0)
            )
        when = parse_time(raw.strip(), source["format"], now)
        if when is not None:
            return when
    return None


def parse_time(text: str, fmt: str, now: datetime) -> datetime | None:
    """A time in one of the retryAt formats, in UTC; None when it does not parse."""
    try:
        if fmt == "iso8601":
            when = datetime.fromisoformat(text)
            return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        if fmt == "epochSeconds":
            return datetime.fromtimestamp(float(text), UTC)
        if fmt == "seconds":
            return now + timedelta(seconds=float(text))
        return parsedate_to_datetime(text).astimezone(UTC)
    except (ValueError, TypeError, OverflowError):
        return None


@lru_cache(maxsize=256)
def _message_template(text: str) -> Template:
    return ENVIRONMENTS["message"].from_string(text)  # type: ignore[no-any-return]


def render_message(
    template: str, response: Response, context: Mapping[str, Any] | None = None
) -> str:
    """The rule's message, with `response` and the request's context; never fails."""
    values = {
        **(context or {}),
        "response": {"status": response.status, "headers": response.headers, "body": response.body},
    }
    try:
        text = _message_template(template).render(values)
    except (TemplateError, ValueError, TypeError) as exc:  # e.g. tojson of NaN in a response
        return f"{template} (the message could not be rendered: {exc})"
    return " ".join(str(text).split())


def check_rules(spec: Spec, doc: Document) -> list[Finding]:
    """Messages compile, examples get the outcome they expect, and no common status is a gap."""
    findings: list[Finding] = []
    rules = spec.data.get("errorTranslation", [])
    for i, rule in enumerate(rules):
        base = f"/errorTranslation/{i}"
        source = TemplateSource(rule["message"], "JINJA", doc.name, base + "/message", "message")
        try:
            parse(source)
        except TemplateSyntaxError as exc:
            findings.append(doc.finding(base + "/message", f"template syntax error: {exc.message}"))
            continue
        names = check_names(spec, source)
        findings += [doc.finding(base + "/message", problem) for _line, problem in names]
        if names:
            continue
        if rule["action"] == "RATE_LIMITED" and not rule.get("retryAt"):
            findings.append(
                doc.finding(
                    base + "/action",
                    "RATE_LIMITED without retryAt: dest-engine will back off instead of"
                    " waiting for the time the server names",
                    severity="warning",
                )
            )
        for j, example in enumerate(rule["examples"]):
            findings += _check_example(rules, i, j, example, doc)
    findings += _gaps(rules, doc)
    return findings


def _check_example(
    rules: list[dict[str, Any]], i: int, j: int, example: dict[str, Any], doc: Document
) -> list[Finding]:
    rule = rules[i]
    pointer = f"/errorTranslation/{i}/examples/{j}"
    expect = example["expect"]
    if expect["action"] != rule["action"]:
        return [
            doc.finding(
                pointer + "/expect/action",
                f"the example expects {expect['action']}"
                f" but rule {rule['name']!r} does {rule['action']}",
            )
        ]
    result = translate(rules, Response.from_example(example["response"]), EXAMPLE_NOW)
    if result.rule != rule["name"]:
        earlier = [r["name"] for r in rules[:i]]
        if result.rule in earlier:
            problem = (
                f"this example response is matched by rule {result.rule!r}, which comes first;"
                f" move rule {rule['name']!r} before it or narrow {result.rule!r}"
            )
        else:
            falls = (
                f"it falls through to rule {result.rule!r}" if result.rule else "no rule matches it"
            )
            problem = (
                f"rule {rule['name']!r} does not match this example response ({falls});"
                " check the rule's match conditions"
            )
        return [doc.finding(pointer + "/response", problem)]
    findings = []
    if "retryAt" in expect:
        wanted = parse_time(expect["retryAt"], "iso8601", EXAMPLE_NOW)
        if wanted is None:
            findings.append(
                doc.finding(
                    pointer + "/expect/retryAt", f"{expect['retryAt']!r} is not an ISO 8601 time"
                )
            )
        elif result.retry_at != wanted:
            got = result.retry_at.isoformat() if result.retry_at else "no time"
            findings.append(
                doc.finding(
                    pointer + "/expect/retryAt",
                    f"the rule reads {got} from this example, not {wanted.isoformat()}",
                )
            )
    if "message" in expect and result.message != expect["message"]:
        findings.append(
            doc.finding(
                pointer + "/expect/message",
                f"the example expects {expect['message']!r} but the rule gives {result.message!r}",
            )
        )
    return findings


def _gaps(rules: list[dict[str, Any]], doc: Document) -> list[Finding]:
    findings = []
    for status in GAP_PROBES:
        response = Response(status, httpx.Headers(), {})
        if not any(matches(rule["match"], response) for rule in rules):
            outcome = fallback(response)
            findings.append(
                doc.finding(
                    "/errorTranslation",
                    f"gap: no rule matches an HTTP {status} response;"
                    f" dest-engine would {outcome.action} it with a generic message;"
                    " add a rule for it (or a 4xx/5xx catch-all)",
                    severity="warning",
                )
            )
    return findings


def condition_reasons(match: Mapping[str, Any], response: Response) -> list[tuple[bool, str]]:
    """Each condition of a rule's `match`, whether it holds, and why, in words."""
    reasons: list[tuple[bool, str]] = []
    statuses = match.get("status")
    if statuses is not None:
        ok = any(_status_matches(s, response.status) for s in statuses)
        shown = ", ".join(str(s) for s in statuses)
        reasons.append((ok, f"status {response.status} {'is' if ok else 'is not'} in [{shown}]"))
    for part, conditions in (
        ("body", match.get("body", [])),
        ("headers", match.get("headers", [])),
    ):
        for cond in conditions:
            where = cond["pointer"] if part == "body" else f"header {cond['header']}"
            value = (
                json_pointer(response.body, cond["pointer"])
                if part == "body"
                else (response.headers.get(cond["header"], MISSING))
            )
            shown = "missing" if value is MISSING else json.dumps(value, ensure_ascii=False)[:80]
            wanted = ", ".join(
                f"{k} {json.dumps(cond[k], ensure_ascii=False)}"
                for k in ("equals", "regex", "exists")
                if k in cond
            )
            reasons.append((_condition(cond, value), f"{where} is {shown} (wanted: {wanted})"))
    return reasons


def explain(
    rules: list[dict[str, Any]], response: Response, now: datetime | None = None
) -> dict[str, Any]:
    """Which rule a response hits and why, the rules before it that missed, and the outcome."""
    tried = []
    for index, rule in enumerate(rules):
        reasons = condition_reasons(rule["match"], response)
        tried.append({"rule": rule["name"], "index": index, "reasons": reasons})
        if all(ok for ok, _ in reasons):
            break
    result = translate(rules, response, now)
    return {"translation": result, "tried": tried}

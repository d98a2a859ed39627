"""Docs: a destination's user documentation, in Markdown, from its spec alone."""

from __future__ import annotations

from typing import Any

from engine.spec import Spec
from engine.translation import Response, render_message

ACTIONS = {
    "RETRY": "dest-engine retries with backoff; nothing to do unless it persists.",
    "RATE_LIMITED": "dest-engine waits until the time the destination names, then goes on.",
    "REFRESH_TOKEN_THEN_RETRY": "dest-engine refreshes the access token once and retries;"
    " if that fails, log in again.",
    "REJECT": "The profile is not delivered and is kept as a dead letter; fix the cause, then"
    " `dest-engine failed retry --connection NAME`.",
    "FAIL_RUN": "The run stops: this is a configuration problem to fix before pushing again.",
}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _duration(seconds: int) -> str:
    names = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
    return names.get(seconds, f"{seconds:,} seconds")


def destination_docs(spec: Spec) -> str:
    """The Markdown page a user reads before activating audiences into this destination."""
    d = spec.data
    out = [f"# {d['title']}", ""]
    out += [d.get("description", ""), ""]
    ui = d.get("uiAttributes", {})
    if ui.get("documentationLink"):
        out += [f"The destination's own API documentation: {ui['documentationLink']}", ""]
    out += _prerequisites(spec)
    out += _guardrails(d)
    out += _identities(d)
    out += _export(d)
    out += _mapping(d)
    out += _errors(spec)
    return "\n".join(out).rstrip() + "\n"


def _prerequisites(spec: Spec) -> list[str]:
    d, name = spec.data, spec.data["name"]
    auth = d["customerAuthenticationConfigurations"][0]
    out = ["## Prerequisites", ""]
    if auth["authType"] == "OAUTH2":
        scopes = ", ".join(f"`{s}`" for s in auth.get("scope", [])) or "none"
        out += [
            f"- An OAuth 2 app of {d['title']}: note its **client id** and **client secret**, and"
            " register the redirect URI `http://127.0.0.1:8910/callback`.",
            f"- A user who may grant the scopes {scopes}.",
            "- Connect: `DEST_ENGINE_CLIENT_ID=... DEST_ENGINE_CLIENT_SECRET=..."
            f" dest-engine auth login {name} --connection NAME` (a browser opens; on a machine"
            f" without one, `dest-engine auth import {name} --connection NAME` reads a token set"
            " on stdin).",
        ]
    elif auth["authType"] == "BEARER":
        out += [
            f"- An API token of {d['title']}.",
            f'- Connect: `echo \'{{"access_token": "..."}}\' | dest-engine auth import {name}'
            " --connection NAME`.",
        ]
    elif auth["authType"] == "BASIC":
        out += [
            f"- A user name and password for {d['title']}.",
            f'- Connect: `echo \'{{"username": "...", "password": "..."}}\' | dest-engine auth'
            f" import {name} --connection NAME`.",
        ]
    else:
        out += ["- No account: the destination needs no authentication."]
    fields = d.get("customerDataFields", [])
    if fields:
        out += [
            "- Settings you fill in when activating (`customerData` in the activation file):",
            "",
        ]
        out += ["| setting | what it is | required | allowed values |", "|---|---|---|---|"]
        for f in fields:
            allowed = ", ".join(f"`{v}`" for v in f.get("enum", [])) or (
                f"matches `{f['pattern']}`" if "pattern" in f else f["type"]
            )
            required = "yes" if f.get("isRequired") and "default" not in f else "no"
            out.append(
                f"| `{f['name']}` | {_cell(f.get('description') or f.get('title', ''))}"
                f" | {required} | {_cell(allowed)} |"
            )
    return [*out, ""]


def _guardrails(d: dict[str, Any]) -> list[str]:
    out = ["## Guardrails", ""]
    limit = d.get("rateLimit")
    if limit:
        out.append(
            f"- Rate limit: {limit['requests']:,} requests per {_duration(limit['periodSeconds'])}"
            f" per {limit.get('scope', 'connection')}. dest-engine paces itself to it"
            " (following the destination's rate-limit headers) and, when the budget is spent,"
            " waits for the reset and says when it resumes (`push --no-wait` stops instead)."
        )
    else:
        out.append("- The destination documents no rate limit.")
    aggregation = d["aggregation"]
    if aggregation["aggregationType"] == "BEST_EFFORT":
        per = aggregation["bestEffortAggregation"]["maxUsersPerRequest"]
        out.append(
            "- One profile per request." if per == 1 else f"- Up to {per:,} profiles per request."
        )
    else:
        per = aggregation["configurableAggregation"]["maxNumEventsInBatch"]
        out.append(f"- Up to {per:,} profiles per request.")
    retry = d.get("retryPolicy", {})
    if retry:
        out.append(
            f"- Transient failures are retried up to {retry.get('maxAttempts', 5)} attempts"
            " with exponential backoff."
        )
    hosts = ", ".join(f"`{h}`" for h in d["allowedHosts"])
    out.append(f"- Requests go only to {hosts}.")
    return [*out, ""]


def _identities(d: dict[str, Any]) -> list[str]:
    out = [
        "## Supported identities",
        "",
        "| target identity | description | mandatory |",
        "|---|---|---|",
    ]
    for ns, info in d["identityNamespaces"].items():
        description = info.get("description") or info.get("title", "")
        if "pattern" in info:
            description += f" Values must match `{info['pattern']}`; others are skipped."
        out.append(f"| `{ns}` | {_cell(description)} | {'yes' if info.get('required') else 'no'} |")
    return [*out, ""]


def _export(d: dict[str, Any]) -> list[str]:
    frequency = d.get("uiAttributes", {}).get("frequency", "Streaming")
    aggregation = d["aggregation"]
    if aggregation["aggregationType"] == "BEST_EFFORT":
        kind = "Profile-based: each request carries profiles with their identities, mapped"
        kind += " attributes and audience statuses."
    else:
        kind = "Batches of profiles grouped by "
        key = aggregation["configurableAggregation"].get("aggregationKey", {})
        parts = [
            label
            for setting, label in (
                ("includeSegmentId", "audience"),
                ("includeSegmentStatus", "audience status"),
                ("includeIdentity", "identity namespace"),
            )
            if key.get(setting)
        ]
        kind += ", ".join(parts) or "nothing in particular"
        kind += "."
    return [
        "## Export type and frequency",
        "",
        f"- Export type: {kind}",
        f"- Frequency: {frequency}. `dest-engine push` sends only what changed since the last"
        " delivery; `push --follow` keeps sending as updates arrive.",
        "",
    ]


def _mapping(d: dict[str, Any]) -> list[str]:
    out = ["## Mapping", ""]
    required = [ns for ns, info in d["identityNamespaces"].items() if info.get("required")]
    if required:
        needed = ", ".join(f"`{ns}`" for ns in required)
        out.append(
            f"Required: map a source identity to {needed}, e.g."
            f' `{{"source": "identityMap.<namespace>", "target": "{required[0]}"}}`.'
        )
    out += ["", "Optional: map profile fields to these target attributes:", ""]
    out += ["| target attribute | description | type |", "|---|---|---|"]
    for f in d["schemaConfig"]["profileFields"]:
        name = f"`{f['name']}`" if "name" in f else f"names matching `{f['namePattern']}`"
        out.append(
            f"| {_cell(name)} | {_cell(f.get('description') or f.get('title', ''))} | {f['type']} |"
        )
    config = d.get("segmentMappingConfig", {})
    out.append("")
    if config.get("mapUserInput"):
        title = config.get("mappingIdTitle", "Mapping ID")
        out.append(
            f"Each activated audience needs a **Mapping ID** ({title}):"
            f" {config.get('mappingIdDescription', '')}".rstrip()
        )
        rules = config.get("mappingIdSchema")
        if rules:
            if rules["type"] == "integer" and "minimum" in rules and "maximum" in rules:
                valid = f"an integer from {rules['minimum']} to {rules['maximum']}"
            elif "pattern" in rules:
                valid = f"a {rules['type']} matching `{rules['pattern']}`"
            else:
                valid = f"a {rules['type']}"
            out.append(
                f"Valid values: {valid}. Two audiences cannot share a Mapping ID;"
                " `dest-engine validate --activation` checks both."
            )
    elif config.get("mapExperiencePlatformSegmentName"):
        out.append("Each audience is known in the destination by its name.")
    else:
        out.append("Each audience is known in the destination by its audience id.")
    return [*out, ""]


def _errors(spec: Spec) -> list[str]:
    out = [
        "## Errors and troubleshooting",
        "",
        "| response | rule | what you see | what happens and what to do |",
        "|---|---|---|---|",
    ]
    for rule in spec.data.get("errorTranslation", []):
        statuses = ", ".join(str(s) for s in rule["match"].get("status", ["any"]))
        conditions = [
            f"{c.get('pointer') or c.get('header')} = {c['equals']}"
            for c in [*rule["match"].get("body", []), *rule["match"].get("headers", [])]
            if "equals" in c
        ]
        when = statuses + (f" ({'; '.join(conditions)})" if conditions else "")
        example = rule["examples"][0]["response"]
        seen = render_message(rule["message"], Response.from_example(example))
        what = rule.get("description", "")
        todo = f"{what} {ACTIONS[rule['action']]}".strip()
        out.append(f"| {_cell(when)} | `{rule['name']}` | {_cell(seen)} | {_cell(todo)} |")
    out += [
        "",
        "A response no rule matches: 5xx and 408 are retried, 429 waits, anything else rejects"
        " the profile. `dest-engine explain "
        + spec.data["name"]
        + " RESPONSE.json` says which rule a response hits and why.",
    ]
    return [*out, ""]

"""Spec: a destination file, loaded and checked (JSON syntax, JSON Schema, semantics).

`load_spec` returns a `Spec` or raises `InvalidInput` with every finding;
`check_spec` returns the findings (errors and warnings) without raising.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import TemplateSyntaxError

from engine import catalog, schema
from engine.bodycheck import unquoted_prints
from engine.findings import (
    Document,
    Finding,
    InvalidInput,
    UnreadableInput,
    display_path,
    load_document,
    read_text,
)
from engine.namecheck import check_names
from engine.templating import (
    Kind,
    TemplateSource,
    has_json_body,
    host_allowed,
    parse,
    reads,
)
from engine.translation import check_rules

TEMPLATE_POINTERS: list[tuple[str, Kind]] = [
    ("/destinationServer/urlBasedDestination/url", "url"),
    ("/destinationServer/httpTemplate/requestBody", "body"),
]


@dataclass(frozen=True)
class Spec:
    """A validated destination spec and where it lives."""

    path: Path
    name: str  # the file as shown in messages
    data: dict[str, Any]

    @property
    def destination(self) -> str:
        return str(self.data["name"])

    @property
    def templates_dir(self) -> Path:
        """`templates/` beside the spec's folder: destinations/x.json -> templates/."""
        return self.path.resolve().parent.parent / "templates"

    def template_source(self, pointer: str, kind: Kind) -> TemplateSource:
        """The template declared at `pointer`, read from its file when it has one."""
        node = resolve(self.data, pointer)
        strategy = node["templatingStrategy"]
        if "file" in node:
            path = self.templates_dir / node["file"]
            return TemplateSource(
                read_text(path), strategy, display_path(path), pointer, kind, path
            )
        return TemplateSource(node["value"], strategy, self.name, pointer + "/value", kind)

    def template_pointers(self) -> list[tuple[str, Kind]]:
        """Every template the spec declares, with its kind."""
        headers = self.data["destinationServer"]["httpTemplate"].get("headers", [])
        return TEMPLATE_POINTERS + [
            (f"/destinationServer/httpTemplate/headers/{i}/value", "header")
            for i in range(len(headers))
        ]


def resolve(data: Any, pointer: str) -> Any:
    """The value at a JSON pointer."""
    for part in pointer.split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        data = data[int(key)] if isinstance(data, list) else data[key]
    return data


def load_spec(ref: str) -> Spec:
    """Find (by path or destination name), load and validate a spec; raise on errors."""
    findings, spec = _check(catalog.find_spec(ref))
    errors = [f for f in findings if f.severity == "error"]
    if errors or spec is None:
        raise InvalidInput(errors)
    return spec


def check_spec(ref: str) -> list[Finding]:
    """Every finding for a spec, in order: syntax, schema, semantics."""
    try:
        return _check(catalog.find_spec(ref))[0]
    except InvalidInput as exc:
        return exc.findings


def _check(path: Path) -> tuple[list[Finding], Spec | None]:
    doc = load_document(path)
    findings = schema.check(doc, "destination")
    if findings:
        return findings, None
    spec = Spec(path, doc.name, doc.data)
    return semantic_findings(spec, doc), spec


def semantic_findings(spec: Spec, doc: Document) -> list[Finding]:
    """Checks the schema cannot express: templates, regexes, hosts, error rules."""
    findings = _regex_findings(doc)
    if not findings:  # the checks below compile these patterns
        findings += _template_findings(spec, doc)
        findings += check_rules(spec, doc)
    findings += _url_findings(spec, doc)
    findings += _aggregation_findings(spec, doc)
    findings += _naming_findings(spec, doc)
    unique = list(dict.fromkeys(findings))  # a name misread twice on one line is one finding
    return sorted(unique, key=lambda f: (f.file != doc.name, f.file, f.line or 0, f.column or 0))


def _template_findings(spec: Spec, doc: Document) -> list[Finding]:
    findings = []
    for pointer, kind in spec.template_pointers():
        node = resolve(spec.data, pointer)
        has_value, has_file = "value" in node, "file" in node
        if has_value == has_file:
            findings.append(
                doc.finding(
                    pointer,
                    "give the template either `value` or `file`, not both"
                    if has_value
                    else "give the template a `value` or a `file`",
                )
            )
            continue
        if has_file:
            problem = _template_file_problem(spec, node["file"])
            if problem:
                findings.append(doc.finding(pointer + "/file", problem))
                continue
        source = spec.template_source(pointer, kind)
        if source.strategy == "NONE":
            if "{{" in source.text or "{%" in source.text:
                findings.append(
                    doc.finding(
                        pointer + "/templatingStrategy",
                        "the template contains {{ or {% but templatingStrategy is NONE, so it is"
                        " sent literally; did you mean JINJA?",
                        severity="warning",
                    )
                )
            continue
        findings += _source_findings(spec, doc, source)
    return findings


def _template_file_problem(spec: Spec, file: str) -> str | None:
    root = spec.templates_dir.resolve()
    path = (root / file).resolve()
    if not path.is_relative_to(root):
        return (
            f"template file {file!r} is outside the templates folder ({display_path(root)}/);"
            f" give a path inside it, e.g. '{spec.data['name']}/body.json.j2'"
        )
    if path.is_dir():
        return f"template file {display_path(path)} is a folder; name a file inside it"
    if not path.is_file():
        return f"template file {display_path(path)} does not exist"
    try:
        read_text(path)
    except UnreadableInput as exc:
        return f"template file {exc}"
    return None


UNQUOTED = (
    "a value printed outside a JSON string: text would land without quotes and could add"
    ' JSON structure; write it inside quotes ("{{ ... }}") or use | tojson'
)


def _source_findings(spec: Spec, doc: Document, source: TemplateSource) -> list[Finding]:
    """Syntax errors and unknown names, located in the template file or the spec."""

    def finding(line: int | None, message: str) -> Finding:
        if source.file is not None:
            return Finding(source.origin, message, "", line)
        spec_line, column = doc.location(source.pointer)
        detail = f" (line {line} of the template)" if line and "\n" in source.text else ""
        return Finding(doc.name, message + detail, source.pointer, spec_line, column)

    try:
        tree = parse(source)
    except TemplateSyntaxError as exc:
        return [finding(exc.lineno, f"template syntax error: {exc.message}")]
    findings = [finding(line, message) for line, message in check_names(spec, source)]
    if source.kind == "body" and has_json_body(spec):
        fields = spec.data["schemaConfig"]["profileFields"]
        for line in unquoted_prints(fields, tree):
            findings.append(replace(finding(line, UNQUOTED), severity="warning"))
    if source.kind == "header" and {"authData", "input"} <= reads(source):
        findings.append(
            finding(None, "a header that reads authData cannot also read input; split it in two")
        )
    return findings


def _regex_findings(doc: Document) -> list[Finding]:
    findings = []
    for pointer, pattern in _regexes(doc.data):
        try:
            re.compile(pattern)
        except re.error as exc:
            findings.append(
                doc.finding(
                    pointer,
                    f"invalid regular expression {pattern!r}: {exc.msg} at position {exc.pos}",
                )
            )
    return findings


def _regexes(data: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for name, ns in data["identityNamespaces"].items():
        if "pattern" in ns:
            out.append((f"/identityNamespaces/{name}/pattern", ns["pattern"]))
    for i, f in enumerate(data.get("customerDataFields", [])):
        if "pattern" in f:
            out.append((f"/customerDataFields/{i}/pattern", f["pattern"]))
    for i, f in enumerate(data["schemaConfig"]["profileFields"]):
        if "namePattern" in f:
            out.append((f"/schemaConfig/profileFields/{i}/namePattern", f["namePattern"]))
    mapping_id = data.get("segmentMappingConfig", {}).get("mappingIdSchema", {})
    if "pattern" in mapping_id:
        out.append(("/segmentMappingConfig/mappingIdSchema/pattern", mapping_id["pattern"]))
    for i, rule in enumerate(data.get("errorTranslation", [])):
        for part in ("body", "headers"):
            for j, cond in enumerate(rule["match"].get(part, [])):
                if "regex" in cond:
                    out.append((f"/errorTranslation/{i}/match/{part}/{j}/regex", cond["regex"]))
        for j, source in enumerate(rule.get("retryAt", [])):
            if "regex" in source:
                out.append((f"/errorTranslation/{i}/retryAt/{j}/regex", source["regex"]))
    return out


def _url_findings(spec: Spec, doc: Document) -> list[Finding]:
    allowed = spec.data["allowedHosts"]
    urls = []
    for i, auth in enumerate(spec.data["customerAuthenticationConfigurations"]):
        for key in ("authorizationUrl", "accessTokenUrl", "refreshTokenUrl"):
            if key in auth:
                urls.append((f"/customerAuthenticationConfigurations/{i}/{key}", auth[key], True))
    url_pointer = "/destinationServer/urlBasedDestination/url"
    node = resolve(spec.data, url_pointer)
    if "value" in node:
        prefix = _literal_prefix(node["value"], node["templatingStrategy"])
        urls.append((url_pointer + "/value", prefix, prefix == node["value"]))
    findings = []
    for pointer, url, complete in urls:
        parts = urlsplit(url)
        host_known = complete or any(c in url.partition("://")[2] for c in "/?#")
        if parts.scheme != "https":
            findings.append(doc.finding(pointer, f"URL {url!r} must start with https://"))
        elif parts.hostname and host_known and not host_allowed(parts.hostname, allowed):
            findings.append(
                doc.finding(
                    pointer,
                    f"host {parts.hostname} is not in allowedHosts ({', '.join(allowed)});"
                    " add it there or fix the URL",
                )
            )
    return findings


def _literal_prefix(template: str, strategy: str) -> str:
    """The part of a URL template before its first `{{` or `{%`."""
    if strategy == "NONE":
        return template
    return re.split(r"\{[{%#]", template, maxsplit=1)[0]


def _aggregation_findings(spec: Spec, doc: Document) -> list[Finding]:
    findings = []
    namespaces = spec.data["identityNamespaces"]
    config = spec.data["aggregation"].get("configurableAggregation")
    if spec.data["aggregation"]["aggregationType"] == "CONFIGURABLE_AGGREGATION" and config:
        key = config.get("aggregationKey", {})
        base = "/aggregation/configurableAggregation/aggregationKey"
        if key.get("includeSegmentStatus") and not key.get("includeSegmentId"):
            findings.append(
                doc.finding(
                    base + "/includeSegmentStatus",
                    "includeSegmentStatus needs includeSegmentId: true",
                )
            )
        for i, group in enumerate(key.get("groups", [])):
            for j, ns in enumerate(group["namespaces"]):
                if ns not in namespaces:
                    findings.append(
                        doc.finding(
                            f"{base}/groups/{i}/namespaces/{j}",
                            f"identity namespace {ns!r} is not in identityNamespaces"
                            f" ({', '.join(namespaces)})",
                        )
                    )
    mapping_id = spec.data.get("segmentMappingConfig", {}).get("mappingIdSchema", {})
    if mapping_id.get("minimum", 0) > mapping_id.get("maximum", float("inf")):
        findings.append(
            doc.finding("/segmentMappingConfig/mappingIdSchema", "minimum is greater than maximum")
        )
    return findings


def _naming_findings(spec: Spec, doc: Document) -> list[Finding]:
    """Names that must be unique or present: rules, profile fields, the spec's own name."""
    findings = []
    seen: dict[str, int] = {}
    for i, rule in enumerate(spec.data.get("errorTranslation", [])):
        if rule["name"] in seen:
            findings.append(
                doc.finding(
                    f"/errorTranslation/{i}/name",
                    f"rule name {rule['name']!r} is already used by"
                    f" /errorTranslation/{seen[rule['name']]}",
                )
            )
        seen.setdefault(rule["name"], i)
    for i, field in enumerate(spec.data["schemaConfig"]["profileFields"]):
        if ("name" in field) == ("namePattern" in field):
            findings.append(
                doc.finding(
                    f"/schemaConfig/profileFields/{i}",
                    "give the field either a `name` or a `namePattern`",
                )
            )
    if spec.path.stem != spec.destination:
        findings.append(
            doc.finding(
                "/name",
                f"the spec is named {spec.destination!r} but its file is {spec.path.name};"
                f" `dest-engine render {spec.destination}` finds specs by file name",
                severity="warning",
            )
        )
    return findings

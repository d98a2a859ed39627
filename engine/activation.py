"""Activation: a user's mappings, audiences and settings for one connection."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import schema
from engine.findings import Document, Finding, InvalidInput, load_document
from engine.spec import Spec, load_spec

IDENTITY_PREFIX = "identityMap."
DEFAULT_NAMESPACE = "ups"


@dataclass(frozen=True)
class FieldMapping:
    """One source field and its target: an identity namespace or an attribute."""

    source: str
    target: str
    is_identity: bool

    @property
    def source_namespace(self) -> str | None:
        """The profile identity namespace when the source is `identityMap.<namespace>`."""
        if self.source.startswith(IDENTITY_PREFIX):
            return self.source[len(IDENTITY_PREFIX) :]
        return None

    @property
    def source_path(self) -> tuple[str, ...]:
        return tuple(self.source.split("."))


@dataclass(frozen=True)
class Audience:
    """An activated audience and the alias (Mapping ID) the destination knows it by."""

    id: str
    name: str | None
    namespace: str
    alias: Any


@dataclass(frozen=True)
class Activation:
    """A checked activation file."""

    path: Path
    destination: str
    connection: str
    customer_data: dict[str, Any]
    mappings: tuple[FieldMapping, ...]
    audiences: tuple[Audience, ...]

    @property
    def identity_mappings(self) -> tuple[FieldMapping, ...]:
        return tuple(m for m in self.mappings if m.is_identity)

    @property
    def attribute_mappings(self) -> tuple[FieldMapping, ...]:
        return tuple(m for m in self.mappings if not m.is_identity)


def load_activation(path: str | Path, spec: Spec) -> Activation:
    """Load and check an activation against a spec; raise `InvalidInput` on errors."""
    doc = load_document(Path(path))
    findings = schema.check(doc, "activation") or _semantic(doc, spec)
    if findings:
        raise InvalidInput(findings)
    return _build(doc, spec)


def check_activation(path: str | Path, spec_ref: str) -> list[Finding]:
    """The findings for an activation file against a spec."""
    spec = load_spec(spec_ref)
    try:
        load_activation(path, spec)
    except InvalidInput as exc:
        return exc.findings
    return []


def _build(doc: Document, spec: Spec) -> Activation:
    data = doc.data
    namespaces = spec.data["identityNamespaces"]
    mappings = tuple(
        FieldMapping(m["source"], m["target"], m["target"] in namespaces) for m in data["mappings"]
    )
    config = spec.data.get("segmentMappingConfig", {})
    audiences = tuple(
        Audience(a["id"], a.get("name"), a.get("namespace", DEFAULT_NAMESPACE), _alias(a, config))
        for a in data["audiences"]
    )
    customer_data = {
        f["name"]: f["default"] for f in spec.data.get("customerDataFields", []) if "default" in f
    }
    customer_data.update(data.get("customerData", {}))
    return Activation(
        doc.path, data["destination"], data["connection"], customer_data, mappings, audiences
    )


def _alias(audience: dict[str, Any], config: dict[str, Any]) -> Any:
    if config.get("mapUserInput"):
        return audience.get("mappingId")
    if config.get("mapExperiencePlatformSegmentName"):
        return audience.get("name", audience["id"])
    return audience["id"]


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _semantic(doc: Document, spec: Spec) -> list[Finding]:
    data = doc.data
    findings: list[Finding] = []
    if data["destination"] != spec.destination:
        findings.append(
            doc.finding(
                "/destination",
                f"this activation is for {data['destination']!r}, not {spec.destination!r}",
            )
        )
    findings += _mapping_findings(doc, spec)
    findings += _audience_findings(doc, spec)
    findings += _customer_data_findings(doc, spec)
    return findings


def _mapping_findings(doc: Document, spec: Spec) -> list[Finding]:
    namespaces: dict[str, Any] = spec.data["identityNamespaces"]
    fields = spec.data["schemaConfig"]["profileFields"]
    names = [f["name"] for f in fields if "name" in f]
    patterns = [re.compile(f["namePattern"]) for f in fields if "namePattern" in f]
    findings: list[Finding] = []
    seen: dict[str, int] = {}
    for i, m in enumerate(doc.data["mappings"]):
        target, source, pointer = m["target"], m["source"], f"/mappings/{i}"
        if target in namespaces:
            if not source.startswith(IDENTITY_PREFIX) and not namespaces[target].get(
                "acceptsAttributes"
            ):
                findings.append(
                    doc.finding(
                        pointer + "/source",
                        f"identity {target} accepts only identities:"
                        " use a source like 'identityMap.<namespace>'",
                    )
                )
        elif target not in names and not any(p.fullmatch(target) for p in patterns):
            findings.append(
                doc.finding(
                    pointer + "/target",
                    f"{target!r} is neither an identity namespace nor a target attribute of"
                    f" {spec.destination}{_suggest(target, [*namespaces, *names])}",
                )
            )
        if target in seen and target not in namespaces:
            findings.append(
                doc.finding(
                    pointer + "/target", f"{target!r} is already mapped by /mappings/{seen[target]}"
                )
            )
        seen.setdefault(target, i)
    mapped = {m["target"] for m in doc.data["mappings"]}
    for name, ns in namespaces.items():
        if ns.get("required") and name not in mapped:
            findings.append(
                doc.finding(
                    "/mappings",
                    f"no mapping to the required identity {name}; add one like"
                    f' {{"source": "identityMap.<namespace>", "target": "{name}"}}',
                )
            )
    config = spec.data["schemaConfig"]
    if config.get("identityRequired") and not mapped & set(namespaces) and not findings:
        findings.append(
            doc.finding("/mappings", "map at least one identity namespace of the destination")
        )
    if config.get("profileRequired") and not mapped - set(namespaces):
        findings.append(doc.finding("/mappings", "map at least one target attribute"))
    return findings


def _audience_findings(doc: Document, spec: Spec) -> list[Finding]:
    config = spec.data.get("segmentMappingConfig", {})
    id_schema = config.get("mappingIdSchema")
    title = config.get("mappingIdTitle", "Mapping ID")
    findings: list[Finding] = []
    audiences = doc.data["audiences"]
    if spec.data["schemaConfig"].get("segmentRequired") and not audiences:
        findings.append(doc.finding("/audiences", "activate at least one audience"))
    ids: dict[str, int] = {}
    aliases: dict[Any, int] = {}
    for i, audience in enumerate(audiences):
        pointer = f"/audiences/{i}"
        if audience["id"] in ids:
            findings.append(
                doc.finding(
                    pointer + "/id",
                    f"audience {audience['id']!r} is already activated"
                    f" at /audiences/{ids[audience['id']]}",
                )
            )
        ids.setdefault(audience["id"], i)
        if not config.get("mapUserInput"):
            continue
        if "mappingId" not in audience:
            findings.append(
                doc.finding(pointer, f"missing required property 'mappingId' ({title})")
            )
            continue
        mapping_id = audience["mappingId"]
        problem = _mapping_id_problem(mapping_id, id_schema) if id_schema else None
        if problem:
            hint = (
                f" ({config['mappingIdDescription']})" if "mappingIdDescription" in config else ""
            )
            findings.append(doc.finding(pointer + "/mappingId", f"{problem}{hint}"))
        elif mapping_id in aliases:
            findings.append(
                doc.finding(
                    pointer + "/mappingId",
                    f"Mapping ID {mapping_id} is already used by audience"
                    f" {audiences[aliases[mapping_id]]['id']!r} (/audiences/{aliases[mapping_id]});"
                    " each audience needs its own",
                )
            )
        aliases.setdefault(mapping_id, i)
    return findings + _overwritten_attributes(doc, config)


def _overwritten_attributes(doc: Document, config: dict[str, Any]) -> list[Finding]:
    """Attribute mappings onto the attribute an audience's status is written to."""
    template = config.get("mappingIdAttribute")
    if not template:
        return []
    written = {
        template.replace("{mappingId}", str(a["mappingId"])): a
        for a in doc.data["audiences"]
        if "mappingId" in a
    }
    findings = []
    for i, m in enumerate(doc.data["mappings"]):
        audience = written.get(m["target"])
        if audience is not None:
            findings.append(
                doc.finding(
                    f"/mappings/{i}/target",
                    f"{m['target']!r} receives the status of audience {audience['id']!r}"
                    f" (Mapping ID {audience['mappingId']}); map this field to another attribute"
                    " or give the audience another Mapping ID",
                )
            )
    return findings


def _mapping_id_problem(value: Any, rules: dict[str, Any]) -> str | None:
    shown = repr(value)
    if rules["type"] == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"Mapping ID {shown} must be an integer" + _range(rules)
        low, high = rules.get("minimum"), rules.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            return f"Mapping ID {shown} is out of range" + _range(rules)
        return None
    if not isinstance(value, str):
        return f"Mapping ID {shown} must be a string"
    if "pattern" in rules and not re.fullmatch(rules["pattern"], value):
        return f"Mapping ID {shown} does not match {rules['pattern']}"
    return None


def _range(rules: dict[str, Any]) -> str:
    if "minimum" in rules and "maximum" in rules:
        return f" from {rules['minimum']} to {rules['maximum']}"
    return ""


def _customer_data_findings(doc: Document, spec: Spec) -> list[Finding]:
    fields = {f["name"]: f for f in spec.data.get("customerDataFields", [])}
    given: dict[str, Any] = doc.data.get("customerData", {})
    findings = []
    for name, value in given.items():
        pointer = f"/customerData/{name}"
        if name not in fields:
            known = _suggest(name, list(fields)) or (
                f"; {spec.destination} has: {', '.join(fields)}"
                if fields
                else f"; {spec.destination} has none"
            )
            findings.append(
                doc.finding(pointer, f"unknown customer data field {name!r}{known}", key=True)
            )
            continue
        problem = _field_problem(value, fields[name])
        if problem:
            findings.append(doc.finding(pointer, problem))
    for name, field in fields.items():
        if field.get("isRequired") and name not in given and "default" not in field:
            findings.append(
                doc.finding("/customerData", f"missing required customer data field {name!r}")
            )
    return findings


def _field_problem(value: Any, field: dict[str, Any]) -> str | None:
    kind = field["type"]
    ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }[kind]
    if not ok:
        return f"must be {'an' if kind == 'integer' else 'a'} {kind}, not {value!r}"
    if "enum" in field and value not in field["enum"]:
        return f"must be one of {', '.join(map(str, field['enum']))}, not {value!r}"
    if "pattern" in field and isinstance(value, str) and not re.fullmatch(field["pattern"], value):
        return f"{value!r} does not match {field['pattern']}"
    return None

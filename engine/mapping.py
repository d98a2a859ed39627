"""Mapping: an input profile becomes a TargetProfile, the Destination SDK's template input.

Identities go into `identityMap` (only values matching the namespace's
pattern), mapped attributes into `attributes.<name>.value` (checked against the
spec's `type` and `maxLength`), and memberships of activated audiences into
`segmentMembership`. A profile that cannot be sent becomes a `Skipped` with its
reason.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from engine.activation import Activation
from engine.profiles import ProfileRecord
from engine.spec import Spec
from engine.templating import Map

STATUSES = {"realized": "realized", "existing": "realized", "exited": "exited"}


class TargetProfile(NamedTuple):
    """A profile in the destination's terms, ready for aggregation."""

    ref: str
    profile: Map  # identityMap, attributes, segmentMembership


class Skipped(NamedTuple):
    """A profile that is not sent: `category` for counting, `reason` for the user."""

    ref: str
    category: str
    reason: str
    identities: tuple[str, ...] = ()  # set when a staged identity could not be rendered


JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
}


class Field(NamedTuple):
    """A mapped target attribute: its name, where it comes from, what the spec accepts."""

    target: str
    source_path: tuple[str, ...]
    type: str | None
    max_length: int | None

    def problem(self, value: Any) -> str | None:
        """Why `value` does not fit the attribute, or None."""
        if self.type is not None and (
            isinstance(value, bool) != (self.type == "boolean")
            or not isinstance(value, JSON_TYPES[self.type])
        ):
            return f"{self.target} is {_kind(value)}, not {self.type}: {_shown(value)}"
        if self.max_length is not None and isinstance(value, str) and len(value) > self.max_length:
            return (
                f"{self.target} is {len(value):,} characters long;"
                f" the destination accepts at most {self.max_length:,}"
            )
        return None


def _kind(value: Any) -> str:
    kinds: tuple[tuple[str, type], ...] = (
        ("a boolean", bool),  # before integer: a bool is an int in Python
        ("an integer", int),
        ("a number", float),
        ("a string", str),
        ("an array", list),
    )
    return next((kind for kind, types in kinds if isinstance(value, types)), "an object")


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Mapper:
    """Maps input profiles for one spec and activation."""

    def __init__(self, spec: Spec, activation: Activation) -> None:
        namespaces = spec.data["identityNamespaces"]
        self.patterns = {
            name: re.compile(ns["pattern"]) for name, ns in namespaces.items() if "pattern" in ns
        }
        self.required = [name for name, ns in namespaces.items() if ns.get("required")]
        self.identity_sources = [
            (m.target, m.source_namespace, m.source_path, self.patterns.get(m.target))
            for m in activation.identity_mappings
        ]
        self.fields = [_field(spec, m.target, m.source_path) for m in activation.attribute_mappings]
        self.audiences = [(a.namespace, a.id) for a in activation.audiences]
        self.segment_required = bool(spec.data["schemaConfig"].get("segmentRequired"))

    def map(self, record: ProfileRecord) -> TargetProfile | Skipped:
        """The target profile, or why this profile is skipped."""
        data = record.data
        identities, problems = self._identities(data)
        missing = [ns for ns in self.required if ns not in identities]
        if missing:
            details = [p for ns in missing for p in problems.get(ns, ["none given"])]
            reason = f"no valid {', '.join(missing)}: {'; '.join(details)}"
            return Skipped(record.ref, "missing-identity", reason)
        if not identities:
            return Skipped(record.ref, "missing-identity", "no identity of the destination")
        segments = self._segments(data)
        if self.segment_required and not segments:
            return Skipped(record.ref, "no-audience", "not in any activated audience")
        attributes = Map()
        for field in self.fields:
            value = _lookup(data, field.source_path)
            if value is not None:
                problem = field.problem(value)
                if problem is not None:
                    return Skipped(record.ref, "invalid-attribute", problem)
                attributes[field.target] = Map(value=value)
        profile = Map(
            identityMap=Map((ns, [Map(id=v) for v in ids]) for ns, ids in identities.items()),
            attributes=attributes,
            segmentMembership=segments,
        )
        return TargetProfile(record.ref, profile)

    def _identities(
        self, data: dict[str, Any]
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        identities: dict[str, list[str]] = {}
        problems: dict[str, list[str]] = {}
        for ns, source_namespace, source_path, pattern in self.identity_sources:
            for value in _identity_values(data, source_namespace, source_path):
                if not isinstance(value, str) or not value:
                    problems.setdefault(ns, []).append(f"{_shown(value)} is not a non-empty string")
                elif pattern is not None and not pattern.fullmatch(value):
                    problems.setdefault(ns, []).append(
                        f"{_shown(value)} does not match {pattern.pattern}"
                    )
                elif value not in identities.get(ns, []):
                    identities.setdefault(ns, []).append(value)
        return identities, problems

    def _segments(self, data: dict[str, Any]) -> Map:
        membership = data.get("segmentMembership")
        segments = Map()
        if not isinstance(membership, dict):
            return segments
        for namespace, audience_id in self.audiences:
            entry = membership.get(namespace, {})
            entry = entry.get(audience_id) if isinstance(entry, dict) else None
            if not isinstance(entry, dict) or entry.get("status") not in STATUSES:
                continue
            kept = Map(status=STATUSES[entry["status"]])
            if "lastQualificationTime" in entry:
                kept["lastQualificationTime"] = entry["lastQualificationTime"]
            segments.setdefault(namespace, Map())[audience_id] = kept
        return segments


def _field(spec: Spec, target: str, source_path: tuple[str, ...]) -> Field:
    """The spec's profile field for a mapped attribute (by name, else by name pattern)."""
    fields = spec.data["schemaConfig"]["profileFields"]
    matches = [f for f in fields if f.get("name") == target] or [
        f for f in fields if "namePattern" in f and re.fullmatch(f["namePattern"], target)
    ]
    declared = matches[0] if matches else {}
    return Field(target, source_path, declared.get("type"), declared.get("maxLength"))


def _identity_values(
    data: dict[str, Any], namespace: str | None, path: tuple[str, ...]
) -> list[Any]:
    if namespace is None:
        value = _lookup(data, path)
        if value is None:
            return []
        return [str(value) if isinstance(value, int) and not isinstance(value, bool) else value]
    identity_map = data.get("identityMap")
    entries = identity_map.get(namespace) if isinstance(identity_map, dict) else None
    if not isinstance(entries, list):
        return []
    values = []
    for entry in entries:
        value = entry.get("id") if isinstance(entry, dict) else entry
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        values.append(value)
    return values


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data

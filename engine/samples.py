"""Sample profiles generated from a spec and an activation, deterministic for a seed.

Like the Destination SDK's sample-profile generator: identities that match
each namespace's pattern, a value for every mapped attribute, and a few
activated audiences with mixed statuses.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.activation import Activation
from engine.profiles import ProfileRecord
from engine.spec import Spec

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def sample_profiles(
    spec: Spec, activation: Activation, count: int, seed: int = 0
) -> Iterator[ProfileRecord]:
    """`count` profiles shaped for `activation`; the same seed gives the same profiles."""
    rng = random.Random(seed)
    namespaces = spec.data["identityNamespaces"]
    for number in range(1, count + 1):
        profile: dict[str, Any] = {}
        for m in activation.identity_mappings:
            value = _identity(namespaces[m.target].get("pattern"), rng, number)
            if m.source_namespace is not None:
                profile.setdefault("identityMap", {}).setdefault(m.source_namespace, []).append(
                    {"id": value}
                )
            else:
                _put(profile, m.source_path, value)
        for m in activation.attribute_mappings:
            _put(
                profile,
                m.source_path,
                _attribute(_field_type(spec, m.target), m.target, rng, number),
            )
        profile["segmentMembership"] = _memberships(activation, rng)
        yield ProfileRecord(f"sample {number}", profile)


def _identity(pattern: str | None, rng: random.Random, number: int) -> str:
    candidates = [
        str(rng.randint(1, 999_999)),
        f"user{number}@example.com",
        str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        f"{rng.getrandbits(256):064x}",
    ]
    for candidate in candidates:
        if pattern is None or re.fullmatch(pattern, candidate):
            return candidate
    return candidates[0]


def _field_type(spec: Spec, target: str) -> str:
    for field in spec.data["schemaConfig"]["profileFields"]:
        if field.get("name") == target or (
            "namePattern" in field and re.fullmatch(field["namePattern"], target)
        ):
            return str(field["type"])
    return "string"


def _attribute(kind: str, target: str, rng: random.Random, number: int) -> Any:
    if kind == "integer":
        return rng.randint(0, 1000)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "array":
        return [f"sample-{target}-{number}"]
    return f"Sample {target} {number}"


def _memberships(activation: Activation, rng: random.Random) -> dict[str, Any]:
    memberships: dict[str, Any] = {}
    chosen = [a for a in activation.audiences if rng.random() < 0.6] or list(
        activation.audiences[:1]
    )
    for audience in chosen:
        when = EPOCH + timedelta(minutes=rng.randint(0, 500_000))
        memberships.setdefault(audience.namespace, {})[audience.id] = {
            "status": rng.choice(["realized", "realized", "exited"]),
            "lastQualificationTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    return memberships


def _put(profile: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = profile
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value

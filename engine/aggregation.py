"""Aggregation: target profiles are grouped into Batches, one Batch per request.

BEST_EFFORT fills batches of up to `maxUsersPerRequest` profiles.
CONFIGURABLE_AGGREGATION first splits each profile by its aggregation key
(audience, audience status, identity namespaces) and fills one batch per key
up to `maxNumEventsInBatch`; batches still open at the end are sent then.
`splitUserById` gives each identity value its own profile entry.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.activation import Activation
from engine.mapping import TargetProfile
from engine.spec import Spec
from engine.templating import Map


@dataclass
class Batch:
    """Profiles that go into one request, and what they have in common."""

    profiles: list[Map] = field(default_factory=list)
    refs: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()
    aggregation_key: Map | None = None
    single: bool = False  # templates get `input.profile`

    def add(self, target: TargetProfile, profile: Map) -> None:
        self.profiles.append(profile)
        if target.ref not in self.refs:
            self.refs += (target.ref,)
        self.identities += (identity_key(profile),)

    def template_input(self) -> Map:
        """The template's `input`."""
        data = Map(profiles=self.profiles)
        if self.single:
            data["profile"] = self.profiles[0]
        if self.aggregation_key is not None:
            data["aggregationKey"] = self.aggregation_key
        return data


def identity_key(profile: Map) -> str:
    """A profile entry's identities as one string: `OutreachId=123` (`;` between several)."""
    return ";".join(
        f"{ns}={entry['id']}"
        for ns, entries in profile.get("identityMap", Map()).items()
        for entry in entries
    )


def split_by_identity(profile: Map) -> Iterator[Map]:
    """One entry per identity value: the i-th value of each namespace go together."""
    identity_map = profile.get("identityMap", Map())
    if identity_map and all(len(entries) == 1 for entries in identity_map.values()):
        yield profile  # one value per namespace: already split
        return
    columns = [[(ns, entry) for entry in entries] for ns, entries in identity_map.items()]
    for row in itertools.zip_longest(*columns):
        yield Map(profile, identityMap=Map((ns, [entry]) for ns, entry in filter(None, row)))


class NothingToSend(Exception):
    """The aggregation key leaves nothing of a profile to send: a category and a reason."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category


class Aggregator:
    """Turns a stream of target profiles into batches."""

    def __init__(self, spec: Spec, activation: Activation) -> None:
        config = spec.data["aggregation"]
        self.best_effort = config["aggregationType"] == "BEST_EFFORT"
        settings = config[
            "bestEffortAggregation" if self.best_effort else "configurableAggregation"
        ]
        self.limit: int = settings[
            "maxUsersPerRequest" if self.best_effort else "maxNumEventsInBatch"
        ]
        self.split_by_id = bool(settings.get("splitUserById"))
        self.key_config: dict[str, Any] = (
            {} if self.best_effort else settings.get("aggregationKey", {})
        )
        self.aliases = {(a.namespace, a.id): a.alias for a in activation.audiences}
        self.open: dict[tuple[Any, ...], Batch] = {}

    def add(self, target: TargetProfile) -> list[Batch]:
        """Add a profile; return the batches it completes.

        Raises NothingToSend when the aggregation key leaves nothing of the profile.
        """
        events = list(self._events(target.profile))
        if not events:
            raise self._nothing_to_send()
        pieces = [(k, agg_key, piece) for k, agg_key, p in events for piece in self._split(p)]
        if not pieces:
            raise NothingToSend(
                "missing-identity", "no identity, and splitUserById sends one entry per identity"
            )
        full = []
        for key, aggregation_key, piece in pieces:
            batch = self.open.get(key)
            if batch is None:
                batch = self.open[key] = Batch(
                    aggregation_key=aggregation_key,
                    single=self.best_effort and self.limit == 1,
                )
            batch.add(target, piece)
            if len(batch.profiles) >= self.limit:
                del self.open[key]
                full.append(batch)
        return full

    def _nothing_to_send(self) -> NothingToSend:
        if self.key_config.get("includeSegmentId"):
            return NothingToSend("no-audience", "not in any activated audience")
        return NothingToSend("missing-identity", "no identity in any of the aggregationKey groups")

    def flush(self) -> Iterator[Batch]:
        """Yield every batch still open, oldest first."""
        batches, self.open = list(self.open.values()), {}
        yield from batches

    def _split(self, profile: Map) -> Iterator[Map]:
        if self.split_by_id:
            yield from split_by_identity(profile)
        else:
            yield profile

    def _events(self, profile: Map) -> Iterator[tuple[tuple[Any, ...], Map | None, Map]]:
        """(grouping key, input.aggregationKey, the profile restricted to that key)."""
        if self.best_effort:
            yield (), None, profile
            return
        for segment_key, segment_part in self._segment_split(profile):
            for identity_key, identity_part in self._identity_split(segment_part):
                key = Map(segment_key, **identity_key)
                yield tuple(sorted((k, repr(v)) for k, v in key.items())), key, identity_part

    def _segment_split(self, profile: Map) -> Iterator[tuple[dict[str, Any], Map]]:
        if not self.key_config.get("includeSegmentId"):
            yield {}, profile
            return
        for namespace, audiences in profile.get("segmentMembership", Map()).items():
            for audience_id, membership in audiences.items():
                key = {
                    "segmentId": audience_id,
                    "segmentNamespace": namespace,
                    "segmentAlias": self.aliases.get((namespace, audience_id)),
                }
                if self.key_config.get("includeSegmentStatus"):
                    key["segmentStatus"] = membership["status"]
                only = Map({namespace: Map({audience_id: membership})})
                yield key, Map(profile, segmentMembership=only)

    def _identity_split(self, profile: Map) -> Iterator[tuple[dict[str, Any], Map]]:
        identity_map = profile.get("identityMap", Map())
        if not self.key_config.get("includeIdentity"):
            yield {}, profile
            return
        groups = [g["namespaces"] for g in self.key_config.get("groups", [])]
        if not groups:
            groups = (
                [[ns] for ns in identity_map.keys()]
                if self.key_config.get("oneIdentityPerGroup")
                else [sorted(identity_map.keys())]
            )
        for group in groups:
            present = [ns for ns in group if ns in identity_map]
            if present:
                part = Map(profile, identityMap=Map((ns, identity_map[ns]) for ns in present))
                yield {"identityNamespaces": list(group)}, part

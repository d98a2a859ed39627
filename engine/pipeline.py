"""The pipeline: records -> mapping -> aggregation -> templating, shared by `render` and `push`.

`Pipeline.run` yields, in input order as far as aggregation allows, a
`Request` for every batch and a `Skipped` for every profile that is not sent,
so every input record ends in exactly one recorded state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

from engine.activation import DEFAULT_NAMESPACE, Activation, Audience
from engine.aggregation import Aggregator, Batch, NothingToSend
from engine.findings import json_kind
from engine.mapping import Mapper, Skipped, TargetProfile
from engine.profiles import BadRecord, Record
from engine.spec import Spec, load_spec
from engine.templating import (
    ENVIRONMENTS,
    REDACTED,
    Map,
    RenderError,
    Request,
    RequestTemplates,
    TemplateSource,
    auth_data_fields,
    compile_source,
    has_json_body,
    render_source,
)

RENDER_ERROR = "render-error"  # the skip category of a profile its templates fail on


def destination_context(activation: Activation) -> Map:
    """The template's `destination`: Mapping IDs and names of the activated audiences."""
    aliases: Map = Map()
    names: Map = Map()
    for audience in activation.audiences:
        aliases.setdefault(audience.namespace, Map())[audience.id] = audience.alias
        names.setdefault(audience.namespace, Map())[audience.id] = audience.name or audience.id
    flat_aliases = Map((k, v) for ns in aliases.values() for k, v in ns.items())
    flat_names = Map((k, v) for ns in names.values() for k, v in ns.items())
    return Map(
        segmentAliases=flat_aliases,
        namespaceSegmentAliases=aliases,
        segmentNames=flat_names,
        namespaceSegmentNames=names,
    )


def redacted_auth_data(spec: Spec) -> dict[str, str]:
    """`authData` for dry runs: every secret replaced by [REDACTED]."""
    return {name: REDACTED for name in auth_data_fields(spec)}


@dataclass
class Tally:
    """Counts for the closing summary."""

    read: int = 0
    requests: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_refs: set[str] = field(default_factory=set)

    @property
    def rendered(self) -> int:
        return self.read - len(self.skipped_refs)


class Pipeline:
    """Profiles in, requests out, for one spec and activation."""

    def __init__(self, spec: Spec, activation: Activation, auth_data: Mapping[str, Any]) -> None:
        self.mapper = Mapper(spec, activation)
        self.aggregator = Aggregator(spec, activation)
        self.templates = RequestTemplates.from_spec(spec)
        self.context = {
            "destination": destination_context(activation),
            "customerData": Map(activation.customer_data),
        }
        self.bound = self.templates.bind(self.context, auth_data)
        self.tally = Tally()

    def run(self, records: Iterable[Record]) -> Iterator[Request | Skipped]:
        """Every request to send and every profile skipped."""
        return self.requests(self.targets(records))

    def targets(self, records: Iterable[Record]) -> Iterator[TargetProfile | Skipped]:
        """Mapping: every target profile and every profile skipped."""
        for record in records:
            self.tally.read += 1
            if isinstance(record, BadRecord):
                yield self._skip(Skipped(record.ref, "invalid-record", record.reason))
                continue
            target = self.mapper.map(record)
            yield self._skip(target) if isinstance(target, Skipped) else target

    def requests(self, targets: Iterable[TargetProfile | Skipped]) -> Iterator[Request | Skipped]:
        """Aggregation and templating: the requests for target profiles."""
        for target in targets:
            if isinstance(target, Skipped):
                yield target
                continue
            try:
                batches = self.aggregator.add(target)
            except NothingToSend as exc:
                yield self._skip(Skipped(target.ref, exc.category, str(exc)))
                continue
            for batch in batches:
                yield from self._render(batch)
        for batch in self.aggregator.flush():
            yield from self._render(batch)

    def _render(self, batch: Batch) -> Iterator[Request | Skipped]:
        try:
            request = self.bound.render(batch)
        except RenderError as exc:
            for ref in batch.refs:
                yield self._skip(Skipped(ref, RENDER_ERROR, str(exc), batch.identities))
            return
        self.tally.requests += 1
        yield request

    def _skip(self, skipped: Skipped) -> Skipped:
        if skipped.ref not in self.tally.skipped_refs:
            self.tally.skipped_refs.add(skipped.ref)
            self.tally.skipped[skipped.category] += 1
        return skipped


def to_map(value: Any) -> Any:
    """JSON data with every object as a `Map`, so templates iterate entries."""
    if isinstance(value, dict):
        return Map((k, to_map(v)) for k, v in value.items())
    if isinstance(value, list):
        return [to_map(v) for v in value]
    return value


def preview_activation(
    spec: Spec,
    audiences: tuple[Audience, ...] = (),
    customer_data: Mapping[str, Any] | None = None,
) -> Activation:
    """An activation for trying templates: these audiences and customerData, no mappings."""
    return Activation(
        spec.path, spec.destination, "preview", dict(customer_data or {}), (), audiences
    )


def render_template(
    template: str,
    target_profiles: list[dict[str, Any]],
    spec: Spec | str,
    aliases: Mapping[str, Any] | None = None,
    customer_data: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Render a template of your own against target-shaped profiles, per aggregation group.

    The Destination SDK's render-template API: `target_profiles` already have
    `identityMap`, `attributes` and `segmentMembership`; the spec decides the
    aggregation and the escaping. Returns `{"aggregationKey", "output"}` per group;
    a profile the aggregation leaves nothing of is in none. Raises RenderError when
    the template does not compile or render (saying where and why), ValueError when
    a target profile is not shaped like one (`target_problem`).
    """
    if isinstance(spec, str):
        spec = load_spec(spec)
    audiences = tuple(
        Audience(audience_id, None, DEFAULT_NAMESPACE, alias)
        for audience_id, alias in (aliases or {}).items()
    )
    activation = preview_activation(spec, audiences, customer_data)
    source = TemplateSource(template, "JINJA", "<template>", "", "body", Path("<template>"))
    groups = []
    for group in template_groups(source, target_profiles, spec, activation):
        if isinstance(group, Skipped):
            if group.category == RENDER_ERROR:
                raise RenderError(group.reason)
            continue
        groups.append(group)
    return groups


def template_groups(
    source: TemplateSource, target_profiles: list[Any], spec: Spec, activation: Activation
) -> Iterator[dict[str, Any] | Skipped]:
    """`render_template` step by step: per aggregation group `{"aggregationKey", "output"}`,
    and a Skipped for each profile the aggregation leaves nothing of or a group that
    fails to render (`item N`: the Nth target profile). Raises RenderError for a
    template that does not compile, ValueError for a target profile of another shape.
    """
    if not isinstance(target_profiles, list | tuple):
        raise ValueError(f"give a list of target profiles, not {json_kind(target_profiles)}")
    for i, profile in enumerate(target_profiles, start=1):
        problem = target_problem(profile)
        if problem:
            raise ValueError(f"item {i}: {problem}")
    is_json = has_json_body(spec)
    try:
        compiled = compile_source(source, "json" if is_json else "text")
    except TemplateSyntaxError as exc:
        raise RenderError(
            f"{source.where(exc.lineno)}: template syntax error: {exc.message}"
        ) from None
    variables = dict(
        ENVIRONMENTS["text"].globals,
        destination=destination_context(activation),
        customerData=Map(activation.customer_data),
    )
    aggregator = Aggregator(spec, activation)

    def rendered(batch: Batch) -> Iterator[dict[str, Any] | Skipped]:
        try:
            output = render_source(source, compiled, dict(variables, input=batch.template_input()))
        except RenderError as exc:
            for ref in batch.refs:
                yield Skipped(ref, RENDER_ERROR, str(exc))
            return
        yield {"aggregationKey": batch.aggregation_key, "output": output}

    for i, profile in enumerate(target_profiles, start=1):
        target = TargetProfile(f"item {i}", to_map(profile))
        try:
            batches = aggregator.add(target)
        except NothingToSend as exc:
            yield Skipped(target.ref, exc.category, str(exc))
            continue
        for batch in batches:
            yield from rendered(batch)
    for batch in aggregator.flush():
        yield from rendered(batch)


TARGET_SECTIONS = {  # what each entry of a target profile's sections looks like
    "identityMap": '[{"id": ...}]',
    "attributes": '{"value": ...}',
    "segmentMembership": '{audience id: {"status": ...}}',
}


def target_problem(profile: Any) -> str | None:
    """What keeps `profile` from being a target profile (`TARGET_SECTIONS`), or None."""
    if not isinstance(profile, dict):
        return f"not a JSON object but {json_kind(profile)}"
    for section, shape in TARGET_SECTIONS.items():
        value = profile.get(section, {})
        if not isinstance(value, dict):
            return f"{section} is {json_kind(value)}, not an object"
        for key, entry in value.items():
            if not _well_shaped(section, entry):
                return f"{section}.{key} is not {shape}"
    return None


def _well_shaped(section: str, entry: Any) -> bool:
    if section == "identityMap":
        return isinstance(entry, list) and all(isinstance(e, dict) and "id" in e for e in entry)
    if section == "segmentMembership":
        return isinstance(entry, dict) and all(
            isinstance(m, dict) and "status" in m for m in entry.values()
        )
    return isinstance(entry, dict)

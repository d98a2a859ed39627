"""Sync: a `push` run with the ledger. Stage what changed, then send it, recording every outcome.

Staging maps every profile and keeps, per identity, only the newest state
that differs from what the destination last received. Sending reads the
staged identities back, renders and delivers them, and writes each outcome
to the ledger as it arrives, so a run can be killed at any moment and the
next one finishes the work.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.aggregation import identity_key, split_by_identity
from engine.delivery import Delivery, Outcome, skipped_outcome
from engine.findings import UnreadableInput
from engine.ledger import Ledger, Unit
from engine.mapping import Skipped, TargetProfile
from engine.pipeline import Pipeline, to_map
from engine.profiles import Record
from engine.spec import Spec
from engine.templating import Request

STAGE_CHUNK = 500


def splits_by_identity(spec: Spec) -> bool:
    aggregation = spec.data["aggregation"]
    key = (
        "bestEffortAggregation"
        if aggregation["aggregationType"] == "BEST_EFFORT"
        else "configurableAggregation"
    )
    return bool(aggregation[key].get("splitUserById"))


def reads_qualification_times(spec: Spec) -> bool:
    """Whether any template reads lastQualificationTime (else its changes send nothing)."""
    return any(
        "lastQualificationTime" in spec.template_source(p, k).text
        for p, k in spec.template_pointers()
    )


class Sync:
    """One push run over a ledger."""

    def __init__(
        self, spec: Spec, pipeline: Pipeline, ledger: Ledger, delivery: Delivery | None = None
    ) -> None:
        self.pipeline = pipeline
        self.ledger = ledger
        self.delivery = delivery
        self.split = splits_by_identity(spec)
        self.keep_times = reads_qualification_times(spec)
        self.staged = 0
        self.unchanged = 0
        self.unrecorded: list[Outcome] = []  # outcomes recorded with the next request sent

    def units(self, target: TargetProfile) -> list[Unit]:
        """The identities of a target profile, each with what its request will carry."""
        pieces = split_by_identity(target.profile) if self.split else [target.profile]
        return [Unit.of(identity_key(p), target.ref, p, self.keep_times) for p in pieces]

    def stage(self, records: Iterable[Record], full: bool = False) -> Iterator[Outcome]:
        """Stage every profile; yield the skipped ones. Input that turns unreadable
        (UnreadableInput) ends staging: what was read before it is staged."""
        chunk: list[Unit] = []
        unreadable: UnreadableInput | None = None
        try:
            for target in self.pipeline.targets(records):
                if isinstance(target, Skipped):
                    yield skipped_outcome(target)
                    continue
                chunk += self.units(target)
                if len(chunk) >= STAGE_CHUNK:
                    self._stage(chunk, full)
                    chunk = []
        except UnreadableInput as exc:
            unreadable = exc
        if chunk:
            self._stage(chunk, full)
        if unreadable:
            raise unreadable

    def _stage(self, units: list[Unit], full: bool) -> None:
        counts = self.ledger.stage(units, full)
        self.staged += counts.staged
        self.unchanged += counts.unchanged

    def send(self, include_failed: bool = True) -> Iterator[Outcome]:
        """Deliver what is staged; record and yield each outcome."""
        assert self.delivery is not None, "sending needs a Delivery"
        targets = (
            TargetProfile(ref, to_map(json.loads(projection)))
            for _identity, ref, projection in self.ledger.pending_units(include_failed)
        )
        outcomes = self.delivery.run(self.pipeline.requests(targets), before_send=self._sending)
        for outcome in outcomes:
            self.unrecorded.append(outcome)
            yield outcome
        self._record_unrecorded()

    def _sending(self, request: Request) -> None:
        """Before a request goes: in one transaction, record the outcomes that came in
        meanwhile and mark the request in flight. The ledger then never shows more than
        --concurrency identities in flight, so a kill resends at most that many."""
        with self.ledger.transaction():
            self._record_unrecorded()
            self.ledger.mark_in_flight(request.identities)

    def _record_unrecorded(self) -> None:
        with self.ledger.transaction():
            for outcome in self.unrecorded:
                self.record(outcome)
        self.unrecorded.clear()

    def record(self, outcome: Outcome) -> None:
        """Write an outcome to the ledger."""
        ids = outcome.identities
        if outcome.state == "delivered":
            self.ledger.delivered(ids)
        elif outcome.state == "rejected" or (outcome.state == "skipped" and ids):
            if outcome.state == "skipped":  # could not be rendered, so never marked as sent
                self.ledger.mark_in_flight(ids)
            letter = {
                "request": outcome.request or {},
                "status": outcome.status,
                "response": outcome.response,
                "rule": outcome.rule or outcome.category,
                "message": outcome.message,
                "attempts": outcome.attempts,
            }
            self.ledger.rejected(ids, letter)
        elif outcome.state == "failed":
            self.ledger.unsent(ids, outcome.message)
        elif outcome.state == "pending":
            self.ledger.unsent(ids)

    def follow(self, records: Iterable[Record], idle: float = 0.5) -> Iterator[Outcome]:
        """Stage and send continuously as records arrive, until the input ends or the run stops.

        Input that turns unreadable (UnreadableInput) ends the run the same way, then
        is raised here.
        """
        inbox: queue.Queue[Any] = queue.Queue(maxsize=10_000)
        done = object()
        unreadable: list[UnreadableInput] = []

        def read() -> None:
            try:
                for record in records:
                    inbox.put(record)
                    if self.delivery is None or self.delivery.stopped:
                        break
            except UnreadableInput as exc:
                unreadable.append(exc)
            inbox.put(done)

        assert self.delivery is not None, "sending needs a Delivery"
        threading.Thread(target=read, name="read-profiles", daemon=True).start()
        finished = False
        while not finished and not self.delivery.stopped:
            batch: list[Record] = []
            try:
                item = inbox.get(timeout=idle)
                while True:
                    if item is done:
                        finished = True
                        break
                    batch.append(item)
                    item = inbox.get_nowait()
            except queue.Empty:
                pass
            yield from self.stage(batch)
            yield from self.send(include_failed=False)  # those wait for the next run
        if unreadable:
            raise unreadable[0]


@dataclass(frozen=True)
class Change:
    """How an identity's data differs from what the destination last received."""

    identity: str
    ref: str
    kind: str  # new, changed, unchanged
    fields: tuple[tuple[str, Any, Any], ...] = ()  # (field, old, new)


def preview(sync: Sync, records: Iterable[Record]) -> Iterator[Change | Skipped]:
    """For `render --diff`: per identity, new / changed (field by field) / unchanged."""
    names = sync.pipeline.context["destination"]["segmentNames"]
    for target in sync.pipeline.targets(records):
        if isinstance(target, Skipped):
            yield target
            continue
        for unit in sync.units(target):
            old = sync.ledger.delivered_projection(unit.identity)
            if old is None:
                yield Change(unit.identity, unit.ref, "new")
                continue
            before, after = _fields(old, names), _fields(json.loads(unit.projection), names)
            fields = tuple(
                (name, before.get(name), after.get(name))
                for name in dict.fromkeys([*before, *after])
                if before.get(name) != after.get(name)
            )
            yield Change(unit.identity, unit.ref, "changed" if fields else "unchanged", fields)


def _fields(projection: dict[str, Any], names: dict[str, Any]) -> dict[str, Any]:
    """A projection as readable field names: `firstName`, `audience 'Trial users'`."""
    out = {name: value.get("value") for name, value in projection.get("attributes", {}).items()}
    for audiences in projection.get("segmentMembership", {}).values():
        for audience_id, membership in audiences.items():
            out[f"audience {names.get(audience_id, audience_id)!r}"] = membership.get("status")
    return out

"""The push ledger through the command line: only what changed is sent, dead letters, status.

Every test runs the real commands (`push`, `render --diff`, `status`, `failed ...`)
with click's CliRunner against the fake Outreach server (real HTTP on 127.0.0.1),
logged in with `dest-engine auth import`. What the fake should hold afterwards is
computed here from the generated profiles, never with the engine's code.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from push_support import (
    ACTIVATION,
    CLIENT_SECRET,
    CONNECTION,
    HIGH_VALUE,
    MAPPING_IDS,
    TRIAL,
    FakeOutreach,
    login,
    stderr_lines,
)

from engine.cli import main

# Credentials and ledgers in tmp folders.
pytestmark = pytest.mark.usefixtures("env")

NAMES = {HIGH_VALUE: "High-value customers", TRIAL: "Trial users"}
NOT_FOUND = (
    "Outreach has no prospect with this OutreachId (Could not find 'prospect' with ID '{}'.)."
    " Check the profile's identity mapped to OutreachId."
)
RUN_LINE = re.compile(
    r"^run (\d+) \((push|failed retry), \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\): (.*)$"
)

# --- the fake, recording every token it hands out -----------------------------------------


class TokenRecordingFake(FakeOutreach):
    """FakeOutreach that remembers every access and refresh token it minted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minted: list[str] = []

    def _mint(self, scopes: tuple[str, ...]) -> dict[str, Any]:
        tokens = super()._mint(scopes)
        self.minted += [tokens["access_token"], tokens["refresh_token"]]
        return tokens


@pytest.fixture
def fake() -> Iterator[TokenRecordingFake]:
    server = TokenRecordingFake()
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert server.errors == []  # no bug inside the fake itself


def ledger_path(data: Path) -> Path:
    return data / "ledgers" / f"{CONNECTION}.sqlite"


# --- running the commands ---------------------------------------------------------------


def invoke(*args: str, stdin: str | None = None) -> Result:
    """Run `dest-engine ARGS`; an unexpected exception fails the test as itself."""
    result = CliRunner().invoke(main, list(args), input=stdin, prog_name="dest-engine")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def override(fake: FakeOutreach) -> list[str]:
    return ["--endpoint-override", f"https://api.outreach.io={fake.url}"]


def push(fake: FakeOutreach, profiles: Path, *extra: str, concurrency: int = 8) -> Result:
    return invoke(
        "push",
        "outreach",
        "--activation",
        str(ACTIVATION),
        "--profiles",
        str(profiles),
        "--concurrency",
        str(concurrency),
        *override(fake),
        *extra,
    )


def summary(
    read: int,
    staged: int,
    delivered: int,
    *,
    unchanged: int = 0,
    rejected: dict[str, int] | None = None,
    pending: int = 0,
) -> list[str]:
    """The closing summary of `push` as the user reads it (nothing skipped, failed, retried)."""
    n_rejected = sum((rejected or {}).values())
    by = (
        " (" + ", ".join(f"{n:,} {k}" for k, n in sorted(rejected.items())) + ")"
        if rejected
        else ""
    )
    return [
        f"read {read:,} profiles; 0 skipped; {unchanged:,} unchanged; {staged:,} staged",
        f"requests: {delivered + n_rejected:,} sent, {delivered:,} delivered,"
        f" {n_rejected:,} rejected{by}, 0 failed, {pending:,} pending; 0 retried",
    ]


def patches(fake: FakeOutreach, since: int = 0) -> list[dict[str, Any]]:
    """The PATCH requests the fake received, from the `since`-th request on."""
    with fake.lock:
        return [r for r in fake.requests[since:] if r["method"] == "PATCH"]


def patched_ids(fake: FakeOutreach, since: int = 0) -> list[int]:
    return [int(r["path"].rsplit("/", 1)[1]) for r in patches(fake, since)]


def sent_attributes(request: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = json.loads(request["body"])["data"]["attributes"]
    return attributes


# --- profiles and what they should produce ------------------------------------------------


def make_profile(
    oid: int, first: str, statuses: dict[str, str], when: str = "2026-11-20T09:15:00Z"
) -> dict[str, Any]:
    return {
        "identityMap": {"Oid": [{"id": str(oid), "primary": True}]},
        "person": {"name": {"firstName": first}},
        "segmentMembership": {
            "ups": {
                audience: {"status": status, "lastQualificationTime": when}
                for audience, status in statuses.items()
            }
        },
    }


def random_profiles(count: int, seed: int, first_id: int = 1001) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    profiles = []
    for n in range(count):
        statuses = {
            a: rng.choice(["realized", "exited"]) for a in MAPPING_IDS if rng.random() < 0.7
        }
        first = rng.choice(["Ada", "Grace", "Zoë", 'Marie "M"', "O'Brien", "李"]) + str(n)
        profiles.append(make_profile(first_id + n, first, statuses or {HIGH_VALUE: "realized"}))
    return profiles


def oid(profile: dict[str, Any]) -> int:
    return int(profile["identityMap"]["Oid"][0]["id"])


def expected_attributes(profile: dict[str, Any]) -> dict[str, Any]:
    """What Outreach holds after the profile's update: firstName, customN = status."""
    attributes: dict[str, Any] = {"firstName": profile["person"]["name"]["firstName"]}
    for audience, membership in profile["segmentMembership"]["ups"].items():
        attributes[f"custom{MAPPING_IDS[audience]}"] = membership["status"]
    return attributes


def write_jsonl(path: Path, profiles: list[dict[str, Any]]) -> Path:
    path.write_text(
        "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in profiles), encoding="utf-8"
    )
    return path


def seed(fake: FakeOutreach, profiles: list[dict[str, Any]], **initial: Any) -> None:
    for p in profiles:
        fake.add_prospect(oid(p), **initial)


# --- 1. only what changed is sent -------------------------------------------------------------


def test_second_push_sends_nothing_then_only_the_changed_five_percent(
    fake: TokenRecordingFake, tmp_path: Path
) -> None:
    profiles = random_profiles(200, seed=11)
    seed(fake, profiles, title="CTO")
    login(fake)
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)

    first = push(fake, path)

    assert first.exit_code == 0, first.stderr
    assert stderr_lines(first.stderr) == summary(200, 200, 200)
    assert sorted(patched_ids(fake)) == sorted(oid(p) for p in profiles)
    assert fake.prospects == {oid(p): {"title": "CTO", **expected_attributes(p)} for p in profiles}

    before = len(fake.requests)
    again = push(fake, path)

    assert again.exit_code == 0, again.stderr
    assert stderr_lines(again.stderr) == summary(200, 0, 0, unchanged=200)
    assert patches(fake, before) == []

    # 5%: five audience statuses realized -> exited, five first names. Plus a newer
    # qualification time on others, which the template does not read: not a change.
    rng = random.Random(12)
    realized = [
        p
        for p in profiles
        if any(m["status"] == "realized" for m in p["segmentMembership"]["ups"].values())
    ]
    by_status = rng.sample(realized, 5)
    by_name = rng.sample([p for p in profiles if p not in by_status], 5)
    for p in by_status:
        ups = p["segmentMembership"]["ups"]
        audience = next(a for a, m in ups.items() if m["status"] == "realized")
        ups[audience]["status"] = "exited"
    for p in by_name:
        p["person"]["name"]["firstName"] += " (renamed)"
    changed = {oid(p) for p in by_status + by_name}
    for p in rng.sample([p for p in profiles if oid(p) not in changed], 20):
        for membership in p["segmentMembership"]["ups"].values():
            membership["lastQualificationTime"] = "2026-12-01T00:00:00Z"
    write_jsonl(path, profiles)
    before = len(fake.requests)

    third = push(fake, path)

    assert third.exit_code == 0, third.stderr
    assert stderr_lines(third.stderr) == summary(200, 10, 10, unchanged=190)
    sent = patches(fake, before)
    assert sorted(patched_ids(fake, before)) == sorted(changed)
    by_id = {oid(p): p for p in profiles}
    for request in sent:
        assert sent_attributes(request) == expected_attributes(
            by_id[int(request["path"].rsplit("/", 1)[1])]
        )
    assert fake.prospects == {oid(p): {"title": "CTO", **expected_attributes(p)} for p in profiles}


def test_full_resends_everything(fake: TokenRecordingFake, tmp_path: Path) -> None:
    profiles = random_profiles(50, seed=13)
    seed(fake, profiles)
    login(fake)
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)
    assert push(fake, path).exit_code == 0
    before = len(fake.requests)

    result = push(fake, path, "--full")

    assert result.exit_code == 0, result.stderr
    assert stderr_lines(result.stderr) == summary(50, 50, 50)
    assert Counter(patched_ids(fake, before)) == Counter({oid(p): 1 for p in profiles})
    assert fake.prospects == {oid(p): expected_attributes(p) for p in profiles}
    # The ledger took the resend in: a plain push after it has nothing to send.
    before = len(fake.requests)
    assert stderr_lines(push(fake, path).stderr) == summary(50, 0, 0, unchanged=50)
    assert patches(fake, before) == []


# --- 2. several updates of one identity in one input -------------------------------------------


def test_only_the_newest_update_of_an_identity_is_sent(
    fake: TokenRecordingFake, tmp_path: Path
) -> None:
    others = random_profiles(598, seed=14, first_id=2001)
    seed(fake, others)
    fake.add_prospect(1001)
    fake.add_prospect(1002)
    versions = [
        make_profile(1001, "v1", {HIGH_VALUE: "realized"}),
        make_profile(1001, "v2", {HIGH_VALUE: "realized", TRIAL: "realized"}),
        make_profile(1001, "v3", {HIGH_VALUE: "exited", TRIAL: "realized"}),
    ]
    # 1002: its first update on line 1, its last on line 601, in another staging chunk.
    early = make_profile(1002, "early", {TRIAL: "realized"})
    late = make_profile(1002, "late", {TRIAL: "exited"})
    lines = [early, *versions, *others[:300], *others[300:], late]
    login(fake)
    path = write_jsonl(tmp_path / "profiles.jsonl", lines)

    result = push(fake, path)

    assert result.exit_code == 0, result.stderr
    assert stderr_lines(result.stderr)[-1] == (
        "requests: 600 sent, 600 delivered, 0 rejected, 0 failed, 0 pending; 0 retried"
    )
    counts = Counter(patched_ids(fake))
    assert counts == Counter({oid(p): 1 for p in others} | {1001: 1, 1002: 1})
    by_id = {int(r["path"].rsplit("/", 1)[1]): sent_attributes(r) for r in patches(fake)}
    assert by_id[1001] == {"firstName": "v3", "custom7": "exited", "custom12": "realized"}
    assert by_id[1002] == {"firstName": "late", "custom12": "exited"}
    assert fake.prospects == {oid(p): expected_attributes(p) for p in [*others, versions[-1], late]}


def test_an_update_reverted_within_one_input_sends_nothing(
    fake: TokenRecordingFake, tmp_path: Path
) -> None:
    fake.add_prospect(1001)
    login(fake)
    a = make_profile(1001, "A", {HIGH_VALUE: "realized"})
    b = make_profile(1001, "B", {HIGH_VALUE: "exited"})
    assert push(fake, write_jsonl(tmp_path / "first.jsonl", [a])).exit_code == 0
    before = len(fake.requests)

    result = push(fake, write_jsonl(tmp_path / "second.jsonl", [b, a]))

    assert result.exit_code == 0, result.stderr
    assert fake.prospects == {1001: expected_attributes(a)}  # the newest line: A
    assert patches(fake, before) == []  # and A is what Outreach already has


# --- 3. rejections: dead letters --------------------------------------------------------------


def failed(*args: str) -> Result:
    return invoke("failed", *args, "--connection", CONNECTION)


def test_rejected_profiles_are_dead_letters_that_can_be_shown_exported_and_retried(
    fake: TokenRecordingFake, tmp_path: Path
) -> None:
    known = random_profiles(12, seed=15)
    seed(fake, known)
    unknown = [make_profile(n, f"Ghost{n}", {HIGH_VALUE: "realized"}) for n in (5001, 5002, 5003)]
    fake.string_max = 50  # an account stricter than the spec's 255: Outreach answers 422
    too_long = make_profile(1100, "x" * 60, {TRIAL: "realized"})
    fake.add_prospect(1100)
    lines = [*known[:4], unknown[0], *known[4:8], too_long, unknown[1], *known[8:], unknown[2]]
    login(fake)
    path = write_jsonl(tmp_path / "profiles.jsonl", lines)

    result = push(fake, path, concurrency=1)  # one at a time: dead letters in input order

    assert result.exit_code == 3, result.stderr
    too_long_message = (
        "A value is too long for Outreach (/data/attributes/firstName)."
        " Shorten the source value or map another field."
    )
    stderr = stderr_lines(result.stderr)
    assert stderr[-2:] == summary(
        16, 16, 12, rejected={"prospect-not-found": 3, "value-too-long": 1}
    )
    lines_of = {
        5001: f"OutreachId=5001\tprospect-not-found\t404\t{NOT_FOUND.format(5001)}",
        1100: f"OutreachId=1100\tvalue-too-long\t422\t{too_long_message}",
        5002: f"OutreachId=5002\tprospect-not-found\t404\t{NOT_FOUND.format(5002)}",
        5003: f"OutreachId=5003\tprospect-not-found\t404\t{NOT_FOUND.format(5003)}",
    }
    listed = failed("list")
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.splitlines() == [lines_of[n] for n in (5001, 1100, 5002, 5003)]
    assert failed("list", "--rule", "prospect-not-found").stdout.splitlines() == [
        lines_of[n] for n in (5001, 5002, 5003)
    ]
    assert failed("list", "--rule", "value-too-long").stdout.splitlines() == [lines_of[1100]]
    assert failed("list", "--rule", "forbidden").stdout == ""

    shown = failed("show", "OutreachId=5002")
    assert shown.exit_code == 0, shown.stderr
    letter = json.loads(shown.stdout)
    assert letter["identity"] == "OutreachId=5002"
    assert letter["profile"] == "line 11"
    assert (letter["status"], letter["rule"], letter["attempts"]) == (404, "prospect-not-found", 1)
    assert letter["message"] == NOT_FOUND.format(5002)
    assert letter["request"] == {
        "method": "PATCH",
        "url": "https://api.outreach.io/api/v2/prospects/5002",
        "headers": {
            "Content-Type": "application/vnd.api+json",
            "Authorization": "Bearer [REDACTED]",
            "Accept": "application/vnd.api+json",
        },
        "body": {
            "data": {
                "type": "prospect",
                "id": 5002,
                "attributes": {"firstName": "Ghost5002", "custom7": "realized"},
            }
        },
    }
    assert json.loads(letter["response"])["errors"][0]["id"] == "resourceNotFound"
    missing = failed("show", "OutreachId=1001")
    assert missing.exit_code == 1
    assert missing.stderr == (
        "error: no dead letter for 'OutreachId=1001';"
        " `dest-engine failed list --connection acme-sales` shows them\n"
    )

    exported = failed("export")
    assert exported.exit_code == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["identity"] for r in rows] == [f"OutreachId={n}" for n in (5001, 1100, 5002, 5003)]
    assert rows[2] == letter
    assert {r["rule"] for r in rows} == {"prospect-not-found", "value-too-long"}
    assert [
        json.loads(line)["identity"]
        for line in failed("export", "--rule", "value-too-long").stdout.splitlines()
    ] == ["OutreachId=1100"]

    # The prospects now exist: retrying the not-found ones delivers them.
    for p in unknown:
        fake.add_prospect(oid(p))
    before = len(fake.requests)
    retried = failed("retry", "--rule", "prospect-not-found", *override(fake))

    assert retried.exit_code == 0, retried.stderr
    assert stderr_lines(retried.stderr) == [
        "retrying 3 rejected identities",
        "read 0 profiles; 0 skipped; 0 unchanged; 0 staged",
        "requests: 3 sent, 3 delivered, 0 rejected, 0 failed, 0 pending; 0 retried",
    ]
    assert sorted(patched_ids(fake, before)) == [5001, 5002, 5003]
    assert failed("list", "--rule", "prospect-not-found").stdout == ""
    assert failed("list").stdout.splitlines() == [lines_of[1100]]

    # Retrying the too-long one as it is fails the same way; fixing the profile clears it.
    again = failed("retry", *override(fake))
    assert again.exit_code == 3, again.stderr
    assert failed("list").stdout.splitlines() == [lines_of[1100]]
    fixed = make_profile(1100, "Short", {TRIAL: "realized"})
    lines[lines.index(too_long)] = fixed
    before = len(fake.requests)
    final = push(fake, write_jsonl(path, lines))
    assert final.exit_code == 0, final.stderr
    assert stderr_lines(final.stderr) == summary(16, 1, 1, unchanged=15)
    assert patched_ids(fake, before) == [1100]
    assert failed("list").stdout == ""
    assert fake.prospects == {oid(p): expected_attributes(p) for p in [*known, *unknown, fixed]}


def test_a_dead_letter_superseded_by_a_newer_unchanged_profile_is_gone(
    fake: TokenRecordingFake, tmp_path: Path
) -> None:
    fake.add_prospect(1001)
    login(fake)
    good = make_profile(1001, "Ada", {HIGH_VALUE: "realized"})
    fake.string_max = 50  # an account stricter than the spec's 255: Outreach answers 422
    bad = make_profile(1001, "x" * 60, {HIGH_VALUE: "realized"})
    path = tmp_path / "profiles.jsonl"
    assert push(fake, write_jsonl(path, [good])).exit_code == 0
    assert push(fake, write_jsonl(path, [bad])).exit_code == 3  # rejected: 422
    assert len(failed("list").stdout.splitlines()) == 1

    # The source fixes the value back: Outreach already has it, nothing to send...
    result = push(fake, write_jsonl(path, [good]))
    assert result.exit_code == 0, result.stderr
    assert stderr_lines(result.stderr) == summary(1, 0, 0, unchanged=1)

    # ... and the old rejection no longer describes this identity.
    assert failed("list").stdout == ""
    before = len(fake.requests)
    retried = failed("retry", *override(fake))
    assert retried.exit_code == 0, retried.stderr
    assert patches(fake, before) == []
    assert fake.prospects == {1001: expected_attributes(good)}


def test_failed_retry_does_not_overwrite_a_newer_staged_update(
    fake: TokenRecordingFake, tmp_path: Path
) -> None:
    login(fake)
    old = make_profile(5001, "Old", {HIGH_VALUE: "realized"})
    new = make_profile(5001, "New", {HIGH_VALUE: "exited"})
    other = make_profile(1001, "Ada", {TRIAL: "realized"})
    fake.add_prospect(1001)
    path = tmp_path / "profiles.jsonl"
    assert push(fake, write_jsonl(path, [old])).exit_code == 3  # 5001 does not exist yet
    fake.add_prospect(5001)
    # The source has a newer 5001; the budget allows one more request: it stays staged.
    fake.rate_limit = 2
    staged = push(fake, write_jsonl(path, [other, new]), "--no-wait", concurrency=1)
    assert staged.exit_code == 4, staged.stderr
    fake.rate_limit = 10_000
    assert fake.prospects == {1001: expected_attributes(other), 5001: {}}

    retried = failed("retry", *override(fake))

    assert retried.exit_code == 0, retried.stderr
    assert fake.prospects[5001] == expected_attributes(new)  # the newest data, not the old


# --- 4. status --------------------------------------------------------------------------------


def test_status_counts_delivered_staged_and_rejected(
    fake: TokenRecordingFake, tmp_path: Path, env: Path
) -> None:
    # 5 requests per hour: at concurrency 1 the first five go out (one of them to an
    # unknown prospect), then --no-wait stops with seven staged.
    fake.rate_limit = 5
    profiles = random_profiles(11, seed=16)
    seed(fake, profiles)
    ghost = make_profile(5001, "Ghost", {HIGH_VALUE: "realized"})
    lines = [*profiles[:2], ghost, *profiles[2:]]
    login(fake)
    path = write_jsonl(tmp_path / "profiles.jsonl", lines)

    result = push(fake, path, "--no-wait", concurrency=1)

    assert result.exit_code == 4, result.stderr
    assert patched_ids(fake) == [oid(p) for p in lines[:5]]
    status = invoke("status", "--connection", CONNECTION)
    assert status.exit_code == 0, status.stderr
    out = status.stdout.splitlines()
    reset = re.fullmatch(
        r"rate limit last seen: 0 requests left, resets at (\d\d:\d\d:\d\d) UTC", out[4]
    )
    assert reset is not None, out
    stop = f"the rate-limit budget is spent until {reset.group(1)} UTC (--no-wait)"
    assert out[:4] == [
        f"connection: {CONNECTION} (ledger {ledger_path(env)})",
        "delivered: 4 identities",
        "staged: 7 (7 waiting)",
        "rejected (dead letters): 1 (1 prospect-not-found)",
    ]
    assert len(out) == 6
    run = RUN_LINE.fullmatch(out[5])
    assert run is not None, out[5]
    assert run.groups()[:2] == ("1", "push")
    assert run.group(3) == "; ".join(
        [
            *summary(12, 12, 4, rejected={"prospect-not-found": 1}, pending=7),
            f"stopped: {stop}",
        ]
    )

    as_json = invoke("status", "--connection", CONNECTION, "--format", "json")
    assert as_json.exit_code == 0, as_json.stderr
    info = json.loads(as_json.stdout)
    assert set(info) == {"delivered", "pending", "deadLetters", "runs", "rateLimit"}
    assert (info["delivered"], info["pending"], info["deadLetters"]) == (
        4,
        {"waiting": 7},
        {"prospect-not-found": 1},
    )
    assert info["rateLimit"]["remaining"] == 0
    assert [(r["id"], r["command"]) for r in info["runs"]] == [(1, "push")]
    first = info["runs"][0]
    assert first["startedAt"] <= first["finishedAt"]
    assert first["summary"] == {
        "exit": 4,
        "summary": "\n".join(
            [
                *summary(12, 12, 4, rejected={"prospect-not-found": 1}, pending=7),
                f"stopped: {stop}",
            ]
        ),
    }

    # A new budget: the next push sends the seven staged ones and the ghost again.
    fake.rate_limit = 10_000
    done = push(fake, path, concurrency=1)
    assert done.exit_code == 3, done.stderr
    assert stderr_lines(done.stderr)[-2:] == summary(
        12, 8, 7, unchanged=4, rejected={"prospect-not-found": 1}
    )
    out = invoke("status", "--connection", CONNECTION).stdout.splitlines()
    assert out[1:4] == [
        "delivered: 11 identities",
        "staged: 0",
        "rejected (dead letters): 1 (1 prospect-not-found)",
    ]
    runs = [RUN_LINE.fullmatch(line) for line in out[5:]]
    assert all(runs), out
    assert [m.group(1) for m in runs if m] == ["2", "1"]


def test_status_without_a_ledger_says_so(env: Path) -> None:
    result = invoke("status", "--connection", CONNECTION)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no ledger for {CONNECTION!r} at {ledger_path(env)}:"
        " nothing was pushed with it yet\n"
    )


# --- 5. render --diff -------------------------------------------------------------------------


def test_render_diff_after_a_push_shows_what_changed_field_by_field(
    fake: TokenRecordingFake, tmp_path: Path, env: Path
) -> None:
    profiles = [
        make_profile(1001, "Ada", {HIGH_VALUE: "realized"}),
        make_profile(1002, "Grace", {HIGH_VALUE: "realized", TRIAL: "exited"}),
        make_profile(1003, "Alan", {TRIAL: "realized"}),
        make_profile(1004, "Edsger", {HIGH_VALUE: "realized"}),
    ]
    seed(fake, profiles)
    login(fake)
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)
    assert push(fake, path).exit_code == 0
    before = len(fake.requests)

    profiles[1]["person"]["name"]["firstName"] = "Grace B."
    profiles[2]["segmentMembership"]["ups"][TRIAL]["status"] = "exited"
    profiles[3]["segmentMembership"]["ups"][HIGH_VALUE]["lastQualificationTime"] = "2027-01-01"
    profiles.append(make_profile(1005, "Barbara", {TRIAL: "realized"}))
    write_jsonl(path, profiles)

    result = invoke(
        "render", "outreach", "--activation", str(ACTIVATION), "--profiles", str(path), "--diff"
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "unchanged OutreachId=1001 (line 1)",
        'changed OutreachId=1002 (line 2): firstName: "Grace" -> "Grace B."',
        f'changed OutreachId=1003 (line 3): audience {NAMES[TRIAL]!r}: "realized" -> "exited"',
        "unchanged OutreachId=1004 (line 4)",
        "new OutreachId=1005 (line 5)",
    ]
    assert stderr_lines(result.stderr) == [
        f"1 new, 2 changed, 2 unchanged (ledger {ledger_path(env)})",
        "forecast: 3 requests, under a minute at 10,000 per hour",
    ]
    assert patches(fake, before) == []  # a dry run


# --- 6. no secret in the ledger or any output -------------------------------------------------


def test_no_token_or_client_secret_in_the_ledger_or_outputs(
    fake: TokenRecordingFake, tmp_path: Path, env: Path
) -> None:
    profiles = random_profiles(30, seed=17)
    seed(fake, profiles)
    ghost = make_profile(5001, "Ghost", {HIGH_VALUE: "realized"})
    imported = login(fake)
    path = write_jsonl(tmp_path / "profiles.jsonl", [*profiles, ghost])
    report = tmp_path / "report.jsonl"
    outputs = [push(fake, path, "--report", str(report))]
    fake.expire_all_tokens()  # the next run refreshes: rotated tokens too
    profiles[0]["person"]["name"]["firstName"] = "Changed"
    write_jsonl(path, [*profiles, ghost])
    outputs.append(push(fake, path))
    assert fake.token_mints == 1
    outputs += [
        invoke("status", "--connection", CONNECTION),
        invoke("status", "--connection", CONNECTION, "--format", "json"),
        failed("list"),
        failed("show", "OutreachId=5001"),
        failed("export"),
        failed("retry", *override(fake)),
        invoke(
            "render", "outreach", "--activation", str(ACTIVATION), "--profiles", str(path), "--diff"
        ),
        invoke("render", "outreach", "--activation", str(ACTIVATION), "--profiles", str(path)),
    ]
    assert outputs[0].exit_code == 3, outputs[0].stderr
    assert "Bearer [REDACTED]" in outputs[5].stdout
    secrets = [*fake.minted, imported["access_token"], imported["refresh_token"], CLIENT_SECRET]
    assert len(set(secrets)) == 5  # the imported pair, the refreshed pair, the client secret
    texts = [r.stdout + r.stderr for r in outputs] + [report.read_text(encoding="utf-8")]
    ledger = ledger_path(env)
    files = [p for p in ledger.parent.iterdir() if p.name.startswith(ledger.name)]
    assert ledger in files
    blobs = [p.read_bytes() for p in files]
    for secret in secrets:
        assert not any(secret in text for text in texts), secret
        assert not any(secret.encode() in blob for blob in blobs), secret
    # The ledger's rows hold no secret either (nothing hidden by page encoding).
    with sqlite3.connect(ledger) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(repr(db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)
    db.close()
    assert "dead_letters" in tables
    assert "Bearer [REDACTED]" in dump
    for secret in secrets:
        assert secret not in dump


def test_an_update_staged_while_its_request_is_out_is_kept_and_sent_next(tmp_path: Path) -> None:
    """--follow: X is sent with A; B arrives before A's outcome; A's outcome must not drop B."""
    from engine.ledger import Ledger, Unit
    from engine.templating import Map

    def unit(name: str) -> Unit:
        profile = Map(
            identityMap=Map(OutreachId=[Map(id="7")]),
            attributes=Map(firstName=Map(value=name)),
            segmentMembership=Map(),
        )
        return Unit.of("OutreachId=7", "line 1", profile, keep_times=False)

    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.stage([unit("A")])
    ledger.mark_in_flight(["OutreachId=7"])
    ledger.stage([unit("B")])  # arrives while A is out
    ledger.delivered(["OutreachId=7"])  # A's outcome

    staged = [
        json.loads(p)["attributes"]["firstName"]["value"] for _, _, p in ledger.pending_units()
    ]
    assert staged == ["B"]
    assert ledger.delivered_projection("OutreachId=7") is None  # A is not taken for B

    ledger.mark_in_flight(["OutreachId=7"])
    ledger.delivered(["OutreachId=7"])
    assert list(ledger.pending_units()) == []
    delivered = ledger.delivered_projection("OutreachId=7")
    assert delivered is not None and delivered["attributes"]["firstName"]["value"] == "B"
    ledger.close()


# --- 6. a typo in --connection is not "no failures" -------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["list"], ["export"], ["show", "OutreachId=1001"], ["retry"]],
    ids=["list", "export", "show", "retry"],
)
def test_failed_without_a_ledger_says_so_and_creates_none(env: Path, args: list[str]) -> None:
    result = invoke("failed", *args, "--connection", "acme-salse")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no ledger for 'acme-salse' at {env / 'ledgers' / 'acme-salse.sqlite'}:"
        " nothing was pushed with it yet\n"
    )
    assert not (env / "ledgers").exists()


# --- 7. push: output files, unreadable profiles, render errors -------------------------------


@pytest.mark.parametrize("which", ["profiles", "activation", "ledger"])
def test_push_report_that_is_an_input_is_refused(
    fake: TokenRecordingFake, env: Path, tmp_path: Path, which: str
) -> None:
    login(fake)
    profiles = write_jsonl(tmp_path / "profiles.jsonl", random_profiles(3, seed=1))
    activation = tmp_path / "activation.json"
    activation.write_bytes(ACTIVATION.read_bytes())
    ledger = tmp_path / "ledger.sqlite"
    ledger.write_bytes(b"")
    report = {"profiles": profiles, "activation": activation, "ledger": ledger}[which]
    before = report.read_bytes()
    result = invoke(
        "push",
        "outreach",
        "--activation",
        str(activation),
        "--profiles",
        str(profiles),
        "--state",
        str(ledger),
        "--report",
        str(report),
        "--full",
        *override(fake),
    )
    assert result.exit_code == 2
    assert result.stderr == f"error: --report {report} is the {which} file; choose another file\n"
    assert report.read_bytes() == before
    assert patches(fake) == []


def test_push_report_in_a_missing_folder(
    fake: TokenRecordingFake, env: Path, tmp_path: Path
) -> None:
    login(fake)
    profiles = write_jsonl(tmp_path / "profiles.jsonl", random_profiles(3, seed=1))
    report = tmp_path / "nodir" / "report.jsonl"
    result = push(fake, profiles, "--report", str(report))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: cannot write {report}: the folder {tmp_path / 'nodir'} does not exist\n"
    )
    assert not ledger_path(env).exists()
    assert patches(fake) == []


def test_push_report_to_stdout(fake: TokenRecordingFake, tmp_path: Path) -> None:
    profiles = random_profiles(2, seed=3)
    seed(fake, profiles)
    login(fake)
    result = push(fake, write_jsonl(tmp_path / "profiles.jsonl", profiles), "--report", "-")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["outcome"] for line in result.stdout.splitlines()] == [
        "delivered",
        "delivered",
    ]
    assert not Path("-").exists()


def test_push_missing_profiles_file(fake: TokenRecordingFake, env: Path, tmp_path: Path) -> None:
    login(fake)
    result = push(fake, tmp_path / "nosuch.jsonl")
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'nosuch.jsonl'}: no such file\n"
    assert not ledger_path(env).exists()


@pytest.mark.parametrize("follow", [False, True], ids=["push", "follow"])
def test_push_profiles_unreadable_midway_end_the_run_with_exit_2(
    fake: TokenRecordingFake, monkeypatch: pytest.MonkeyPatch, follow: bool
) -> None:
    """Input that turns unreadable after a first profile: that one is staged (and with
    --follow sent), the run is recorded, and the command says why (exit 2)."""
    from engine.findings import UnreadableInput
    from engine.profiles import ProfileRecord

    first = make_profile(1001, "Ada", {HIGH_VALUE: "realized"})
    fake.add_prospect(1001)

    def profiles(_source: str) -> Iterator[ProfileRecord]:
        yield ProfileRecord("line 1", first)
        raise UnreadableInput("stdin: not UTF-8 text (byte 4); save it as UTF-8")

    monkeypatch.setattr("engine.cli_common.read_profiles", profiles)
    login(fake)
    result = push(fake, Path("-"), *(["--follow"] if follow else []))
    assert result.exit_code == 2
    delivered = 1 if follow else 0
    assert stderr_lines(result.stderr) == [
        *summary(1, 1, delivered, pending=0),
        "error: stdin: not UTF-8 text (byte 4); save it as UTF-8",
    ]
    assert patched_ids(fake) == [1001] * delivered
    status = invoke("status", "--connection", CONNECTION, "--format", "json")
    info = json.loads(status.stdout)
    assert (info["delivered"], sum(info["pending"].values())) == (delivered, 1 - delivered)
    assert info["runs"][0]["summary"]["exit"] == 2


def test_push_render_error_is_shown_recorded_and_exits_1(
    fake: TokenRecordingFake, tmp_path: Path
) -> None:
    spec = json.loads(Path("destinations/outreach.json").read_text(encoding="utf-8"))
    body = (
        '{"data": {"type": "prospect", "id": {{ input.profile.identityMap.OutreachId[0].id }},'
        ' "attributes": {"lastName": "{{ input.profile.attributes.lastName.value }}"}}}'
    )
    spec["destinationServer"]["httpTemplate"]["requestBody"] = {
        "templatingStrategy": "JINJA",
        "value": body,
    }
    spec.pop("$schema", None)
    spec_path = tmp_path / "outreach.json"
    spec_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    with_last = make_profile(1001, "Ada", {HIGH_VALUE: "realized"})
    with_last["person"]["name"]["lastName"] = "Lovelace"
    without_last = make_profile(1002, "Alan", {TRIAL: "realized"})
    fake.add_prospect(1001)
    fake.add_prospect(1002)
    login(fake)
    report = tmp_path / "report.jsonl"
    result = invoke(
        "push",
        str(spec_path),
        "--activation",
        str(ACTIVATION),
        "--profiles",
        str(write_jsonl(tmp_path / "profiles.jsonl", [with_last, without_last])),
        "--report",
        str(report),
        "--concurrency",
        "1",
        *override(fake),
    )
    assert result.exit_code == 1
    reason = (
        f"{spec_path} /destinationServer/httpTemplate/requestBody/value: 'lastName' is missing"
        f" in this profile (in `{body[:160]}`)"  # the template line, cut at 160 characters
    )
    assert stderr_lines(result.stderr) == [
        f"render-error OutreachId=1002: {reason}",
        "read 2 profiles; 1 skipped (1 render-error); 0 unchanged; 2 staged",
        "requests: 1 sent, 1 delivered, 0 rejected, 0 failed, 0 pending; 0 retried",
    ]
    assert patched_ids(fake) == [1001]
    lines = report.read_text(encoding="utf-8").splitlines()
    outcomes = sorted((r["identities"], r["outcome"], r["rule"]) for r in map(json.loads, lines))
    assert outcomes == [
        (["OutreachId=1001"], "delivered", None),
        (["OutreachId=1002"], "skipped", "render-error"),
    ]
    listed = invoke("failed", "list", "--connection", CONNECTION)
    assert listed.stdout == f"OutreachId=1002\trender-error\tNone\t{reason}\n"

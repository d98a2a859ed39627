"""`dest-engine push` killed mid-run: the next run finishes the work, nothing lost.

The fake Outreach server runs in the test process; `push` runs as a child
process (`python -m engine push ...`) so it can be killed for real: SIGKILL at
a random point (no chance to clean up), or SIGTERM (stop sending, finish what
is in flight, record it, exit 4). Each fake request is slowed a little so a run
lasts long enough to be interrupted in the middle.
"""

from __future__ import annotations

import json
import random
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from push_support import (
    CONNECTION,
    HIGH_VALUE,
    INTERRUPTED,
    MAPPING_IDS,
    FakeOutreach,
    login,
    push_args,
    stderr_lines,
)

from engine.cli import main

PROFILES = 300
CONCURRENCY = 4
DELAY = 0.04  # seconds the fake takes per API request
# Credentials and ledgers in tmp folders, for this process and the child processes.
pytestmark = pytest.mark.usefixtures("env")

WAIT = 30.0  # bound on every wait for the child process
KILLED_RUN = re.compile(
    r"^run 1 \(push, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\): did not finish \(interrupted or killed\)$"
)


def start_push(fake: FakeOutreach, profiles: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        push_args(fake, profiles, "--concurrency", str(CONCURRENCY)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_push(fake: FakeOutreach, profiles: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        push_args(fake, profiles, "--concurrency", str(CONCURRENCY)),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def patched_ids(fake: FakeOutreach, since: int = 0) -> list[int]:
    with fake.lock:
        return [
            int(r["path"].rsplit("/", 1)[1])
            for r in fake.requests[since:]
            if r["method"] == "PATCH"
        ]


def wait_for_patches(fake: FakeOutreach, count: int, proc: subprocess.Popen[str]) -> None:
    """Wait (bounded) until the fake has received `count` PATCHes; the child must still run."""
    deadline = time.monotonic() + WAIT
    while len(patched_ids(fake)) < count:
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"push ended early ({proc.returncode}) before {count} PATCHes:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f"no {count} PATCHes within {WAIT} s")
        time.sleep(0.002)


def wait_for_name(fake: FakeOutreach, first_name: str, prospect: int = 1001) -> None:
    """Wait (bounded) until the fake's prospect has this firstName."""
    deadline = time.monotonic() + WAIT
    while fake.prospects[prospect].get("firstName") != first_name:
        assert time.monotonic() < deadline, fake.prospects[prospect]
        time.sleep(0.01)


def random_profiles(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    profiles = []
    for n in range(count):
        statuses = {
            a: rng.choice(["realized", "exited"]) for a in MAPPING_IDS if rng.random() < 0.7
        }
        profiles.append(
            {
                "identityMap": {"Oid": [{"id": str(1001 + n)}]},
                "person": {"name": {"firstName": f"{rng.choice(['Ada', 'Zoë', 'Li'])} {n}"}},
                "segmentMembership": {
                    "ups": {
                        a: {"status": s, "lastQualificationTime": "2026-11-20T09:15:00Z"}
                        for a, s in (statuses or {HIGH_VALUE: "realized"}).items()
                    }
                },
            }
        )
    return profiles


def oid(profile: dict[str, Any]) -> int:
    return int(profile["identityMap"]["Oid"][0]["id"])


def expected_state(profiles: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The prospects after every profile's update (each seeded with a title first)."""
    state = {}
    for p in profiles:
        attributes: dict[str, Any] = {
            "title": "CTO",
            "firstName": p["person"]["name"]["firstName"],
        }
        for audience, membership in p["segmentMembership"]["ups"].items():
            attributes[f"custom{MAPPING_IDS[audience]}"] = membership["status"]
        state[oid(p)] = attributes
    return state


def setup(fake: FakeOutreach, tmp_path: Path, seed: int) -> tuple[list[dict[str, Any]], Path]:
    profiles = random_profiles(PROFILES, seed)
    for p in profiles:
        fake.add_prospect(oid(p), title="CTO")
    login(fake)
    path = tmp_path / "profiles.jsonl"
    path.write_text(
        "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in profiles), encoding="utf-8"
    )
    fake.delay_next(10 * PROFILES, DELAY)
    return profiles, path


def ledger_rows(data: Path) -> tuple[set[int], dict[int, str]]:
    """The ledger as the killed run left it: delivered identities, staged ones by state."""
    db = sqlite3.connect(data / "ledgers" / f"{CONNECTION}.sqlite")
    try:
        delivered = {int(i.split("=")[1]) for (i,) in db.execute("SELECT identity FROM delivered")}
        pending = {
            int(i.split("=")[1]): state
            for i, state in db.execute("SELECT identity, state FROM pending")
        }
    finally:
        db.close()
    return delivered, pending


def status_lines() -> list[str]:
    result = CliRunner().invoke(main, ["status", "--connection", CONNECTION])
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_sigkill_at_a_random_point_then_rerun_loses_nothing(
    fake: FakeOutreach, tmp_path: Path, env: Path, seed: int
) -> None:
    rng = random.Random(seed)
    profiles, path = setup(fake, tmp_path, seed)
    everyone = {oid(p) for p in profiles}
    kill_after = rng.randint(20, PROFILES - 60)

    proc = start_push(fake, path)
    wait_for_patches(fake, kill_after, proc)
    time.sleep(rng.uniform(0, DELAY / 2))  # somewhere inside the next requests
    proc.kill()
    proc.communicate(timeout=WAIT)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(DELAY * 2)  # the fake finishes the requests the dead client left behind
    first = patched_ids(fake)
    assert kill_after <= len(first) < PROFILES

    # Every profile is either delivered or still staged; nothing recorded unsent.
    delivered, pending = ledger_rows(env)
    assert delivered | set(pending) == everyone
    assert delivered & set(pending) == set()
    assert delivered <= set(first)
    status = status_lines()
    assert status[1:3] == [
        f"delivered: {len(delivered):,} identities",
        f"staged: {len(pending):,} ("
        + ", ".join(f"{n:,} {s}" for s, n in sorted(Counter(pending.values()).items()))
        + ")",
    ]
    assert KILLED_RUN.match(status[-1]), status

    before = len(fake.requests)
    rerun = run_push(fake, path)

    assert rerun.returncode == 0, rerun.stderr
    assert stderr_lines(rerun.stderr) == [
        f"read {PROFILES} profiles; 0 skipped; {len(delivered)} unchanged; {len(pending)} staged",
        f"requests: {len(pending)} sent, {len(pending)} delivered, 0 rejected, 0 failed,"
        " 0 pending; 0 retried",
    ]
    second = patched_ids(fake, before)
    assert sorted(second) == sorted(everyone - delivered)  # no profile lost, none sent twice here
    assert fake.prospects == expected_state(profiles)
    # Sent twice: only what the killed run had sent without its outcome recorded yet.
    sent_twice = [i for i, n in Counter(first + second).items() if n > 1]
    assert sorted(sent_twice) == sorted(set(first) - delivered)
    # At most --concurrency requests are in flight, but the engine records outcomes in its
    # main thread while the workers already send the next of up to 2 x concurrency queued
    # requests: about 1 kill in 60 here resends concurrency + 1. The exact bound of
    # `concurrency` is the strict xfail test_a_kill_resends_at_most_concurrency_requests.
    assert len(sent_twice) <= 2 * CONCURRENCY


def test_sigterm_stops_after_the_requests_in_flight_and_the_rerun_finishes(
    fake: FakeOutreach, tmp_path: Path, env: Path
) -> None:
    profiles, path = setup(fake, tmp_path, seed=5)
    everyone = {oid(p) for p in profiles}

    proc = start_push(fake, path)
    wait_for_patches(fake, PROFILES // 3, proc)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=WAIT)

    assert proc.returncode == 4, err
    first = patched_ids(fake)
    sent = len(first)
    lines = stderr_lines(err)
    assert lines == [
        f"stopping: {INTERRUPTED}",
        f"read {PROFILES} profiles; 0 skipped; 0 unchanged; {PROFILES} staged",
        f"requests: {sent} sent, {sent} delivered, 0 rejected, 0 failed,"
        f" {PROFILES - sent} pending; 0 retried",
        f"stopped: {INTERRUPTED}",
    ]
    # What was in flight finished and was recorded: the ledger knows every PATCH sent.
    delivered, pending = ledger_rows(env)
    assert delivered == set(first)
    assert pending == dict.fromkeys(everyone - delivered, "waiting")
    status = status_lines()
    assert status[1:4] == [
        f"delivered: {sent} identities",
        f"staged: {PROFILES - sent} ({PROFILES - sent} waiting)",
        "rejected (dead letters): 0",
    ]

    before = len(fake.requests)
    rerun = run_push(fake, path)

    assert rerun.returncode == 0, rerun.stderr
    assert stderr_lines(rerun.stderr) == [
        f"read {PROFILES} profiles; 0 skipped; {sent} unchanged; {PROFILES - sent} staged",
        f"requests: {PROFILES - sent} sent, {PROFILES - sent} delivered, 0 rejected, 0 failed,"
        " 0 pending; 0 retried",
    ]
    second = patched_ids(fake, before)
    assert sorted(second) == sorted(everyone - set(first))  # nothing lost, nothing twice
    assert fake.prospects == expected_state(profiles)


def test_rerun_after_a_kill_sends_the_newest_data_not_the_one_in_flight(
    fake: FakeOutreach, tmp_path: Path, env: Path
) -> None:
    """Killed while B was in flight; the source is updated to C: C is what Outreach ends with."""
    fake.add_prospect(1001)
    login(fake)
    path = tmp_path / "profiles.jsonl"

    def write(first_name: str) -> None:
        profile = {
            "identityMap": {"Oid": [{"id": "1001"}]},
            "person": {"name": {"firstName": first_name}},
            "segmentMembership": {"ups": {HIGH_VALUE: {"status": "realized"}}},
        }
        path.write_text(json.dumps(profile) + "\n", encoding="utf-8")

    write("A")
    assert run_push(fake, path).returncode == 0
    write("B")
    fake.delay_next(1, 0.5)
    proc = start_push(fake, path)
    wait_for_patches(fake, 2, proc)
    proc.kill()
    proc.communicate(timeout=WAIT)
    wait_for_name(fake, "B")  # Outreach applies B, whose outcome was never recorded
    write("C")

    rerun = run_push(fake, path)

    assert rerun.returncode == 0, rerun.stderr
    sent = [json.loads(r["body"])["data"]["attributes"]["firstName"] for r in fake.requests]
    assert sent[-1] == "C"
    assert fake.prospects[1001]["firstName"] == "C"


def test_rerun_after_a_kill_with_the_input_reverted_sends_the_newest(
    fake: FakeOutreach, tmp_path: Path, env: Path
) -> None:
    fake.add_prospect(1001)
    login(fake)
    path = tmp_path / "profiles.jsonl"

    def write(first_name: str) -> None:
        profile = {
            "identityMap": {"Oid": [{"id": "1001"}]},
            "person": {"name": {"firstName": first_name}},
            "segmentMembership": {"ups": {HIGH_VALUE: {"status": "realized"}}},
        }
        path.write_text(json.dumps(profile) + "\n", encoding="utf-8")

    write("A")
    assert run_push(fake, path).returncode == 0
    write("B")
    fake.delay_next(1, 0.5)
    proc = start_push(fake, path)
    wait_for_patches(fake, 2, proc)
    proc.kill()
    proc.communicate(timeout=WAIT)
    wait_for_name(fake, "B")  # Outreach applies B, whose outcome was never recorded
    write("A")  # the source changes back

    rerun = run_push(fake, path)

    assert rerun.returncode == 0, rerun.stderr
    assert fake.prospects[1001]["firstName"] == "A"  # the newest input, not the stale B


def test_a_kill_resends_at_most_concurrency_requests(
    fake: FakeOutreach, tmp_path: Path, env: Path
) -> None:
    # Concurrency 1. The ledger is held busy (a slow disk, another reader) while the first
    # request completes: its outcome cannot be written yet. Then the process is killed.
    profiles = random_profiles(5, seed=6)
    for p in profiles:
        fake.add_prospect(oid(p), title="CTO")
    login(fake)
    path = tmp_path / "profiles.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in profiles), encoding="utf-8")
    fake.delay_next(2, 0.3)
    args = push_args(fake, path, "--concurrency", str(CONCURRENCY))
    args[args.index("--concurrency") + 1] = "1"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_patches(fake, 1, proc)
    time.sleep(0.1)  # the first request is in flight, the process waits for its answer
    busy = sqlite3.connect(env / "ledgers" / f"{CONNECTION}.sqlite", isolation_level=None)
    busy.execute("BEGIN IMMEDIATE")
    try:
        time.sleep(0.5)  # the answer came, its outcome waits for the ledger
        proc.kill()
        proc.communicate(timeout=WAIT)
    finally:
        busy.execute("ROLLBACK")
        busy.close()
    first = patched_ids(fake)

    before = len(fake.requests)
    rerun = run_push(fake, path)

    assert rerun.returncode == 0, rerun.stderr
    second = patched_ids(fake, before)
    assert sorted(set(first) | set(second)) == sorted(oid(p) for p in profiles)
    assert fake.prospects == expected_state(profiles)
    sent_twice = [i for i, n in Counter(first + second).items() if n > 1]
    assert len(sent_twice) <= 1  # --concurrency 1: at most one request was in flight

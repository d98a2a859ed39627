"""`dest-engine push --profiles - --follow`: profiles streamed on stdin are sent as they come.

`push` runs as a child process with stdin a pipe; the test writes batches of
lines over time and watches the fake Outreach server (in this process) receive
them while the command is still running, then stops it with SIGTERM. Exit
codes follow `_exit_code` in engine/cli_delivery.py: 0 when nothing was left
pending, 4 when the interruption left staged profiles unsent.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import pytest
from push_support import (
    HIGH_VALUE,
    INTERRUPTED,
    MAPPING_IDS,
    TRIAL,
    FakeOutreach,
    login,
    push_args,
    stderr_lines,
)

# Credentials and ledgers in tmp folders, for this process and the child processes.
pytestmark = pytest.mark.usefixtures("env")

WAIT = 20.0  # bound on every wait for the child process
REQUESTS = re.compile(
    r"^requests: (\d+) sent, (\d+) delivered, 0 rejected, 0 failed, (\d+) pending; 0 retried$"
)


def follow(fake: FakeOutreach, concurrency: int = 4) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        push_args(fake, "-", "--follow", "--concurrency", str(concurrency)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def profile(prospect: int, first_name: str, statuses: dict[str, str]) -> dict[str, Any]:
    return {
        "identityMap": {"Oid": [{"id": str(prospect)}]},
        "person": {"name": {"firstName": first_name}},
        "segmentMembership": {"ups": {a: {"status": s} for a, s in statuses.items()}},
    }


def attributes(p: dict[str, Any]) -> dict[str, Any]:
    """What Outreach holds after the profile's update."""
    out: dict[str, Any] = {"firstName": p["person"]["name"]["firstName"]}
    for audience, membership in p["segmentMembership"]["ups"].items():
        out[f"custom{MAPPING_IDS[audience]}"] = membership["status"]
    return out


def oid(p: dict[str, Any]) -> int:
    return int(p["identityMap"]["Oid"][0]["id"])


def send_lines(stdin: IO[bytes] | None, profiles: list[dict[str, Any]]) -> None:
    assert stdin is not None
    stdin.write("".join(json.dumps(p) + "\n" for p in profiles).encode())
    stdin.flush()


def patches(fake: FakeOutreach, since: int = 0) -> list[tuple[int, dict[str, Any]]]:
    """(prospect id, attributes sent) of every PATCH the fake received from `since` on."""
    with fake.lock:
        return [
            (int(r["path"].rsplit("/", 1)[1]), json.loads(r["body"])["data"]["attributes"])
            for r in fake.requests[since:]
            if r["method"] == "PATCH"
        ]


def wait_for(fake: FakeOutreach, count: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait (bounded) for `count` PATCHes while the command keeps running."""
    deadline = time.monotonic() + WAIT
    while len(patches(fake)) < count:
        assert proc.poll() is None, proc.communicate()[1].decode()
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{len(patches(fake))} of {count} PATCHes after {WAIT} s")
        time.sleep(0.005)
    assert proc.poll() is None  # still following


def stop(proc: subprocess.Popen[bytes]) -> list[str]:
    """SIGTERM; the stderr lines of the ended command."""
    proc.send_signal(signal.SIGTERM)
    try:
        _out, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"push --follow did not end within {WAIT} s of SIGTERM")
    return stderr_lines(err.decode())


def write_jsonl(path: Path, profiles: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in profiles), encoding="utf-8")
    return path


def test_follow_sends_as_lines_arrive_coalesces_and_stops_on_sigterm(
    fake: FakeOutreach, tmp_path: Path
) -> None:
    full = [profile(1001 + n, f"P{n}", {HIGH_VALUE: "realized"}) for n in range(60)]
    for p in full:
        fake.add_prospect(oid(p))
    login(fake)
    proc = follow(fake)

    # Batch 1, in two writes: sent while the command keeps running.
    send_lines(proc.stdin, full[:10])
    time.sleep(0.05)
    send_lines(proc.stdin, full[10:20])
    wait_for(fake, 20, proc)
    assert sorted(i for i, _ in patches(fake)) == [oid(p) for p in full[:20]]

    # Batch 2: its first request is slow; while the command waits for it, 1041 is
    # updated five times and 1005 (already sent) three times: each is sent once, newest.
    fake.delay_next(1, 0.6)
    send_lines(proc.stdin, full[20:30])
    wait_for(fake, 21, proc)
    x = [profile(1041, f"X{v}", {TRIAL: ("realized", "exited")[v % 2]}) for v in range(5)]
    y = [profile(1005, f"Y{v}", {HIGH_VALUE: "exited", TRIAL: "realized"}) for v in range(3)]
    send_lines(proc.stdin, [x[0], y[0], x[1], x[2], y[1], x[3], y[2], x[4]])
    wait_for(fake, 32, proc)
    time.sleep(0.3)  # nothing more is coming
    sent = patches(fake)
    assert len(sent) == 32
    counts = Counter(i for i, _ in sent)
    assert counts == Counter({oid(p): 1 for p in full[:30]} | {1041: 1, 1005: 2})
    assert [a for i, a in sent if i == 1041] == [attributes(x[-1])]
    assert [a for i, a in sent if i == 1005] == [attributes(full[4]), attributes(y[-1])]

    lines = stop(proc)

    assert proc.returncode == 0, lines  # nothing was pending when it stopped
    assert lines[0] == f"stopping: {INTERRUPTED}"
    assert lines[1].startswith("read 38 profiles; 0 skipped; 0 unchanged; ")
    assert lines[2:] == [
        "requests: 32 sent, 32 delivered, 0 rejected, 0 failed, 0 pending; 0 retried",
        f"stopped: {INTERRUPTED}",
    ]
    newest = {oid(p): p for p in [*full, *x, *y]}
    assert fake.prospects == {
        i: attributes(newest[i]) if i <= 1030 or i == 1041 else {} for i in newest
    }

    # Nothing lost: a normal push of the full, newest set sends only what was not delivered.
    before = len(fake.requests)
    path = write_jsonl(tmp_path / "all.jsonl", list(newest.values()))
    rerun = subprocess.run(push_args(fake, str(path)), capture_output=True, text=True, timeout=WAIT)

    assert rerun.returncode == 0, rerun.stderr
    assert stderr_lines(rerun.stderr) == [
        "read 60 profiles; 0 skipped; 31 unchanged; 29 staged",
        "requests: 29 sent, 29 delivered, 0 rejected, 0 failed, 0 pending; 0 retried",
    ]
    assert sorted(i for i, _ in patches(fake, before)) == [
        i for i in sorted(newest) if i > 1030 and i != 1041
    ]
    assert fake.prospects == {i: attributes(p) for i, p in newest.items()}


def test_sigterm_while_sending_keeps_the_rest_staged_for_the_next_push(
    fake: FakeOutreach, tmp_path: Path
) -> None:
    full = [profile(1001 + n, f"P{n}", {TRIAL: "realized"}) for n in range(40)]
    for p in full:
        fake.add_prospect(oid(p))
    login(fake)
    fake.delay_next(100, 0.1)  # slow: the stop comes while requests are waiting to be sent
    proc = follow(fake, concurrency=2)
    send_lines(proc.stdin, full[:30])
    wait_for(fake, 5, proc)

    lines = stop(proc)

    delivered = sorted(i for i, _ in patches(fake))
    assert lines[0] == f"stopping: {INTERRUPTED}"
    assert lines[-1] == f"stopped: {INTERRUPTED}"
    counts = REQUESTS.match(lines[-2])
    assert counts is not None, lines
    sent, ok, pending = map(int, counts.groups())
    assert sent == ok == len(delivered)  # the requests in flight finished and were recorded
    assert sent + pending <= 30
    assert proc.returncode == (4 if pending else 0), lines

    # A normal push of the full set sends exactly what the follower did not deliver.
    before = len(fake.requests)
    path = write_jsonl(tmp_path / "all.jsonl", full)
    rerun = subprocess.run(push_args(fake, str(path)), capture_output=True, text=True, timeout=WAIT)

    assert rerun.returncode == 0, rerun.stderr
    assert stderr_lines(rerun.stderr)[0] == (
        f"read 40 profiles; 0 skipped; {sent} unchanged; {40 - sent} staged"
    )
    assert sorted(i for i, _ in patches(fake, before)) == sorted(
        set(map(oid, full)) - set(delivered)
    )
    assert fake.prospects == {oid(p): attributes(p) for p in full}


def test_follow_ends_by_itself_when_the_input_ends(fake: FakeOutreach) -> None:
    full = [profile(1001 + n, f"P{n}", {HIGH_VALUE: "exited"}) for n in range(10)]
    for p in full:
        fake.add_prospect(oid(p))
    login(fake)
    proc = follow(fake)
    send_lines(proc.stdin, full[:5])
    wait_for(fake, 5, proc)

    # The last lines, then the end of the input.
    rest = "".join(json.dumps(p) + "\n" for p in full[5:]).encode()
    _out, err = proc.communicate(input=rest, timeout=WAIT)

    assert proc.returncode == 0, err
    assert stderr_lines(err.decode()) == [
        "read 10 profiles; 0 skipped; 0 unchanged; 10 staged",
        "requests: 10 sent, 10 delivered, 0 rejected, 0 failed, 0 pending; 0 retried",
    ]
    assert fake.prospects == {oid(p): attributes(p) for p in full}

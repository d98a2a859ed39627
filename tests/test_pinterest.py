"""The Pinterest customer-list destination: rendered requests, and `dest-engine push` end to end.

The push tests run the real command through click's CliRunner against the fake
Pinterest server (tests/fake_pinterest.py, real HTTP on 127.0.0.1), logged in
with `dest-engine auth import`. The lists' expected members are computed here,
with hashlib and the test's own small code, never with the engine's.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engine.cli import main

try:
    from tests.fake_pinterest import FakePinterest
except ImportError:  # tests/ itself on sys.path
    from fake_pinterest import FakePinterest  # type: ignore[import-not-found,no-redef]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "pinterest"
ACTIVATION = EXAMPLES / "activation.json"
REPEAT = "5a8d2c1e-7b3f-4e6a-9c0d-1f2e3a4b5c6d"  # "Repeat buyers", customer list 643
LAPSED = "9e8f7a6b-5c4d-4b3a-8e2f-1a0b9c8d7e6f"  # "Lapsed customers", customer list 1024
LISTS = {REPEAT: "643", LAPSED: "1024"}
AD_ACCOUNT = "549756359984"
CONNECTION = "pinterest-ads"
TOKEN = "pina_test-token-Zq81xK"
HOST = "https://api.pinterest.com"
FAST_RETRIES = {
    "maxAttempts": 4,
    "initialBackoffSeconds": 0.01,
    "backoffMultiplier": 2,
    "maxBackoffSeconds": 0.05,
    "jitter": False,
}


def h(email: str) -> str:
    """What Pinterest should receive for an email: SHA-256 of the trimmed, lower-cased address."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


# --- fixtures and running the command ---------------------------------------------------


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DEST_ENGINE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DEST_ENGINE_DATA_DIR", str(tmp_path / "data"))
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def make_fake() -> Iterator[Callable[..., FakePinterest]]:
    started: list[FakePinterest] = []

    def make(**kwargs: Any) -> FakePinterest:
        kwargs.setdefault("token", TOKEN)
        kwargs.setdefault("ad_account_id", AD_ACCOUNT)
        kwargs.setdefault("lists", {"643": set(), "1024": set()})
        fake = FakePinterest(**kwargs).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()
        assert fake.errors == []  # no bug inside the fake itself


def invoke(*args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), input=stdin, prog_name="dest-engine")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def login(token: str = TOKEN) -> None:
    stdin = json.dumps({"access_token": token})
    result = invoke("auth", "import", "pinterest", "--connection", CONNECTION, stdin=stdin)
    assert result.exit_code == 0, result.stderr


def push(
    fake: FakePinterest,
    profiles: Path,
    report: Path,
    *extra: str,
    spec: str = "pinterest",
    activation: Path = ACTIVATION,
    concurrency: int = 4,
) -> Result:
    return invoke(
        "push",
        spec,
        "--activation",
        str(activation),
        "--profiles",
        str(profiles),
        "--report",
        str(report),
        "--concurrency",
        str(concurrency),
        "--endpoint-override",
        f"{HOST}={fake.url}",
        *extra,
    )


def read_report(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def summary_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(("read ", "requests: "))]


def spec_copy(
    folder: Path, batch: int | None = None, rate_period: int | None = None, **retry_policy: Any
) -> str:
    """A copy of the Pinterest spec and its templates: another batch size, rate period, retries."""
    spec = json.loads((ROOT / "destinations" / "pinterest.json").read_text(encoding="utf-8"))
    spec.pop("$schema", None)
    spec["retryPolicy"] = {**spec["retryPolicy"], **retry_policy}
    if batch is not None:
        spec["aggregation"]["configurableAggregation"]["maxNumEventsInBatch"] = batch
    if rate_period is not None:
        spec["rateLimit"]["periodSeconds"] = rate_period
    (folder / "destinations").mkdir(parents=True)
    shutil.copytree(ROOT / "templates" / "pinterest", folder / "templates" / "pinterest")
    path = folder / "destinations" / "pinterest.json"
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return str(path)


# --- profiles and the state they should produce ---------------------------------------


def make_profile(
    emails: list[str] | None = None,
    hashed: list[str] | None = None,
    statuses: dict[str, str] | None = None,
) -> dict[str, Any]:
    identity_map: dict[str, Any] = {}
    if emails:
        identity_map["Email"] = [{"id": e} for e in emails]
    if hashed:
        identity_map["Email_LC_SHA256"] = [{"id": x} for x in hashed]
    return {
        "identityMap": identity_map,
        "segmentMembership": {
            "ups": {
                audience: {"status": status, "lastQualificationTime": "2026-11-20T09:15:00Z"}
                for audience, status in (statuses or {}).items()
            }
        },
    }


def random_profiles(count: int, seed: int) -> list[dict[str, Any]]:
    """Distinct people: messy-cased emails, some pre-hashed, some with two addresses."""
    rng = random.Random(seed)
    profiles = []
    for n in range(count):
        statuses = {a: rng.choice(["realized", "exited"]) for a in LISTS if rng.random() < 0.7}
        statuses = statuses or {REPEAT: "realized"}
        local = rng.choice(["ada", "Grace.Hopper", "o'brien", "zoë", "李"]) + str(n)
        domain = rng.choice(["example.com", "Example.ORG", "mail.example.net"])
        email = rng.choice(["", " ", "\t"]) + f"{local}@{domain}" + rng.choice(["", " "])
        kind = rng.random()
        if kind < 0.15:
            profiles.append(make_profile(hashed=[h(email).upper()], statuses=statuses))
        elif kind < 0.25:
            profiles.append(make_profile([email, f"second{n}@example.com"], statuses=statuses))
        elif kind < 0.35:
            profiles.append(make_profile([email], [h(f"other{n}@example.com")], statuses))
        else:
            profiles.append(make_profile([email], statuses=statuses))
    return profiles


def hashes_of(profile: dict[str, Any]) -> set[str]:
    ids = profile["identityMap"]
    return {h(e["id"]) for e in ids.get("Email", [])} | {
        x["id"].lower() for x in ids.get("Email_LC_SHA256", [])
    }


def expected_lists(
    profiles: list[dict[str, Any]], initial: dict[str, set[str]]
) -> dict[str, set[str]]:
    """Realized adds the profile's hashes to the audience's list, exited removes them."""
    lists = {k: set(v) for k, v in initial.items()}
    for p in profiles:
        for audience, membership in p["segmentMembership"]["ups"].items():
            if audience not in LISTS:
                continue
            members = lists[LISTS[audience]]
            if membership["status"] == "realized":
                members |= hashes_of(p)
            else:
                members -= hashes_of(p)
    return lists


def write_jsonl(path: Path, profiles: list[dict[str, Any]]) -> Path:
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in profiles)
    path.write_text(text, encoding="utf-8")
    return path


def expected_requests(profiles: list[dict[str, Any]], batch: int) -> Counter[tuple[str, str]]:
    """How many requests each (list, operation) needs with `batch` profiles per request."""
    counts: Counter[tuple[str, str]] = Counter()
    for p in profiles:
        for audience, membership in p["segmentMembership"]["ups"].items():
            if audience in LISTS:
                op = "ADD" if membership["status"] == "realized" else "REMOVE"
                counts[(LISTS[audience], op)] += 1
    return Counter({key: math.ceil(n / batch) for key, n in counts.items()})


# --- rendering ----------------------------------------------------------------------------


def rendered(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_render_bundled_example_snapshot(snapshot: Any) -> None:
    result = invoke("render", "pinterest")
    view = {"requests": rendered(result), "stderr": result.stderr.splitlines()}
    assert view == snapshot


def test_render_bundled_example_hashes_are_right() -> None:
    """The bundled example, checked against hashes computed here (not with the engine)."""
    requests = rendered(invoke("render", "pinterest"))
    pre_hashed = "8A2F1B6C0D9E3A7F5B4C2D1E0F9A8B7C6D5E4F3A2B1C0D9E8F7A6B5C4D3E2F1A".lower()
    base = f"https://api.pinterest.com/v5/ad_accounts/{AD_ACCOUNT}/customer_lists/"
    assert [(r["method"], r["url"], r["body"], r["profiles"]) for r in requests] == [
        (
            "PATCH",
            base + "643",
            {
                "operation_type": "ADD",
                "records": f"{h('ada@example.com')},{h('grace.hopper@example.com')}",
            },
            ["line 1", "line 2"],
        ),
        (
            "PATCH",
            base + "1024",
            {
                "operation_type": "REMOVE",
                "records": f"{h('grace.hopper@example.com')},{pre_hashed}",
            },
            ["line 2", "line 3"],
        ),
        (
            "PATCH",
            base + "1024",
            {
                "operation_type": "ADD",
                "records": f"{h('alan@example.com')},{h('a.turing@example.org')}",
            },
            ["line 4"],
        ),
    ]
    assert h("  Grace.Hopper@Example.COM ") == h("grace.hopper@example.com")
    assert {r["headers"]["Authorization"] for r in requests} == {"Bearer [REDACTED]"}


def test_render_sample_profiles_snapshot(snapshot: Any) -> None:
    result = invoke("render", "pinterest", "--sample", "4", "--seed", "7", "--format", "pretty")
    assert result.exit_code == 0, result.stderr
    assert {"stdout": result.stdout.splitlines(), "stderr": result.stderr.splitlines()} == snapshot


# --- a full push ----------------------------------------------------------------------------


def test_full_push_reaches_the_expected_lists(
    make_fake: Callable[..., FakePinterest], tmp_path: Path
) -> None:
    profiles = random_profiles(2_000, seed=1)
    # Members that were there before: some of them exit now, the rest stay.
    leaving = [
        p
        for p in profiles
        if p["segmentMembership"]["ups"].get(LAPSED, {}).get("status") == "exited"
    ]
    initial = {
        "643": {h(f"old{n}@example.com") for n in range(5)},
        "1024": {x for p in leaving[:50] for x in hashes_of(p)} | {h("stays@example.com")},
    }
    unsendable = [
        make_profile(["../../customer_lists/1?x="], statuses={REPEAT: "realized"}),  # not an email
        make_profile(["eve,mallory@example.com"], statuses={REPEAT: "realized"}),  # a comma
        make_profile(["nobody@example.com"], statuses={"some-other-audience": "realized"}),
    ]
    fake = make_fake(lists=initial)
    login()
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles[:1000] + unsendable + profiles[1000:])

    result = push(fake, path, tmp_path / "report.jsonl")

    assert result.exit_code == 0, result.stderr
    assert fake.lists == expected_lists(profiles, initial)
    assert fake.lists["1024"] >= {h("stays@example.com")}
    # One request per (list, operation): 2,000 profiles fit in a batch of 10,000.
    sent = Counter((e["list"], e["operation"]) for e in fake.log)
    assert sent == expected_requests(profiles, 10_000)
    assert fake.statuses() == Counter({200: len(sent)})
    assert summary_lines(result)[1] == (
        f"requests: {len(sent)} sent, {len(sent)} delivered, 0 rejected, 0 failed, 0 pending; 0 retried"
    )
    report = read_report(tmp_path / "report.jsonl")
    skipped = sorted((r["profiles"], r["rule"]) for r in report if r["outcome"] == "skipped")
    assert skipped == [
        (["line 1001"], "missing-identity"),
        (["line 1002"], "missing-identity"),
        (["line 1003"], "no-audience"),
    ]
    assert {r["outcome"] for r in report} == {"delivered", "skipped"}
    # Every sendable profile is in some delivered request.
    delivered = {ref for r in report if r["outcome"] == "delivered" for ref in r["profiles"]}
    assert len(delivered) == 2_000


def test_batches_are_split_at_the_batch_size(
    make_fake: Callable[..., FakePinterest], tmp_path: Path
) -> None:
    profiles = random_profiles(700, seed=2)
    fake = make_fake(max_records=120)  # a profile has up to two records
    login()
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)

    result = push(fake, path, tmp_path / "report.jsonl", spec=spec_copy(tmp_path / "s", batch=60))

    assert result.exit_code == 0, result.stderr
    assert fake.lists == expected_lists(profiles, {"643": set(), "1024": set()})
    sizes = Counter((e["list"], e["operation"]) for e in fake.log)
    assert sizes == expected_requests(profiles, 60)
    assert fake.statuses() == Counter({200: sum(sizes.values())})


# --- rate limit -----------------------------------------------------------------------------


def test_limiter_follows_the_rate_limit_headers(
    make_fake: Callable[..., FakePinterest], tmp_path: Path
) -> None:
    # 10 requests per 1-second window; 40 batches of 10 profiles: the run waits for resets.
    profiles = [
        make_profile([f"p{n}@example.com"], statuses={REPEAT: "realized"}) for n in range(400)
    ]
    fake = make_fake(rate_limit=10, rate_window=1)
    login()
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)

    result = push(fake, path, tmp_path / "report.jsonl", spec=spec_copy(tmp_path / "s", batch=10))

    assert result.exit_code == 0, result.stderr
    assert fake.lists["643"] == {h(f"p{n}@example.com") for n in range(400)}
    statuses = fake.statuses()
    assert statuses[200] == 40
    assert statuses[429] <= 4  # at most a first wave of the 4 workers, then the headers rule
    assert any(
        line.startswith("rate limit: budget spent; resuming at ")
        for line in result.stderr.splitlines()
    )


def test_429_waits_for_the_reset_the_headers_name(
    make_fake: Callable[..., FakePinterest], tmp_path: Path
) -> None:
    profiles = [
        make_profile([f"q{n}@example.com"], statuses={LAPSED: "realized"}) for n in range(30)
    ]
    fake = make_fake(rate_window=3)
    login()
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)
    spec = spec_copy(tmp_path / "s", batch=10)
    # Spend the budget right after a window starts, so the push surely meets it spent.
    time.sleep(3 - time.time() % 3 + 0.05)
    fake.exhaust_rate_limit()

    result = push(fake, path, tmp_path / "report.jsonl", spec=spec)

    assert result.exit_code == 0, result.stderr
    assert fake.lists["1024"] == {h(f"q{n}@example.com") for n in range(30)}
    limited = [e for e in fake.log if e["status"] == 429]
    delivered = [e for e in fake.log if e["status"] == 200]
    assert 1 <= len(limited) <= 3
    assert json.loads(limited[0]["body"]) == {
        "code": 29,
        "message": "You have exceeded your rate limit. Try again later.",
    }
    assert "Retry-After" not in limited[0]["headers"]  # the time comes from X-RateLimit-Reset
    reset = limited[0]["time"] + int(limited[0]["headers"]["X-RateLimit-Reset"])
    window_end = (limited[0]["time"] // 3 + 1) * 3
    assert reset >= window_end
    assert min(e["time"] for e in delivered) >= window_end
    report = read_report(tmp_path / "report.jsonl")
    assert Counter(r["outcome"] for r in report) == Counter({"delivered": 3})
    assert sum(r["attempts"] for r in report) == 3 + len(limited)


# --- server errors --------------------------------------------------------------------------


def test_5xx_and_maintenance_are_retried_until_delivered(
    make_fake: Callable[..., FakePinterest], tmp_path: Path
) -> None:
    profiles = [
        make_profile([f"r{n}@example.com"], statuses={REPEAT: "realized"}) for n in range(50)
    ]
    fake = make_fake()
    fake.fail_next(2, 502)
    fake.fail_next(1, 500)
    fake.fail_next(1, 503, retry_after=1)
    login()
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)
    # A 1-second rate period: the engine stretches a header-less Retry-After to the end of
    # its own rate window (see test_retry_after_shorter_than_the_rate_window_is_honoured).
    spec = spec_copy(tmp_path / "s", batch=25, rate_period=1, **FAST_RETRIES)

    result = push(fake, path, tmp_path / "report.jsonl", spec=spec, concurrency=1)

    assert result.exit_code == 0, result.stderr
    assert fake.lists["643"] == {h(f"r{n}@example.com") for n in range(50)}
    # The first batch: three failures (retried), the 503 (a wait, not a retry), then delivered.
    assert [e["status"] for e in fake.log] == [502, 502, 500, 503, 200, 200]
    assert fake.log[4]["time"] - fake.log[3]["time"] >= 1.0  # waited as long as Retry-After said
    report = read_report(tmp_path / "report.jsonl")
    assert sorted(r["attempts"] for r in report) == [1, 5]
    assert summary_lines(result)[1] == (
        "requests: 2 sent, 2 delivered, 0 rejected, 0 failed, 0 pending; 3 retried"
    )


def test_5xx_storm_longer_than_max_attempts_fails_the_batch(
    make_fake: Callable[..., FakePinterest], tmp_path: Path
) -> None:
    profiles = [
        make_profile([f"s{n}@example.com"], statuses={REPEAT: "realized"}) for n in range(4)
    ]
    fake = make_fake()
    fake.fail_next(4, 502)
    login()
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)

    result = push(
        fake, path, tmp_path / "report.jsonl", spec=spec_copy(tmp_path / "s", **FAST_RETRIES)
    )

    assert result.exit_code == 1, result.stderr
    message = "Pinterest had a temporary failure (HTTP 502); dest-engine retries. (gave up after 4 attempts)"
    report = read_report(tmp_path / "report.jsonl")
    assert [
        (r["outcome"], r["rule"], r["status"], r["attempts"], r["message"]) for r in report
    ] == [("failed", "server-error", 502, 4, message)]
    assert fake.lists["643"] == set()


# --- rejected batches and configuration errors ----------------------------------------------


def test_unknown_list_is_rejected_with_the_translated_message(
    make_fake: Callable[..., FakePinterest], tmp_path: Path
) -> None:
    activation = json.loads(ACTIVATION.read_text(encoding="utf-8"))
    activation["audiences"][1]["mappingId"] = (
        "999"  # "Lapsed customers" -> a list that does not exist
    )
    activation_path = tmp_path / "activation.json"
    activation_path.write_text(json.dumps(activation), encoding="utf-8")
    profiles = [
        make_profile(["in@example.com"], statuses={REPEAT: "realized", LAPSED: "realized"}),
        make_profile(["out@example.com"], statuses={LAPSED: "exited"}),
    ]
    fake = make_fake()
    login()
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)

    result = push(fake, path, tmp_path / "report.jsonl", activation=activation_path)

    assert result.exit_code == 3, result.stderr
    assert fake.lists == {"643": {h("in@example.com")}, "1024": set()}
    message = (
        "Pinterest has no customer list 999 (audience 'Lapsed customers') in this ad account"
        " (HTTP 404: Customer list not found.). Check the audience's Customer list id"
        " (Mapping ID) and customerData.adAccountId."
    )
    report = read_report(tmp_path / "report.jsonl")
    rejected = sorted(
        (r["profiles"], r["rule"], r["status"], r["message"])
        for r in report
        if r["outcome"] == "rejected"
    )
    assert rejected == [
        (["line 1"], "list-not-found", 404, message),
        (["line 2"], "list-not-found", 404, message),
    ]
    assert f"rejected Email=out@example.com: {message}" in result.stderr.splitlines()
    assert summary_lines(result)[1] == (
        "requests: 3 sent, 1 delivered, 2 rejected (2 list-not-found), 0 failed, 0 pending; 0 retried"
    )


def test_a_batch_over_pinterest_limit_is_rejected_with_its_message(
    make_fake: Callable[..., FakePinterest], tmp_path: Path
) -> None:
    profiles = [
        make_profile([f"t{n}@example.com"], statuses={REPEAT: "realized"}) for n in range(8)
    ]
    fake = make_fake(max_records=5)
    login()
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)

    result = push(fake, path, tmp_path / "report.jsonl", spec=spec_copy(tmp_path / "s", batch=6))

    assert result.exit_code == 3, result.stderr
    report = read_report(tmp_path / "report.jsonl")
    outcomes = sorted((r["outcome"], len(r["profiles"]), r["message"]) for r in report)
    assert outcomes == [
        ("delivered", 2, ""),
        (
            "rejected",
            6,
            "Pinterest refused the records for customer list 643 (audience 'Repeat buyers')"
            " (HTTP 400: Too many records: at most 5 per request.).",
        ),
    ]
    assert fake.lists["643"] == {h("t6@example.com"), h("t7@example.com")}


def test_a_refused_token_stops_the_run(
    make_fake: Callable[..., FakePinterest], tmp_path: Path
) -> None:
    profiles = [
        make_profile([f"u{n}@example.com"], statuses={REPEAT: "realized"}) for n in range(3)
    ]
    fake = make_fake()
    login("an-expired-token")
    path = write_jsonl(tmp_path / "profiles.jsonl", profiles)

    result = push(fake, path, tmp_path / "report.jsonl")

    assert result.exit_code == 1, result.stderr
    assert fake.statuses() == Counter({401: 1})
    message = (
        "Pinterest did not accept the access token (HTTP 401: Authentication failed.)."
        " Create a new access token with the ads:write scope and import it:"
        ' `dest-engine auth import pinterest --connection NAME` with {"access_token": "..."} on stdin.'
    )
    assert result.stderr.splitlines()[0] == f"stopping: {message}"
    assert result.stderr.splitlines()[-1] == f"stopped: {message}"
    assert "an-expired-token" not in result.stderr
    report = read_report(tmp_path / "report.jsonl")
    assert [(r["outcome"], r["rule"], r["status"], r["message"]) for r in report] == [
        ("failed", "token-invalid", 401, message)
    ]
    assert fake.lists["643"] == set()


# --- engine gaps found with this destination ------------------------------------------------


def test_retry_after_shorter_than_the_rate_window_is_honoured() -> None:
    from engine.ratelimit import RateLimiter

    spec = json.loads((ROOT / "destinations" / "pinterest.json").read_text(encoding="utf-8"))
    now = [1_000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(spec["rateLimit"], clock=lambda: now[0], sleep=sleep)
    limiter.acquire()  # the first request: the limiter starts its own 60-second window
    limiter.observe({"Retry-After": "1"})  # a 503 without rate-limit headers
    limiter.block_until(now[0] + 1)  # the maintenance rule: come back in 1 second
    limiter.acquire()
    assert sum(slept) < 5  # waits about 1 s, not until the end of the 60-second window

"""Aggregation on a destination that is not Outreach: a list-membership API.

tests/data/destinations/example-audiences.json is a CONFIGURABLE_AGGREGATION spec:
POST https://api.example-audiences.test/v1/lists/<List alias>/members, batches of at most
3 events keyed by audience and status, identity namespace `Email`.
example-audiences-bulk.json is its BEST_EFFORT twin (2 profiles per request, input.profiles).

The command-level tests run `dest-engine` from the checkout's top folder; the
Aggregator-level tests build the Aggregator directly from variants of the spec data,
with target profiles written out by hand.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engine.activation import Activation, Audience, FieldMapping, load_activation
from engine.aggregation import Aggregator, Batch
from engine.cli import main
from engine.mapping import Skipped, TargetProfile
from engine.pipeline import Pipeline, redacted_auth_data
from engine.profiles import ProfileRecord
from engine.spec import Spec, load_spec
from engine.templating import Map, Request

ROOT = Path(__file__).resolve().parent.parent
SPEC = "tests/data/destinations/example-audiences.json"
BULK_SPEC = "tests/data/destinations/example-audiences-bulk.json"
ACTIVATION = "tests/data/activations/example-audiences.json"
BULK_ACTIVATION = "tests/data/activations/example-audiences-bulk.json"
PROFILES = "tests/data/profiles/example-audiences.jsonl"
SPEC_DATA: dict[str, Any] = json.loads((ROOT / SPEC).read_text(encoding="utf-8"))
LISTS = "https://api.example-audiences.test/v1/lists"
HEADERS = {
    "Content-Type": "application/json",
    "Authorization": "Bearer [REDACTED]",
    "X-Account-Id": "acct_demo",
}
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"


@pytest.fixture(autouse=True)
def _in_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def invoke(*args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.split("\n")[:-1]]


def members(request: dict[str, Any]) -> tuple[str, str, list[str], list[str]]:
    """(list alias in the URL, action, member emails, input profiles) of one request."""
    body = request["body"]
    alias = request["url"].removeprefix(LISTS + "/").removesuffix("/members")
    assert body["list"] == alias
    return alias, body["action"], [m["email"] for m in body["members"]], request["profiles"]


def xdm(emails: list[str], first: str | None = None, **statuses: str) -> dict[str, Any]:
    """An input profile; statuses by audience: newsletter=..., vip=..."""
    data: dict[str, Any] = {"identityMap": {"Email": [{"id": e} for e in emails]}}
    if first is not None:
        data["person"] = {"name": {"firstName": first}}
    data["segmentMembership"] = {
        "ups": {f"aud-{audience}": {"status": s} for audience, s in statuses.items()}
    }
    return data


def jsonl(*profiles: dict[str, Any]) -> str:
    return "".join(json.dumps(p) + "\n" for p in profiles)


# --- the spec and its activation -------------------------------------------------------


@pytest.mark.parametrize(("spec", "activation"), [(SPEC, ACTIVATION), (BULK_SPEC, BULK_ACTIVATION)])
def test_spec_and_activation_are_valid(spec: str, activation: str) -> None:
    result = invoke("validate", "--activation", activation, spec)
    assert result.exit_code == 0
    assert result.stdout == f"{spec}: valid (0 errors, 0 warnings)\n"


def test_bad_list_alias_is_reported(tmp_path: Path) -> None:
    act = json.loads((ROOT / ACTIVATION).read_text(encoding="utf-8"))
    act["audiences"][1]["mappingId"] = "VIP list"
    path = tmp_path / "act.json"
    path.write_text(json.dumps(act, indent=2), encoding="utf-8")
    result = invoke("validate", "--activation", str(path), SPEC)
    assert result.exit_code == 1
    assert result.stdout == (
        f"{path}:26:20: /audiences/1/mappingId: Mapping ID 'VIP list' does not match"
        " ^[a-z][a-z0-9-]{0,39}$ (The alias of the list in Example Audiences, e.g. newsletter.)\n"
        f"{SPEC}: invalid (1 error, 0 warnings)\n"
    )


def test_template_for_one_profile_is_refused_when_requests_carry_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "destinations").mkdir()
    shutil.copy(ROOT / BULK_SPEC, tmp_path / "destinations")
    template = tmp_path / "templates" / "example-audiences" / "bulk.json.j2"
    template.parent.mkdir(parents=True)
    template.write_text('{"email": "{{ input.profile.identityMap.Email[0].id }}"}\n')
    monkeypatch.chdir(tmp_path)
    result = invoke("validate", "destinations/example-audiences-bulk.json")
    assert result.exit_code == 1
    assert result.stdout == (
        "templates/example-audiences/bulk.json.j2:1: `input.profile` does not exist: a request"
        " of this spec carries several profiles (aggregation); loop over `input.profiles`\n"
        "destinations/example-audiences-bulk.json: invalid (1 error, 0 warnings)\n"
    )


# --- CONFIGURABLE_AGGREGATION through `render` ----------------------------------------


def test_render_batches_by_audience_and_status() -> None:
    result = invoke("render", SPEC, "--activation", ACTIVATION, "--profiles", PROFILES)
    assert result.exit_code == 0
    requests = json_lines(result)
    assert all(r["method"] == "POST" and r["headers"] == HEADERS for r in requests)
    assert [members(r) for r in requests] == [
        # full (3 events: lines 1, 2, 4) as soon as line 4 arrives; line 4 brings two emails
        (
            "newsletter",
            "add",
            ["ada@example.com", "grace@example.com", "kj@example.com", "katherine@example.org"],
            ["line 1", "line 2", "line 4"],
        ),
        # then the open batches at the end, oldest first
        ("vip", "add", ["ada@example.com"], ["line 1"]),
        ("newsletter", "remove", ["alan@example.com"], ["line 3"]),
        ("vip", "remove", ["edsger@example.com"], ["line 6"]),
        ("newsletter", "add", ["barbara@example.com"], ["line 7"]),
    ]
    assert requests[3]["body"]["members"] == [
        {"email": "edsger@example.com", "firstName": 'Edsger "EWD"'}
    ]
    assert result.stderr.splitlines() == [
        f"skipped line 5: no valid Email: 'not-an-email' does not match {EMAIL_PATTERN}",
        "read 7 profiles: 6 rendered, 1 skipped (1 missing-identity); 5 requests",
        "forecast: 5 requests, under a minute at 600 per minute",
    ]


def snapshot_view(result: Result) -> dict[str, Any]:
    return {
        "requests": [
            {
                "request": f"{r['method']} {r['url']}",
                "headers": r["headers"],
                "body": json.dumps(r["body"], indent=2, ensure_ascii=False),
                "profiles": r["profiles"],
            }
            for r in json_lines(result)
        ],
        "stderr": result.stderr.splitlines(),
    }


def test_render_snapshot(snapshot: Any) -> None:
    result = invoke("render", SPEC, "--activation", ACTIVATION, "--profiles", PROFILES)
    assert snapshot_view(result) == snapshot


def test_render_bulk_snapshot(snapshot: Any) -> None:
    result = invoke("render", BULK_SPEC, "--activation", BULK_ACTIVATION, "--profiles", PROFILES)
    assert snapshot_view(result) == snapshot


def test_list_alias_is_percent_encoded_in_the_url() -> None:
    spec = load_spec(SPEC)
    activation = Activation(
        ROOT / ACTIVATION,
        "example-audiences",
        "demo",
        {"accountId": "acct_demo"},
        (FieldMapping("identityMap.Email", "Email", True),),
        (Audience("aud-x", None, "ups", "../admin?x=1#y"),),
    )
    pipeline = Pipeline(spec, activation, redacted_auth_data(spec))
    [request] = pipeline.run([ProfileRecord("p", xdm(["a@example.com"], x="realized"))])
    assert isinstance(request, Request)
    assert request.url == f"{LISTS}/..%2Fadmin%3Fx%3D1%23y/members"
    assert request.json_body["list"] == "../admin?x=1#y"


def test_batch_size_limit_through_render() -> None:
    stdin = jsonl(*(xdm([f"u{n}@example.com"], newsletter="realized") for n in range(1, 8)))
    result = invoke("render", SPEC, "--activation", ACTIVATION, "--profiles", "-", stdin=stdin)
    assert [members(r)[2] for r in json_lines(result)] == [
        ["u1@example.com", "u2@example.com", "u3@example.com"],
        ["u4@example.com", "u5@example.com", "u6@example.com"],
        ["u7@example.com"],
    ]
    assert result.stderr.splitlines()[0] == ("read 7 profiles: 7 rendered, 0 skipped; 3 requests")


# --- the Aggregator, directly ------------------------------------------------------------

AUDIENCES = (
    Audience("aud-newsletter", "Newsletter", "ups", "newsletter"),
    Audience("aud-vip", "VIP customers", "ups", "vip"),
)


def aggregator(aggregation: dict[str, Any]) -> Aggregator:
    data = copy.deepcopy(SPEC_DATA)
    data["aggregation"] = aggregation
    activation = Activation(ROOT / ACTIVATION, "example-audiences", "demo", {}, (), AUDIENCES)
    return Aggregator(Spec(ROOT / SPEC, SPEC, data), activation)


def configurable(limit: int, key: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"maxNumEventsInBatch": limit, **extra}
    if key is not None:
        settings["aggregationKey"] = key
    return {"aggregationType": "CONFIGURABLE_AGGREGATION", "configurableAggregation": settings}


def best_effort(limit: int, **extra: Any) -> dict[str, Any]:
    return {
        "aggregationType": "BEST_EFFORT",
        "bestEffortAggregation": {"maxUsersPerRequest": limit, **extra},
    }


def target(ref: str, identities: dict[str, list[str]], **statuses: str) -> TargetProfile:
    """A target profile: identities by namespace, statuses by audience (newsletter, vip)."""
    return TargetProfile(
        ref,
        Map(
            identityMap=Map((ns, [Map(id=v) for v in ids]) for ns, ids in identities.items()),
            attributes=Map(),
            segmentMembership=Map(ups=Map((f"aud-{a}", Map(status=s)) for a, s in statuses.items()))
            if statuses
            else Map(),
        ),
    )


def run(agg: Aggregator, targets: Iterable[TargetProfile]) -> list[tuple[str, Batch]]:
    """Every batch, tagged `full` (sent when it filled up) or `end` (sent by flush)."""
    out: list[tuple[str, Batch]] = []
    for t in targets:
        out += [("full", b) for b in agg.add(t)]
    out += [("end", b) for b in agg.flush()]
    return out


def view(batch: Batch) -> dict[str, Any]:
    """A batch as plain data: its key and, per entry, identities and audience statuses."""
    entries = []
    for p in batch.profiles:
        ids = {ns: [e["id"] for e in entries_] for ns, entries_ in p["identityMap"].items()}
        statuses = {
            aud: m["status"] for ns in p["segmentMembership"].values() for aud, m in ns.items()
        }
        entries.append((ids, statuses))
    key = None if batch.aggregation_key is None else dict(batch.aggregation_key)
    return {"key": key, "entries": entries, "refs": batch.refs}


def email(*values: str) -> dict[str, list[str]]:
    return {"Email": list(values)}


def test_batches_by_audience_and_status_with_size_limit() -> None:
    agg = aggregator(configurable(3, {"includeSegmentId": True, "includeSegmentStatus": True}))
    targets = [
        target("p1", email("1@x.co"), newsletter="realized"),
        target("x1", email("x1@x.co"), newsletter="exited"),
        target("p2", email("2@x.co"), newsletter="realized"),
        target("p3", email("3@x.co"), newsletter="realized"),
        target("p4", email("4@x.co"), newsletter="realized"),
        target("x2", email("x2@x.co"), newsletter="exited"),
        target("p5", email("5@x.co"), newsletter="realized"),
        target("p6", email("6@x.co"), newsletter="realized"),
        target("p7", email("7@x.co"), newsletter="realized"),
    ]
    realized = {
        "segmentId": "aud-newsletter",
        "segmentNamespace": "ups",
        "segmentAlias": "newsletter",
        "segmentStatus": "realized",
    }
    exited = dict(realized, segmentStatus="exited")
    batches = run(agg, targets)
    assert [(when, view(b)["key"], b.refs) for when, b in batches] == [
        ("full", realized, ("p1", "p2", "p3")),
        ("full", realized, ("p4", "p5", "p6")),
        ("end", exited, ("x1", "x2")),
        ("end", realized, ("p7",)),
    ]
    assert all(len(b.profiles) <= 3 for _, b in batches)
    template_input = batches[0][1].template_input()
    assert set(template_input.keys()) == {"profiles", "aggregationKey"}
    assert template_input["aggregationKey"] == realized


def test_a_profile_in_two_audiences_goes_to_two_batches_each_with_one_audience() -> None:
    agg = aggregator(configurable(3, {"includeSegmentId": True, "includeSegmentStatus": True}))
    batches = run(agg, [target("p1", email("a@x.co"), newsletter="realized", vip="exited")])
    assert [view(b) for _, b in batches] == [
        {
            "key": {
                "segmentId": "aud-newsletter",
                "segmentNamespace": "ups",
                "segmentAlias": "newsletter",
                "segmentStatus": "realized",
            },
            "entries": [({"Email": ["a@x.co"]}, {"aud-newsletter": "realized"})],
            "refs": ("p1",),
        },
        {
            "key": {
                "segmentId": "aud-vip",
                "segmentNamespace": "ups",
                "segmentAlias": "vip",
                "segmentStatus": "exited",
            },
            "entries": [({"Email": ["a@x.co"]}, {"aud-vip": "exited"})],
            "refs": ("p1",),
        },
    ]


def test_segment_id_without_status_mixes_statuses() -> None:
    agg = aggregator(configurable(10, {"includeSegmentId": True}))
    batches = run(
        agg,
        [
            target("p1", email("a@x.co"), newsletter="realized"),
            target("p2", email("b@x.co"), newsletter="exited"),
        ],
    )
    assert [view(b) for _, b in batches] == [
        {
            "key": {
                "segmentId": "aud-newsletter",
                "segmentNamespace": "ups",
                "segmentAlias": "newsletter",
            },
            "entries": [
                ({"Email": ["a@x.co"]}, {"aud-newsletter": "realized"}),
                ({"Email": ["b@x.co"]}, {"aud-newsletter": "exited"}),
            ],
            "refs": ("p1", "p2"),
        }
    ]


def test_no_aggregation_key_puts_everything_together() -> None:
    agg = aggregator(configurable(10))
    batches = run(
        agg,
        [
            target("p1", email("a@x.co"), newsletter="realized"),
            target("p2", email("b@x.co"), vip="exited", newsletter="realized"),
        ],
    )
    assert [view(b) for _, b in batches] == [
        {
            "key": {},
            "entries": [
                ({"Email": ["a@x.co"]}, {"aud-newsletter": "realized"}),
                ({"Email": ["b@x.co"]}, {"aud-vip": "exited", "aud-newsletter": "realized"}),
            ],
            "refs": ("p1", "p2"),
        }
    ]


MULTI = {
    "Email": ["e1@x.co", "e2@x.co"],
    "Phone": ["+1"],
    "GAID": ["g1"],
    "IDFA": ["i1"],
}


def test_include_identity_one_group_of_all_namespaces() -> None:
    agg = aggregator(configurable(10, {"includeIdentity": True}))
    batches = run(
        agg,
        [
            target("p1", MULTI, newsletter="realized"),
            target("p2", {"Email": ["e3@x.co"]}, newsletter="realized"),
            target("p3", {"IDFA": ["i3"], "Email": ["e4@x.co"]}, newsletter="realized"),
        ],
    )
    assert [(view(b)["key"], b.refs) for _, b in batches] == [
        ({"identityNamespaces": ["Email", "GAID", "IDFA", "Phone"]}, ("p1",)),
        ({"identityNamespaces": ["Email"]}, ("p2",)),
        ({"identityNamespaces": ["Email", "IDFA"]}, ("p3",)),
    ]
    assert view(batches[0][1])["entries"] == [(MULTI, {"aud-newsletter": "realized"})]


def test_one_identity_per_group() -> None:
    agg = aggregator(configurable(10, {"includeIdentity": True, "oneIdentityPerGroup": True}))
    batches = run(
        agg,
        [
            target("p1", {"Email": ["e1@x.co", "e2@x.co"], "Phone": ["+1"]}, vip="realized"),
            target("p2", {"Phone": ["+2"]}, vip="realized"),
        ],
    )
    assert [view(b) for _, b in batches] == [
        {
            "key": {"identityNamespaces": ["Email"]},
            "entries": [({"Email": ["e1@x.co", "e2@x.co"]}, {"aud-vip": "realized"})],
            "refs": ("p1",),
        },
        {
            "key": {"identityNamespaces": ["Phone"]},
            "entries": [
                ({"Phone": ["+1"]}, {"aud-vip": "realized"}),
                ({"Phone": ["+2"]}, {"aud-vip": "realized"}),
            ],
            "refs": ("p1", "p2"),
        },
    ]


GROUPS_KEY = {
    "includeSegmentId": True,
    "includeIdentity": True,
    "groups": [{"namespaces": ["Email", "Phone"]}, {"namespaces": ["GAID", "IDFA"]}],
}
NEWSLETTER_KEY = {
    "segmentId": "aud-newsletter",
    "segmentNamespace": "ups",
    "segmentAlias": "newsletter",
}


def test_identity_groups_with_segment_keys() -> None:
    agg = aggregator(configurable(2, GROUPS_KEY))
    p2 = {"Email": ["e2@x.co"], "Phone": ["+2"], "GAID": ["g2"], "IDFA": ["i2"]}
    batches = run(
        agg,
        [
            target("p1", MULTI, newsletter="realized"),
            target("p2", p2, newsletter="exited"),
            target("p3", {"GAID": ["g3"], "IDFA": ["i3"]}, vip="realized"),
        ],
    )
    vip = {"segmentId": "aud-vip", "segmentNamespace": "ups", "segmentAlias": "vip"}
    assert [(when, view(b)) for when, b in batches] == [
        (
            "full",
            {
                "key": {**NEWSLETTER_KEY, "identityNamespaces": ["Email", "Phone"]},
                "entries": [
                    (
                        {"Email": ["e1@x.co", "e2@x.co"], "Phone": ["+1"]},
                        {"aud-newsletter": "realized"},
                    ),
                    ({"Email": ["e2@x.co"], "Phone": ["+2"]}, {"aud-newsletter": "exited"}),
                ],
                "refs": ("p1", "p2"),
            },
        ),
        (
            "full",
            {
                "key": {**NEWSLETTER_KEY, "identityNamespaces": ["GAID", "IDFA"]},
                "entries": [
                    ({"GAID": ["g1"], "IDFA": ["i1"]}, {"aud-newsletter": "realized"}),
                    ({"GAID": ["g2"], "IDFA": ["i2"]}, {"aud-newsletter": "exited"}),
                ],
                "refs": ("p1", "p2"),
            },
        ),
        (
            "end",
            {
                "key": {**vip, "identityNamespaces": ["GAID", "IDFA"]},
                "entries": [({"GAID": ["g3"], "IDFA": ["i3"]}, {"aud-vip": "realized"})],
                "refs": ("p3",),
            },
        ),
    ]


def test_identity_group_is_one_batch_whatever_namespaces_a_profile_has() -> None:
    agg = aggregator(configurable(10, GROUPS_KEY))
    batches = run(
        agg,
        [
            target("p1", {"Email": ["e1@x.co"], "Phone": ["+1"]}, newsletter="realized"),
            target("p2", {"Phone": ["+2"]}, newsletter="realized"),
            target("p3", {"Email": ["e3@x.co"]}, newsletter="realized"),
        ],
    )
    assert [view(b) for _, b in batches] == [
        {
            "key": {**NEWSLETTER_KEY, "identityNamespaces": ["Email", "Phone"]},
            "entries": [
                ({"Email": ["e1@x.co"], "Phone": ["+1"]}, {"aud-newsletter": "realized"}),
                ({"Phone": ["+2"]}, {"aud-newsletter": "realized"}),
                ({"Email": ["e3@x.co"]}, {"aud-newsletter": "realized"}),
            ],
            "refs": ("p1", "p2", "p3"),
        }
    ]


def test_split_user_by_id_counts_each_identity_as_an_event() -> None:
    agg = aggregator(
        configurable(
            3, {"includeSegmentId": True, "includeSegmentStatus": True}, splitUserById=True
        )
    )
    batches = run(
        agg,
        [
            target("p1", email("a@x.co"), newsletter="realized"),
            target("p2", email("b1@x.co", "b2@x.co", "b3@x.co"), newsletter="realized"),
        ],
    )
    assert [(when, [e[0] for e in view(b)["entries"]], b.refs) for when, b in batches] == [
        ("full", [email("a@x.co"), email("b1@x.co"), email("b2@x.co")], ("p1", "p2")),
        ("end", [email("b3@x.co")], ("p2",)),
    ]
    assert batches[0][1].identities == ("Email=a@x.co", "Email=b1@x.co", "Email=b2@x.co")


def test_split_user_by_id_gives_one_identity_per_namespace_per_entry() -> None:
    """The i-th value of each namespace go together: every identity is sent once."""
    agg = aggregator(configurable(10, splitUserById=True))
    profile = {"Email": ["a@x.co", "b@x.co", "c@x.co"], "Phone": ["+1", "+2"]}
    batches = run(agg, [target("p1", profile)])
    assert [e[0] for e in view(batches[0][1])["entries"]] == [
        {"Email": ["a@x.co"], "Phone": ["+1"]},
        {"Email": ["b@x.co"], "Phone": ["+2"]},
        {"Email": ["c@x.co"]},
    ]


def test_best_effort_several_users_per_request() -> None:
    agg = aggregator(best_effort(2))
    targets = [
        target(f"p{n}", email(f"{n}@x.co"), newsletter="realized" if n % 2 else "exited")
        for n in range(1, 6)
    ]
    batches = run(agg, targets)
    assert [(when, b.refs) for when, b in batches] == [
        ("full", ("p1", "p2")),
        ("full", ("p3", "p4")),
        ("end", ("p5",)),
    ]
    first = batches[0][1]
    assert first.aggregation_key is None
    template_input = first.template_input()
    assert set(template_input.keys()) == {"profiles"}  # no input.profile, no aggregationKey
    assert [p["identityMap"]["Email"][0]["id"] for p in template_input["profiles"]] == [
        "1@x.co",
        "2@x.co",
    ]


def test_best_effort_one_user_per_request_gives_input_profile() -> None:
    agg = aggregator(best_effort(1, splitUserById=True))
    batches = run(agg, [target("p1", email("a@x.co", "b@x.co"), vip="realized")])
    assert [(when, b.refs, b.identities) for when, b in batches] == [
        ("full", ("p1",), ("Email=a@x.co",)),
        ("full", ("p1",), ("Email=b@x.co",)),
    ]
    template_input = batches[1][1].template_input()
    assert set(template_input.keys()) == {"profiles", "profile"}
    assert template_input["profile"]["identityMap"] == {"Email": [{"id": "b@x.co"}]}


def test_best_effort_split_user_by_id_fills_requests_with_identities() -> None:
    agg = aggregator(best_effort(2, splitUserById=True))
    batches = run(
        agg,
        [
            target("p1", email("a@x.co", "b@x.co", "c@x.co"), vip="realized"),
            target("p2", email("d@x.co"), vip="realized"),
        ],
    )
    assert [(b.refs, b.identities) for _, b in batches] == [
        (("p1",), ("Email=a@x.co", "Email=b@x.co")),
        (("p1", "p2"), ("Email=c@x.co", "Email=d@x.co")),
    ]


# --- every profile ends in a recorded state -------------------------------------------


def _pipeline(data: dict[str, Any], activation: Activation) -> Pipeline:
    spec = Spec(ROOT / SPEC, SPEC, data)
    return Pipeline(spec, activation, redacted_auth_data(spec))


def test_profile_in_no_activated_audience_is_recorded() -> None:
    data = copy.deepcopy(SPEC_DATA)
    data["schemaConfig"]["segmentRequired"] = False
    activation = load_activation(ROOT / ACTIVATION, load_spec(SPEC))
    pipeline = _pipeline(data, activation)
    events = list(pipeline.run([ProfileRecord("line 1", xdm(["a@example.com"]))]))
    assert [e for e in events if isinstance(e, Request)] == []
    assert [(e.ref, e.category) for e in events if isinstance(e, Skipped)] == [
        ("line 1", "no-audience")
    ]
    assert pipeline.tally.rendered == 0


def test_profile_with_identities_outside_the_groups_is_recorded() -> None:
    data = copy.deepcopy(SPEC_DATA)
    data["identityNamespaces"] = {"Email": {}, "Phone": {}}
    data["aggregation"] = configurable(
        3, {"includeIdentity": True, "groups": [{"namespaces": ["Email"]}]}
    )
    activation = Activation(
        ROOT / ACTIVATION,
        "example-audiences",
        "demo",
        {"accountId": "acct_demo"},
        (
            FieldMapping("identityMap.Email", "Email", True),
            FieldMapping("identityMap.Phone", "Phone", True),
        ),
        AUDIENCES,
    )
    pipeline = _pipeline(data, activation)
    profile = {
        "identityMap": {"Phone": [{"id": "+15550100"}]},
        "segmentMembership": {"ups": {"aud-vip": {"status": "realized"}}},
    }
    events = list(pipeline.run([ProfileRecord("line 1", profile)]))
    assert [e.ref for e in events if isinstance(e, Skipped)] == ["line 1"]
    assert pipeline.tally.rendered == 0

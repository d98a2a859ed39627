"""`dest-engine render` (the dry run) and the pipeline behind it, on the Outreach destination.

Every test runs the real command through click's CliRunner from the checkout's top
folder, so messages name `examples/outreach/...` as a user would see them. Expected
outputs are written out in full; where a test needs "what the engine should have
produced", it derives it from the input with its own small code, never with the
engine's.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engine.activation import load_activation
from engine.cli import main
from engine.pipeline import Pipeline, redacted_auth_data
from engine.profiles import ProfileRecord
from engine.spec import load_spec
from engine.templating import Request

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE_PROFILES = ROOT / "examples" / "outreach" / "profiles.jsonl"
EXAMPLE_ACTIVATION = ROOT / "examples" / "outreach" / "activation.json"
ALL_FIELDS = "tests/data/activations/outreach-all-fields.json"

HIGH_VALUE = "8b1f2c3a-4d5e-4f60-8a71-92b3c4d5e6f7"  # Mapping ID 7
TRIAL = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"  # Mapping ID 12
OUTREACH_ID = re.compile(r"[1-9][0-9]{0,17}")  # identityNamespaces.OutreachId.pattern
HEADERS = {
    "Content-Type": "application/vnd.api+json",
    "Authorization": "Bearer [REDACTED]",
    "Accept": "application/vnd.api+json",
}
USING = [
    "using the bundled example examples/outreach/activation.json",
    "using the bundled example examples/outreach/profiles.jsonl",
]
USING_ACTIVATION = USING[:1]


@pytest.fixture(autouse=True)
def _in_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the checkout's top folder, with no colour forced on `--format pretty`."""
    monkeypatch.chdir(ROOT)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str, stdin: str | None = None) -> Result:
    """Run `dest-engine ARGS`; an unexpected exception fails the test as itself."""
    result = CliRunner().invoke(main, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def render(*args: str, stdin: str | None = None) -> Result:
    return invoke("render", *args, stdin=stdin)


def profile(
    oids: list[Any] | None,
    first: str | None = None,
    last: str | None = None,
    **statuses: str,
) -> dict[str, Any]:
    """An XDM-style input profile; `statuses` by audience: high=..., trial=..."""
    data: dict[str, Any] = {}
    if oids is not None:
        data["identityMap"] = {"Oid": [{"id": oid} for oid in oids]}
    name = {k: v for k, v in (("firstName", first), ("lastName", last)) if v is not None}
    if name:
        data["person"] = {"name": name}
    ids = {"high": HIGH_VALUE, "trial": TRIAL}
    data["segmentMembership"] = {"ups": {ids[k]: {"status": v} for k, v in statuses.items()}}
    return data


def jsonl(*profiles: dict[str, Any]) -> str:
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in profiles)


def json_lines(result: Result) -> list[dict[str, Any]]:
    """stdout as JSON lines, split on \\n only (JSON Lines' separator)."""
    assert result.stdout.endswith("\n") or result.stdout == ""
    return [json.loads(line) for line in result.stdout.split("\n")[:-1]]


def line(request: dict[str, Any]) -> str:
    """One request as `render` prints it in the default json format."""
    return json.dumps(request, ensure_ascii=False)


def summary(read: int, rendered: int, skipped: str, requests: int) -> list[str]:
    def count(n: int, word: str) -> str:
        return f"{n:,} {word}" + ("" if n == 1 else "s")

    return [
        f"read {count(read, 'profile')}: {rendered} rendered, {skipped}; {count(requests, 'request')}",
        f"forecast: {count(requests, 'request')}, under a minute at 10,000 per hour",
    ]


def stderr_lines(result: Result) -> list[str]:
    return result.stderr.splitlines()


def prospect(oid: int, profiles: list[str], **attributes: Any) -> dict[str, Any]:
    """A request as the json format prints it."""
    return {
        "method": "PATCH",
        "url": f"https://api.outreach.io/api/v2/prospects/{oid}",
        "headers": HEADERS,
        "body": {"data": {"type": "prospect", "id": oid, "attributes": attributes}},
        "profiles": profiles,
    }


# --- the bundled example ---------------------------------------------------------------


def test_bundled_example_exact_output() -> None:
    result = render("outreach")
    assert result.exit_code == 0
    expected = [
        prospect(1001, ["line 1"], firstName="Ada", lastName="Lovelace", custom7="realized"),
        prospect(
            1002,
            ["line 2"],
            firstName="Grace",
            lastName="Hopper",
            custom7="realized",
            custom12="exited",
        ),
        prospect(1003, ["line 3"], firstName="Alan", custom12="exited"),
        prospect(1004, ["line 4"], firstName="Katherine", lastName="Johnson", custom12="realized"),
        prospect(1005, ["line 4"], firstName="Katherine", lastName="Johnson", custom12="realized"),
        prospect(
            1006,
            ["line 5"],
            firstName='Marie "Curie"',
            lastName="Skłodowska\n</script>",
            custom7="realized",
        ),
    ]
    assert result.stdout == "".join(line(r) + "\n" for r in expected)
    assert stderr_lines(result) == [
        *USING,
        "skipped line 6: no valid OutreachId: none given",
        "skipped line 7: no valid OutreachId: '12/../../users' does not match ^[1-9][0-9]{0,17}$",
        "skipped line 8: not in any activated audience",
        *summary(8, 5, "3 skipped (2 missing-identity, 1 no-audience)", 6),
    ]


def _expected_from_example() -> list[tuple[int, dict[str, Any]]]:
    """(prospect id, attributes) per request, derived from the example files by hand rules:
    valid OutreachIds from identityMap.Oid, mapped attributes present in the profile, and
    one `custom<Mapping ID>` per activated audience the profile has a status in."""
    activation = json.loads(EXAMPLE_ACTIVATION.read_text(encoding="utf-8"))
    sources = {
        m["target"]: m["source"].split(".")
        for m in activation["mappings"]
        if not m["source"].startswith("identityMap.")
    }
    aliases = {a["id"]: a["mappingId"] for a in activation["audiences"]}
    expected = []
    for text in EXAMPLE_PROFILES.read_text(encoding="utf-8").splitlines():
        data = json.loads(text)
        oids = [
            e["id"]
            for e in data.get("identityMap", {}).get("Oid", [])
            if OUTREACH_ID.fullmatch(e["id"])
        ]
        memberships = data["segmentMembership"]["ups"]
        audiences = {
            f"custom{aliases[a]}": m["status"] for a, m in memberships.items() if a in aliases
        }
        if not oids or not audiences:
            continue
        attributes = {}
        for target, path in sources.items():
            value: Any = data
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                attributes[target] = value
        attributes.update(audiences)
        expected += [(int(oid), attributes) for oid in oids]
    return expected


def test_bundled_example_bodies_are_jsonapi_updates() -> None:
    requests = json_lines(render("outreach"))
    expected = _expected_from_example()
    assert len(requests) == len(expected) == 6
    for request, (oid, attributes) in zip(requests, expected, strict=True):
        assert request["method"] == "PATCH"
        url_id = request["url"].rsplit("/", 1)[1]
        assert request["url"] == f"https://api.outreach.io/api/v2/prospects/{url_id}"
        body = request["body"]
        assert list(body) == ["data"]
        assert list(body["data"]) == ["type", "id", "attributes"]
        assert body["data"]["type"] == "prospect"
        assert type(body["data"]["id"]) is int
        assert body["data"]["id"] == int(url_id) == oid
        assert body["data"]["attributes"] == attributes


GRACE_BODY = """\
{
  "data": {
    "type": "prospect",
    "id": 1002,
    "attributes": {
      "firstName": "Grace",
      "lastName": "Hopper",
      "custom7": "realized",
      "custom12": "exited"
    }
  }
}"""


def test_python_api_gives_the_same_requests_as_the_command() -> None:
    spec = load_spec("outreach")
    activation = load_activation(EXAMPLE_ACTIVATION, spec)
    pipeline = Pipeline(spec, activation, redacted_auth_data(spec))
    records = [
        ProfileRecord(f"line {n}", json.loads(text))
        for n, text in enumerate(EXAMPLE_PROFILES.read_text(encoding="utf-8").splitlines(), 1)
    ]
    events = list(pipeline.run(records))
    requests = [e for e in events if isinstance(e, Request)]
    assert [
        {
            "method": r.method,
            "url": r.url,
            "headers": r.headers,
            "body": r.json_body,
            "profiles": list(r.refs),
        }
        for r in requests
    ] == json_lines(render("outreach"))
    assert [r.identities for r in requests] == [
        ("OutreachId=1001",),
        ("OutreachId=1002",),
        ("OutreachId=1003",),
        ("OutreachId=1004",),
        ("OutreachId=1005",),
        ("OutreachId=1006",),
    ]
    # The body sent is the template's text as rendered; json_body is that text parsed.
    assert requests[1].body == GRACE_BODY
    assert all(json.loads(r.body) == r.json_body for r in requests)
    assert (pipeline.tally.read, pipeline.tally.rendered, pipeline.tally.requests) == (8, 5, 6)


# --- snapshots -------------------------------------------------------------------------


def snapshot_view(result: Result) -> dict[str, Any]:
    """What a reviewer reads in the snapshot: each request, its body indented, and stderr."""
    return {
        "exit_code": result.exit_code,
        "requests": [
            {
                "request": f"{r['method']} {r['url']}",
                "headers": r["headers"],
                "body": json.dumps(r["body"], indent=2, ensure_ascii=False),
                "profiles": r["profiles"],
            }
            for r in json_lines(result)
        ],
        "stderr": stderr_lines(result),
    }


SNAPSHOT_CASES = {
    "single-profile": [profile(["1001"], "Ada", "Lovelace", high="realized")],
    "multi-audience": [profile(["1002"], "Grace", "Hopper", high="realized", trial="exited")],
    "exited": [profile(["1003"], "Alan", trial="exited")],
    "missing-identity": [
        {
            "identityMap": {"Email": [{"id": "edsger@example.com"}]},
            "segmentMembership": {"ups": {HIGH_VALUE: {"status": "realized"}}},
        },
        profile(["abc", "0"], "Mallory", high="realized"),
    ],
    "multi-identity": [profile(["1004", "1005"], "Katherine", "Johnson", trial="realized")],
}


@pytest.mark.parametrize("case", list(SNAPSHOT_CASES))
def test_snapshot(case: str, snapshot: Any) -> None:
    result = render("outreach", "--profiles", "-", stdin=jsonl(*SNAPSHOT_CASES[case]))
    assert snapshot_view(result) == snapshot


HOSTILE_PERSON = {
    "name": {
        "firstName": 'Marie "Curie", "admin": true',
        "lastName": "back\\slash\\\\ and \\u0041 and \\",
        "middleName": "line\nbreak\r\nand\ttab",
    },
    "nickname": "{{ authData.accessToken }} {% if true %}x{% endif %} {# c #}",
    "emails": ["</script><script>alert(1)</script>", "a@example.com"],
    "tags": ["😀", "e\u0301", "\u202eRTL"],
    "optedOut": True,
    "score": 1e308,
    "notes": "nul\x00 bell\x07 esc\x1b del\x7f c1\x85 ls\u2028 ps\u2029 bom\ufeff",
}
HOSTILE_WORK = {"title": "</script>", "company": "Ünïcödé ☃ 𝄞"}


def test_snapshot_hostile_values(snapshot: Any) -> None:
    data = profile(["1007"], high="realized")
    data["person"] = HOSTILE_PERSON
    data["work"] = HOSTILE_WORK
    result = render("outreach", "--activation", ALL_FIELDS, "--profiles", "-", stdin=jsonl(data))
    view = snapshot_view(result)
    # ASCII-only in the snapshot file, so that its control and separator characters stay visible.
    for request in view["requests"]:
        request["body"] = json.dumps(json.loads(request["body"]), indent=2, ensure_ascii=True)
    assert view == snapshot
    [request] = json_lines(result)
    assert request["body"]["data"]["attributes"] == {
        "firstName": HOSTILE_PERSON["name"]["firstName"],
        "lastName": HOSTILE_PERSON["name"]["lastName"],
        "middleName": HOSTILE_PERSON["name"]["middleName"],
        "nickname": HOSTILE_PERSON["nickname"],
        "title": "</script>",
        "company": "Ünïcödé ☃ 𝄞",
        "emails": HOSTILE_PERSON["emails"],
        "tags": HOSTILE_PERSON["tags"],
        "optedOut": True,
        "score": 1e308,
        "custom20": HOSTILE_PERSON["notes"],
        "custom7": "realized",
    }


# --- hostile values --------------------------------------------------------------------

HOSTILE_STRINGS = {
    "double-quotes": 'say "hi", "id": 1}',
    "backslashes": "C:\\path\\ \\n \\u0000 \\",
    "newlines": "one\ntwo\r\nthree\rfour",
    "jinja-print": "{{ x }}",
    "jinja-statement": "{% if %}",
    "jinja-raw-block": "{% raw %}{{ input }}{% endraw %}",
    "script": "</script><!--",
    "emoji": "👩‍💻 🎉 𝄞",
    "nul-and-controls": "".join(chr(c) for c in range(32)) + "\x7f\x80\x85\x9f",
    "unicode-line-separators": "a\u2028b\u2029c\x85d",
    "bidi-and-bom": "\ufeff\u202egnirts\u202c",
    "lone-surrogate-escape": "\\ud800",
    "empty": "",
}


@pytest.mark.parametrize("value", list(HOSTILE_STRINGS.values()), ids=list(HOSTILE_STRINGS))
def test_hostile_value_comes_out_unchanged(value: str) -> None:
    data = profile(["1001"], value, "Lovelace", high="realized")
    result = render("outreach", "--profiles", "-", stdin=jsonl(data))
    assert result.exit_code == 0
    [request] = json_lines(result)
    assert request["url"] == "https://api.outreach.io/api/v2/prospects/1001"
    assert request["body"] == {
        "data": {
            "type": "prospect",
            "id": 1001,
            "attributes": {"firstName": value, "lastName": "Lovelace", "custom7": "realized"},
        }
    }
    assert stderr_lines(result) == [*USING_ACTIVATION, *summary(1, 1, "0 skipped", 1)]


@pytest.mark.parametrize("value", list(HOSTILE_STRINGS.values()), ids=list(HOSTILE_STRINGS))
def test_hostile_value_in_the_body_sent(value: str) -> None:
    """The exact body `push` sends (Request.body) parses back to the same string."""
    spec = load_spec("outreach")
    pipeline = Pipeline(spec, load_activation(EXAMPLE_ACTIVATION, spec), redacted_auth_data(spec))
    [request] = pipeline.run([ProfileRecord("p", profile(["1001"], value, high="exited"))])
    assert isinstance(request, Request)
    assert json.loads(request.body)["data"]["attributes"]["firstName"] == value


LONG = "x" * 39_991 + "é😀\"\\\n</>'"  # 40,000 characters


def test_long_value_comes_out_unchanged() -> None:
    """40,000 characters, into `company`, which has no length limit."""
    data = profile(["1001"], high="realized")
    data["work"] = {"company": LONG}
    result = render("outreach", "--activation", ALL_FIELDS, "--profiles", "-", stdin=jsonl(data))
    assert result.exit_code == 0
    [request] = json_lines(result)
    assert request["body"]["data"]["attributes"] == {"company": LONG, "custom7": "realized"}


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (
            ("person", "name", "firstName"),
            LONG,
            "firstName is 40,000 characters long; the destination accepts at most 255",
        ),
        (
            ("person", "notes"),
            "n" * 32_001,
            "custom20 is 32,001 characters long; the destination accepts at most 32,000",
        ),
        (("person", "name", "firstName"), 123, "firstName is an integer, not string: 123"),
        (("person", "name", "firstName"), {"a": 1}, 'firstName is an object, not string: {"a": 1}'),
        (("person", "optedOut"), "yes", "optedOut is a string, not boolean: 'yes'"),
        (("person", "score"), True, "score is a boolean, not number: true"),
        (("person", "tags"), "vip", "tags is a string, not array: 'vip'"),
        (
            ("person", "emails"),
            {"work": "a@example.com"},
            'emails is an object, not array: {"work": "a@example.com"}',
        ),
    ],
)
def test_value_the_destination_cannot_take_is_skipped(
    path: tuple[str, ...], value: Any, reason: str
) -> None:
    data = profile(["1001"], high="realized")
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    result = render("outreach", "--activation", ALL_FIELDS, "--profiles", "-", stdin=jsonl(data))
    assert (result.exit_code, result.stdout) == (0, "")
    assert stderr_lines(result) == [
        f"skipped line 1: {reason}",
        "read 1 profile: 0 rendered, 1 skipped (1 invalid-attribute); 0 requests",
        "forecast: 0 requests, under a minute at 10,000 per hour",
    ]


NOT_SENT = "read 1 profile: 0 rendered, 1 skipped (1 missing-identity); 0 requests"
BAD_IDENTITIES = [
    ("abc", "'abc' does not match ^[1-9][0-9]{0,17}$"),
    ("-1", "'-1' does not match ^[1-9][0-9]{0,17}$"),
    ("0", "'0' does not match ^[1-9][0-9]{0,17}$"),
    ("1e3", "'1e3' does not match ^[1-9][0-9]{0,17}$"),
    ("12/../../users", "'12/../../users' does not match ^[1-9][0-9]{0,17}$"),
    ("1?x=2", "'1?x=2' does not match ^[1-9][0-9]{0,17}$"),
    ("1#frag", "'1#frag' does not match ^[1-9][0-9]{0,17}$"),
    ("1%2F2", "'1%2F2' does not match ^[1-9][0-9]{0,17}$"),
    (" 12", "' 12' does not match ^[1-9][0-9]{0,17}$"),
    ("12\n", "'12\\n' does not match ^[1-9][0-9]{0,17}$"),
    ("١٢٣", "'١٢٣' does not match ^[1-9][0-9]{0,17}$"),
    ("1" * 30, "'111111111111111111111111111111' does not match ^[1-9][0-9]{0,17}$"),
    ("1" * 60, "'" + "1" * 36 + "... does not match ^[1-9][0-9]{0,17}$"),
    ("", "'' is not a non-empty string"),
    (1e3, "1000.0 is not a non-empty string"),  # the JSON number 1e3
    (-5, "'-5' does not match ^[1-9][0-9]{0,17}$"),
]


@pytest.mark.parametrize(
    ("oid", "reason"), BAD_IDENTITIES, ids=[repr(v)[:20] for v, _ in BAD_IDENTITIES]
)
def test_bad_identity_is_skipped_and_never_in_a_url(oid: Any, reason: str) -> None:
    result = render(
        "outreach", "--profiles", "-", stdin=jsonl(profile([oid], "X", high="realized"))
    )
    assert result.exit_code == 0
    assert result.stdout == ""
    assert stderr_lines(result) == [
        *USING_ACTIVATION,
        f"skipped line 1: no valid OutreachId: {reason}",
        NOT_SENT,
        "forecast: 0 requests, under a minute at 10,000 per hour",
    ]


@pytest.mark.parametrize(
    "data",
    [
        {"segmentMembership": {"ups": {HIGH_VALUE: {"status": "realized"}}}},
        {"identityMap": {}, "segmentMembership": {"ups": {HIGH_VALUE: {"status": "realized"}}}},
        {
            "identityMap": {"Oid": []},
            "segmentMembership": {"ups": {HIGH_VALUE: {"status": "realized"}}},
        },
        {
            "identityMap": {"Oid": {"id": "5"}},
            "segmentMembership": {"ups": {HIGH_VALUE: {"status": "realized"}}},
        },
        {
            "identityMap": [{"id": "5"}],
            "segmentMembership": {"ups": {HIGH_VALUE: {"status": "realized"}}},
        },
    ],
    ids=[
        "no-identityMap",
        "empty-identityMap",
        "empty-Oid-list",
        "Oid-not-a-list",
        "identityMap-a-list",
    ],
)
def test_missing_identity_is_skipped(data: dict[str, Any]) -> None:
    result = render("outreach", "--profiles", "-", stdin=jsonl(data))
    assert result.stdout == ""
    assert stderr_lines(result)[1:3] == [
        "skipped line 1: no valid OutreachId: none given",
        NOT_SENT,
    ]


@pytest.mark.parametrize(("oid", "shown"), [(True, "true"), (None, "null")])
def test_bad_identity_reason_uses_json_spelling(oid: Any, shown: str) -> None:
    result = render("outreach", "--profiles", "-", stdin=jsonl(profile([oid], high="realized")))
    assert (
        stderr_lines(result)[1]
        == f"skipped line 1: no valid OutreachId: {shown} is not a non-empty string"
    )


def test_json_integer_identity_is_accepted() -> None:
    result = render("outreach", "--profiles", "-", stdin=jsonl(profile([1009], high="realized")))
    assert [r["url"] for r in json_lines(result)] == [
        "https://api.outreach.io/api/v2/prospects/1009"
    ]


def test_invalid_identity_next_to_a_valid_one_is_dropped() -> None:
    data = profile(["12/../../users", "1009", "1009"], high="realized")
    result = render("outreach", "--profiles", "-", stdin=jsonl(data))
    assert [r["url"] for r in json_lines(result)] == [
        "https://api.outreach.io/api/v2/prospects/1009"
    ]


# --- formats ---------------------------------------------------------------------------

ADA = jsonl(profile(["1001"], "Ada", "Lovelace", high="realized"))
ADA_BODY = """\
{
  "data": {
    "type": "prospect",
    "id": 1001,
    "attributes": {
      "firstName": "Ada",
      "lastName": "Lovelace",
      "custom7": "realized"
    }
  }
}"""


def test_format_http_exact() -> None:
    result = render("outreach", "--format", "http", "--profiles", "-", stdin=ADA)
    assert result.exit_code == 0
    assert result.stdout_bytes == (
        b"PATCH /api/v2/prospects/1001 HTTP/1.1\r\n"
        b"Host: api.outreach.io\r\n"
        b"Content-Type: application/vnd.api+json\r\n"
        b"Authorization: Bearer [REDACTED]\r\n"
        b"Accept: application/vnd.api+json\r\n"
        b"Content-Length: 169\r\n"
        b"\r\n" + ADA_BODY.encode() + b"\r\n\n"
    )
    assert len(ADA_BODY) == 169
    assert stderr_lines(result) == [*USING_ACTIVATION, *summary(1, 1, "0 skipped", 1)]


def test_format_http_content_length_counts_bytes() -> None:
    data = jsonl(profile(["1006"], "Zoë", "Skłodowska 😀", high="realized"))
    result = render("outreach", "--format", "http", "--profiles", "-", stdin=data)
    head, body = result.stdout_bytes.split(b"\r\n\r\n")
    body = body.removesuffix(b"\r\n\n")
    assert head.split(b"\r\n")[-1] == f"Content-Length: {len(body)}".encode()
    assert len(body) > len(body.decode())


def test_format_pretty_exact() -> None:
    result = render("outreach", "--format", "pretty", "--profiles", "-", stdin=ADA)
    assert result.exit_code == 0
    assert result.stdout == textwrap.dedent(
        """\
        PATCH https://api.outreach.io/api/v2/prospects/1001    # line 1
        Content-Type: application/vnd.api+json
        Authorization: Bearer [REDACTED]
        Accept: application/vnd.api+json
        {
          "data": {
            "type": "prospect",
            "id": 1001,
            "attributes": {
              "firstName": "Ada",
              "lastName": "Lovelace",
              "custom7": "realized"
            }
          }
        }
        """
    )
    assert "\x1b" not in result.stdout
    assert stderr_lines(result) == [*USING_ACTIVATION, *summary(1, 1, "0 skipped", 1)]


@pytest.mark.parametrize("fmt", ["json", "http", "pretty"])
def test_secrets_are_redacted_in_every_format(fmt: str) -> None:
    result = render("outreach", "--format", fmt)
    assert result.exit_code == 0
    output = result.stdout
    authorizations = re.findall(r'"?Authorization"?: "?([^"\r\n]*)', output)
    assert authorizations == ["Bearer [REDACTED]"] * 6
    assert output.count("Bearer") == 6


# --- options ---------------------------------------------------------------------------


def test_limit() -> None:
    result = render("outreach", "--limit", "4")
    assert [r["url"].rsplit("/", 1)[1] for r in json_lines(result)] == [
        "1001",
        "1002",
        "1003",
        "1004",
        "1005",
    ]
    assert stderr_lines(result) == [*USING, *summary(4, 4, "0 skipped", 5)]


def test_limit_zero() -> None:
    result = render("outreach", "--limit", "0")
    assert result.stdout == ""
    assert stderr_lines(result) == [*USING, *summary(0, 0, "0 skipped", 0)]


def test_limit_must_not_be_negative() -> None:
    result = render("outreach", "--limit", "-1")
    assert result.exit_code == 2
    assert "Invalid value for '--limit': -1 is not in the range x>=0." in result.stderr


def test_skipped_file(tmp_path: Path) -> None:
    target = tmp_path / "skipped.jsonl"
    result = render("outreach", "--skipped", str(target))
    assert result.exit_code == 0
    assert len(json_lines(result)) == 6
    assert stderr_lines(result) == [
        *USING,
        *summary(8, 5, "3 skipped (2 missing-identity, 1 no-audience)", 6),
    ]
    assert [json.loads(x) for x in target.read_text(encoding="utf-8").splitlines()] == [
        {
            "profile": "line 6",
            "category": "missing-identity",
            "reason": "no valid OutreachId: none given",
        },
        {
            "profile": "line 7",
            "category": "missing-identity",
            "reason": "no valid OutreachId: '12/../../users' does not match ^[1-9][0-9]{0,17}$",
        },
        {"profile": "line 8", "category": "no-audience", "reason": "not in any activated audience"},
    ]


def test_profiles_from_stdin() -> None:
    stdin = jsonl(
        profile(["1001"], "Ada", high="realized"),
        profile(["1003"], "Alan", trial="exited"),
    )
    result = render("outreach", "--profiles", "-", stdin=stdin)
    assert result.stdout == (
        line(prospect(1001, ["line 1"], firstName="Ada", custom7="realized"))
        + "\n"
        + line(prospect(1003, ["line 2"], firstName="Alan", custom12="exited"))
        + "\n"
    )
    assert stderr_lines(result) == [*USING_ACTIVATION, *summary(2, 2, "0 skipped", 2)]


def test_profiles_from_stdin_as_json_array() -> None:
    stdin = json.dumps(
        [profile(["1001"], "Ada", high="realized"), [], profile(["1003"], trial="exited")]
    )
    result = render("outreach", "--profiles", "-", stdin=stdin)
    assert [r["profiles"] for r in json_lines(result)] == [["item 1"], ["item 3"]]
    assert stderr_lines(result) == [
        *USING_ACTIVATION,
        "skipped item 2: not a JSON object but a list",
        *summary(3, 2, "1 skipped (1 invalid-record)", 2),
    ]


def test_json_array_file() -> None:
    result = render("outreach", "--profiles", "tests/data/profiles/outreach-array.json")
    assert result.exit_code == 0
    assert result.stdout == (
        line(prospect(1001, ["item 1"], firstName="Ada", lastName="Lovelace", custom7="realized"))
        + "\n"
        + line(prospect(1003, ["item 3"], firstName="Alan", custom12="exited"))
        + "\n"
    )
    assert stderr_lines(result) == [
        *USING_ACTIVATION,
        "skipped item 2: not a JSON object but a string",
        *summary(3, 2, "1 skipped (1 invalid-record)", 2),
    ]


def test_jsonl_with_bad_lines_goes_on() -> None:
    result = render("outreach", "--profiles", "tests/data/profiles/outreach-broken.jsonl")
    assert result.exit_code == 0
    assert result.stdout == (
        line(prospect(1001, ["line 1"], firstName="Ada", lastName="Lovelace", custom7="realized"))
        + "\n"
        + line(prospect(1003, ["line 8"], firstName="Alan", custom12="exited"))
        + "\n"
    )
    assert stderr_lines(result) == [
        *USING_ACTIVATION,
        "skipped line 2: invalid JSON: Expecting property name enclosed in double quotes at column 43",
        "skipped line 3: not a JSON object but a list",
        "skipped line 5: not a JSON object but a string",
        "skipped line 6: not a JSON object but a number",
        "skipped line 7: not a JSON object but null",
        *summary(7, 2, "5 skipped (5 invalid-record)", 2),
    ]


def test_jsonl_line_that_is_not_utf8() -> None:
    result = CliRunner().invoke(
        main, ["render", "outreach", "--profiles", "-"], input=b'{"a": "\xff"}\n' + ADA.encode()
    )
    assert [r["profiles"] for r in json_lines(result)] == [["line 2"]]
    assert stderr_lines(result)[1] == (
        "skipped line 1: not UTF-8 text (byte 7); save the file as UTF-8"
    )


def test_jsonl_truncated_line_column() -> None:
    result = render("outreach", "--profiles", "-", stdin='{"identityMap": \n' + ADA)
    assert stderr_lines(result)[1] == "skipped line 1: invalid JSON: Expecting value at column 17"


def test_truncated_json_array_is_one_line() -> None:
    stdin = "[" + json.dumps(profile(["1001"], high="realized")) + ', {"x": '
    result = render("outreach", "--profiles", "-", stdin=stdin)
    assert len(json_lines(result)) == 1
    lines = stderr_lines(result)
    assert lines[1].startswith("skipped after item 1: invalid JSON")
    assert lines[1].endswith("; the rest of the file cannot be read")
    assert lines[2:] == summary(2, 1, "1 skipped (1 invalid-record)", 1)


def test_profiles_file_missing() -> None:
    result = render("outreach", "--profiles", "tests/data/profiles/nope.jsonl")
    assert result.exit_code == 2
    assert stderr_lines(result) == [
        *USING_ACTIVATION,
        "error: tests/data/profiles/nope.jsonl: no such file",
    ]


# --- profiles that Python reads but JSON does not have, and file encodings ----------------

GRACE = jsonl(profile(["1002"], "Grace", high="realized"))
GRACE_ONLY = line(prospect(1002, ["line 2"], firstName="Grace", custom7="realized")) + "\n"


def render_bytes(tmp_path: Path, name: str, data: bytes) -> Result:
    """Render the profiles file `name` holding `data`."""
    (tmp_path / name).write_bytes(data)
    return render("outreach", "--profiles", str(tmp_path / name))


def with_first_name(value: str) -> str:
    """ADA's line with `value` (raw JSON text) as her first name."""
    return ADA.replace('"Ada"', value)


@pytest.mark.parametrize(
    ("escape", "named"),
    [(r"\ud800", r"\ud800"), (r"x\uDFFF", r"\udfff"), (r"\ud83d x", r"\ud83d")],
)
def test_jsonl_unpaired_surrogate_is_skipped(escape: str, named: str) -> None:
    result = render("outreach", "--profiles", "-", stdin=with_first_name(f'"{escape}"') + GRACE)
    assert (result.exit_code, result.stdout) == (0, GRACE_ONLY)
    assert stderr_lines(result) == [
        *USING_ACTIVATION,
        f"skipped line 1: contains {named}, an unpaired surrogate escape, which is not valid text",
        *summary(2, 1, "1 skipped (1 invalid-record)", 1),
    ]


def test_jsonl_paired_surrogates_and_escaped_backslashes_are_text() -> None:
    stdin = with_first_name(r'"Ada \ud83d\ude00 \\ud800"')
    result = render("outreach", "--profiles", "-", stdin=stdin)
    assert json_lines(result)[0]["body"]["data"]["attributes"]["firstName"] == "Ada 😀 \\ud800"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("NaN", "NaN is not a JSON value"),
        ("Infinity", "Infinity is not a JSON value"),
        ("-Infinity", "-Infinity is not a JSON value"),
        ("1e999", "the number 1e999 is too large (it would be Infinity;"),
    ],
)
def test_jsonl_nan_and_infinity_are_skipped(value: str, reason: str) -> None:
    result = render("outreach", "--profiles", "-", stdin=with_first_name(value) + GRACE)
    assert (result.exit_code, result.stdout) == (0, GRACE_ONLY)
    lines = stderr_lines(result)
    assert lines[1].startswith(f"skipped line 1: invalid JSON: {reason}")
    assert lines[1].endswith("JSON has no NaN, Infinity or -Infinity)")
    assert lines[2:] == summary(2, 1, "1 skipped (1 invalid-record)", 1)


def test_json_array_nan_says_so_and_where() -> None:
    text = "[" + ADA + "," + with_first_name("NaN") + "]"
    result = render("outreach", "--profiles", "-", stdin=text)
    assert [r["profiles"] for r in json_lines(result)] == [["item 1"]]
    at = text.index("NaN")
    assert stderr_lines(result)[1] == (
        f"skipped after item 1: NaN (byte {at}) is not a JSON value"
        " (JSON has no NaN, Infinity or -Infinity); the rest of the file cannot be read"
    )


def test_jsonl_nested_too_deeply_is_skipped() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    result = render("outreach", "--profiles", "-", stdin=with_first_name(deep) + GRACE)
    assert (result.exit_code, result.stdout) == (0, GRACE_ONLY)
    assert stderr_lines(result)[1] == (
        "skipped line 1: nested too deeply"
        " (objects and arrays more than 100 levels inside each other)"
    )


def test_jsonl_depth_limit_counts_levels_not_brackets_in_strings() -> None:
    at_limit = '{"a": ' + "[" * 99 + '"]]]{{{"' + "]" * 99 + "}\n"
    over = '{"a": ' + "[" * 100 + "]" * 100 + "}\n"
    result = render("outreach", "--profiles", "-", stdin=at_limit + over)
    assert stderr_lines(result)[1:3] == [
        "skipped line 1: no valid OutreachId: none given",
        "skipped line 2: nested too deeply"
        " (objects and arrays more than 100 levels inside each other)",
    ]


def test_json_array_nested_too_deeply_stops_there() -> None:
    text = "[" + ADA + "," + with_first_name("[" * 20_000 + "]" * 20_000) + "," + ADA + "]"
    result = render("outreach", "--profiles", "-", stdin=text)
    assert [r["profiles"] for r in json_lines(result)] == [["item 1"]]
    at = text.index("[[") + 97  # the item, person and name are 3 levels: this bracket is 101
    assert stderr_lines(result)[1] == (
        f"skipped after item 1: an item (byte {at}) is nested too deeply (objects and arrays"
        " more than 100 levels inside each other); the rest of the file cannot be read"
    )


@pytest.mark.parametrize("name", ["bom.jsonl", "bom.json"])
def test_utf8_byte_order_mark_is_accepted(tmp_path: Path, name: str) -> None:
    text = ADA + GRACE if name.endswith("jsonl") else "[" + ADA + "," + GRACE + "]"
    result = render_bytes(tmp_path, name, b"\xef\xbb\xbf" + text.encode())
    assert result.exit_code == 0
    assert len(json_lines(result)) == 2
    assert stderr_lines(result) == [*USING_ACTIVATION, *summary(2, 2, "0 skipped", 2)]


def test_byte_order_mark_inside_jsonl_from_joined_files(tmp_path: Path) -> None:
    result = render_bytes(tmp_path, "joined.jsonl", (ADA + "\ufeff" + GRACE).encode())
    assert [r["profiles"] for r in json_lines(result)] == [["line 1"], ["line 2"]]


@pytest.mark.parametrize(
    ("encoding", "bom", "says"),
    [
        ("utf-16-le", b"\xff\xfe", "UTF-16"),
        ("utf-16-be", b"\xfe\xff", "UTF-16"),
        ("utf-16-le", b"", "UTF-16"),
        ("utf-32-le", b"\xff\xfe\x00\x00", "UTF-32"),
        ("utf-32-be", b"", "UTF-32"),
    ],
)
def test_utf16_and_utf32_files_are_refused(
    tmp_path: Path, encoding: str, bom: bytes, says: str
) -> None:
    result = render_bytes(tmp_path, "wide.jsonl", bom + (ADA + GRACE).encode(encoding))
    assert result.exit_code == 2
    assert result.stdout == ""
    how = " (in PowerShell: Out-File -Encoding utf8)" if says == "UTF-16" else ""
    assert stderr_lines(result) == [
        *USING_ACTIVATION,
        f"error: {tmp_path / 'wide.jsonl'}: the file is {says} text; save it as UTF-8{how}",
    ]


def test_utf16_on_stdin_is_refused() -> None:
    result = CliRunner().invoke(
        main, ["render", "outreach", "--profiles", "-"], input=ADA.encode("utf-16")
    )
    assert result.exit_code == 2
    assert stderr_lines(result)[-1] == "error: stdin: the input is UTF-16 text; save it as UTF-8"


def test_json_array_not_utf8_gives_the_byte() -> None:
    data = ("[" + ADA + "," + ADA.replace("Ada", "Adé") + "]").encode("latin-1")
    result = CliRunner().invoke(main, ["render", "outreach", "--profiles", "-"], input=data)
    assert [r["profiles"] for r in json_lines(result)] == [["item 1"]]
    at = data.index("é".encode("latin-1"))
    assert stderr_lines(result)[1] == (
        f"skipped after item 1: not UTF-8 text (byte {at});"
        " the rest of the file cannot be read: save it as UTF-8"
    )


def test_leading_blank_lines_keep_line_numbers() -> None:
    result = render("outreach", "--profiles", "-", stdin="\n" * 100 + ADA + "  \n" + GRACE)
    assert [r["profiles"] for r in json_lines(result)] == [["line 101"], ["line 103"]]


# --- sample profiles -------------------------------------------------------------------


def test_sample_is_deterministic_and_renders() -> None:
    first = render("outreach", "--sample", "5", "--seed", "1")
    again = render("outreach", "--sample", "5", "--seed", "1")
    other = render("outreach", "--sample", "5", "--seed", "2")
    assert first.exit_code == again.exit_code == other.exit_code == 0
    assert first.stdout == again.stdout
    assert first.stdout != other.stdout
    for result in (first, other):
        requests = json_lines(result)
        assert [r["profiles"] for r in requests] == [[f"sample {n}"] for n in range(1, 6)]
        assert stderr_lines(result) == [*USING_ACTIVATION, *summary(5, 5, "0 skipped", 5)]
        for n, request in enumerate(requests, 1):
            data = request["body"]["data"]
            assert request["url"] == f"https://api.outreach.io/api/v2/prospects/{data['id']}"
            assert OUTREACH_ID.fullmatch(str(data["id"]))
            attributes = data["attributes"]
            assert attributes["firstName"] == f"Sample firstName {n}"
            assert attributes["lastName"] == f"Sample lastName {n}"
            statuses = {k: v for k, v in attributes.items() if k.startswith("custom")}
            assert statuses
            assert set(statuses) <= {"custom7", "custom12"}
            assert set(statuses.values()) <= {"realized", "exited"}


# --- validate --activation -------------------------------------------------------------

GOOD_AUDIENCE = '{"id": "8b1f2c3a-4d5e-4f60-8a71-92b3c4d5e6f7", "mappingId": 7}'
MAPPING_ID_HINT = (
    "(The number N of the Outreach prospect custom field customN (1 to 150)"
    " that receives the audience status.)"
)


def validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, spec: str = "outreach"
) -> Result:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "act.json").write_text(textwrap.dedent(text), encoding="utf-8")
    return invoke("validate", "--activation", "act.json", spec)


def activation(mappings: str, audiences: str, extra: str = "") -> str:
    return (
        "{\n"
        '  "destination": "outreach",\n'
        '  "connection": "acme-sales",\n'
        f"{extra}"
        '  "mappings": [\n'
        f"    {mappings}\n"
        "  ],\n"
        '  "audiences": [\n'
        f"    {audiences}\n"
        "  ]\n"
        "}\n"
    )


OID = '{"source": "identityMap.Oid", "target": "OutreachId"}'
MISSING_IDENTITY = (
    "act.json:4:15: /mappings: no mapping to the required identity OutreachId;"
    ' add one like {"source": "identityMap.<namespace>", "target": "OutreachId"}'
)


def test_validate_good_activation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(tmp_path, monkeypatch, activation(OID, GOOD_AUDIENCE))
    assert (result.exit_code, result.stdout) == (0, "outreach: valid (0 errors, 0 warnings)\n")


def test_validate_missing_required_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = activation('{"source": "person.name.firstName", "target": "firstName"}', GOOD_AUDIENCE)
    result = validate(tmp_path, monkeypatch, text)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == MISSING_IDENTITY
    assert result.stdout.splitlines()[-1].startswith("outreach: invalid (")


def test_validate_missing_required_identity_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = activation('{"source": "person.name.firstName", "target": "firstName"}', GOOD_AUDIENCE)
    result = validate(tmp_path, monkeypatch, text)
    assert result.stdout == f"{MISSING_IDENTITY}\noutreach: invalid (1 error, 0 warnings)\n"


def test_validate_unknown_target_attribute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mappings = OID + ',\n    {"source": "person.name.firstName", "target": "firstNme"}'
    result = validate(tmp_path, monkeypatch, activation(mappings, GOOD_AUDIENCE))
    assert result.exit_code == 1
    assert result.stdout == (
        "act.json:6:51: /mappings/1/target: 'firstNme' is neither an identity namespace nor a"
        " target attribute of outreach; did you mean 'firstName'?\n"
        "outreach: invalid (1 error, 0 warnings)\n"
    )


def test_validate_unknown_target_attribute_without_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mappings = OID + ',\n    {"source": "loyalty.xyz", "target": "xyz"}'
    result = validate(tmp_path, monkeypatch, activation(mappings, GOOD_AUDIENCE))
    assert result.stdout == (
        "act.json:6:41: /mappings/1/target: 'xyz' is neither an identity namespace nor a"
        " target attribute of outreach\n"
        "outreach: invalid (1 error, 0 warnings)\n"
    )


@pytest.mark.parametrize(
    ("mapping_id", "column", "message"),
    [
        ("0", 65, f"Mapping ID 0 is out of range from 1 to 150 {MAPPING_ID_HINT}"),
        ("151", 65, f"Mapping ID 151 is out of range from 1 to 150 {MAPPING_ID_HINT}"),
        ('"7"', 65, f"Mapping ID '7' must be an integer from 1 to 150 {MAPPING_ID_HINT}"),
        ("7.5", 65, "must be an integer or a string, not a number (7.5)"),
    ],
    ids=["zero", "151", "string-7", "float"],
)
def test_validate_bad_mapping_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mapping_id: str, column: int, message: str
) -> None:
    audience = f'{{"id": "8b1f2c3a-4d5e-4f60-8a71-92b3c4d5e6f7", "mappingId": {mapping_id}}}'
    result = validate(tmp_path, monkeypatch, activation(OID, audience))
    assert result.exit_code == 1
    assert result.stdout == (
        f"act.json:8:{column}: /audiences/0/mappingId: {message}\n"
        "outreach: invalid (1 error, 0 warnings)\n"
    )


def test_validate_duplicate_mapping_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audiences = (
        GOOD_AUDIENCE + ',\n    {"id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "mappingId": 7}'
    )
    result = validate(tmp_path, monkeypatch, activation(OID, audiences))
    assert result.exit_code == 1
    assert result.stdout == (
        "act.json:9:65: /audiences/1/mappingId: Mapping ID 7 is already used by audience"
        " '8b1f2c3a-4d5e-4f60-8a71-92b3c4d5e6f7' (/audiences/0); each audience needs its own\n"
        "outreach: invalid (1 error, 0 warnings)\n"
    )


def test_validate_unknown_customer_data_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = activation(OID, GOOD_AUDIENCE, extra='  "customerData": {"region": "eu"},\n')
    result = validate(tmp_path, monkeypatch, text)
    assert result.exit_code == 1
    assert result.stdout == (
        "act.json:4:20: /customerData/region: unknown customer data field 'region';"
        " outreach has none\n"
        "outreach: invalid (1 error, 0 warnings)\n"
    )


def test_validate_unknown_customer_data_field_did_you_mean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = str(DATA / "destinations" / "example-audiences.json")
    text = """\
    {
      "destination": "example-audiences",
      "connection": "demo",
      "customerData": {"accountId": "acct_demo", "acountId": "acct_x"},
      "mappings": [{"source": "identityMap.Email", "target": "Email"}],
      "audiences": [{"id": "aud-1", "mappingId": "newsletter"}]
    }
    """
    result = validate(tmp_path, monkeypatch, text, spec)
    assert result.exit_code == 1
    assert result.stdout == (
        "act.json:4:46: /customerData/acountId: unknown customer data field 'acountId';"
        " did you mean 'accountId'?\n"
        f"{spec}: invalid (1 error, 0 warnings)\n"
    )


def test_validate_activation_for_another_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = activation(OID, GOOD_AUDIENCE).replace('"outreach"', '"hubspot"')
    result = validate(tmp_path, monkeypatch, text)
    assert result.exit_code == 1
    assert result.stdout == (
        "act.json:2:18: /destination: this activation is for 'hubspot', not 'outreach'\n"
        "outreach: invalid (1 error, 0 warnings)\n"
    )


def test_validate_attribute_on_an_audience_custom_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mappings = OID + ',\n    {"source": "person.note", "target": "custom7"}'
    result = validate(tmp_path, monkeypatch, activation(mappings, GOOD_AUDIENCE))
    assert result.exit_code == 1
    assert result.stdout == (
        "act.json:6:41: /mappings/1/target: 'custom7' receives the status of audience"
        " '8b1f2c3a-4d5e-4f60-8a71-92b3c4d5e6f7' (Mapping ID 7); map this field to another"
        " attribute or give the audience another Mapping ID\n"
        "outreach: invalid (1 error, 0 warnings)\n"
    )


def test_render_duplicate_body_key_is_not_silent(tmp_path: Path) -> None:
    """A spec that does not declare mappingIdAttribute: render itself refuses the clash."""
    spec = json.loads((ROOT / "destinations" / "outreach.json").read_text(encoding="utf-8"))
    del spec["segmentMappingConfig"]["mappingIdAttribute"]
    (tmp_path / "destinations").mkdir()
    (tmp_path / "destinations" / "outreach.json").write_text(json.dumps(spec), encoding="utf-8")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    act = tmp_path / "act.json"
    act.write_text(
        activation(OID + ',\n    {"source": "person.note", "target": "custom7"}', GOOD_AUDIENCE),
        encoding="utf-8",
    )
    data = profile(["1001"], high="realized")
    data["person"] = {"note": "hello"}
    spec_path = str(tmp_path / "destinations" / "outreach.json")
    result = render(spec_path, "--activation", str(act), "--profiles", "-", stdin=jsonl(data))
    sent = [r["body"]["data"]["attributes"] for r in json_lines(result)]
    assert sent == [] or sent[0].get("custom7") == "hello"
    assert "skipped line 1" in result.stderr


@pytest.mark.parametrize(
    "expression",
    [
        '"{{ input.profile.attributes.lastName.value }}"',
        "{{ input.profile.attributes.lastName | raw }}",
    ],
    ids=["value", "raw"],
)
def test_missing_attribute_render_error_names_the_expression(
    tmp_path: Path, expression: str
) -> None:
    spec = json.loads((ROOT / "destinations" / "outreach.json").read_text(encoding="utf-8"))
    spec["destinationServer"]["httpTemplate"]["requestBody"] = {
        "templatingStrategy": "JINJA",
        "value": '{"data": {"type": "prospect", "attributes": {"lastName": ' + expression + "}}}",
    }
    (tmp_path / "destinations").mkdir()
    (tmp_path / "destinations" / "outreach.json").write_text(json.dumps(spec, indent=2))
    data = profile(["1003"], "Alan", trial="exited")  # no lastName
    result = render(
        str(tmp_path / "destinations" / "outreach.json"),
        "--activation",
        str(EXAMPLE_ACTIVATION),
        "--profiles",
        "-",
        stdin=jsonl(data),
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    [reason] = [x for x in stderr_lines(result) if x.startswith("skipped line 1: ")]
    assert "input.profile.attributes.lastName" in reason
    assert "engine.templating" not in reason


# --- render errors: not a skip by design -------------------------------------------------


def spec_reading_last_name(folder: Path) -> str:
    """The Outreach spec with a body that reads lastName, which a profile may not have."""
    spec = json.loads((ROOT / "destinations" / "outreach.json").read_text(encoding="utf-8"))
    spec["destinationServer"]["httpTemplate"]["requestBody"] = {
        "templatingStrategy": "JINJA",
        "value": '{"data": {"type": "prospect", "attributes": {"lastName":'
        ' "{{ input.profile.attributes.lastName.value }}"}}}',
    }
    path = folder / "outreach.json"
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return str(path)


LAST_NAME_ERROR = (
    "/destinationServer/httpTemplate/requestBody/value: 'lastName' is missing in this profile"
    ' (in `{"data": {"type": "prospect", "attributes": {"lastName":'
    ' "{{ input.profile.attributes.lastName.value }}"}}}`)'
)


@pytest.mark.parametrize("to_file", [False, True], ids=["stderr", "skipped-file"])
def test_render_error_is_shown_and_exits_1(tmp_path: Path, to_file: bool) -> None:
    """The other profiles still render; the render error is on stderr even with --skipped."""
    spec = spec_reading_last_name(tmp_path)
    stdin = jsonl(
        profile(["1001"], "Ada", "Lovelace", high="realized"),
        profile(["1003"], "Alan", trial="exited"),
        profile(None, "Nobody", high="realized"),
    )
    skipped = tmp_path / "skipped.jsonl"
    extra = ["--skipped", str(skipped)] if to_file else []
    result = render(spec, "--activation", ALL_FIELDS, "--profiles", "-", *extra, stdin=stdin)
    assert result.exit_code == 1
    assert [r["profiles"] for r in json_lines(result)] == [["line 1"]]
    error = f"skipped line 2: {spec} {LAST_NAME_ERROR}"
    not_sent = "skipped line 3: no valid OutreachId: none given"
    assert stderr_lines(result) == [
        error,
        *([] if to_file else [not_sent]),
        *summary(3, 1, "2 skipped (1 missing-identity, 1 render-error)", 1),
    ]
    if to_file:
        assert [json.loads(x)["category"] for x in skipped.read_text().splitlines()] == [
            "render-error",
            "missing-identity",
        ]


# --- output files: never an input, writable before any work ------------------------------


@pytest.mark.parametrize(
    ("which", "args"),
    [
        ("profiles", ["--profiles", "{file}"]),
        ("activation", ["--activation", "{file}"]),
        ("spec", ["{file}"]),
    ],
)
def test_skipped_file_that_is_an_input_is_refused(
    tmp_path: Path, which: str, args: list[str]
) -> None:
    sources = {
        "profiles": EXAMPLE_PROFILES,
        "activation": EXAMPLE_ACTIVATION,
        "spec": Path(spec_reading_last_name(tmp_path)),  # inline templates: a spec on its own
    }
    file = tmp_path / sources[which].name
    if which != "spec":
        shutil.copy(sources[which], file)
    before = file.read_bytes()
    spec = [] if which == "spec" else ["outreach"]
    args = [a.format(file=file) for a in args]
    result = render(*spec, *args, "--skipped", str(tmp_path / ".." / tmp_path.name / file.name))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert stderr_lines(result)[-1] == (
        f"error: --skipped {tmp_path}/../{tmp_path.name}/{file.name} is the {which} file;"
        " choose another file"
    )
    assert file.read_bytes() == before


def test_skipped_file_that_is_the_bundled_example_is_refused() -> None:
    before = EXAMPLE_PROFILES.read_bytes()
    result = render("outreach", "--skipped", "examples/outreach/profiles.jsonl")
    assert result.exit_code == 2
    assert stderr_lines(result) == [
        *USING,
        "error: --skipped examples/outreach/profiles.jsonl is the profiles file;"
        " choose another file",
    ]
    assert EXAMPLE_PROFILES.read_bytes() == before


def test_skipped_file_in_a_missing_folder(tmp_path: Path) -> None:
    target = tmp_path / "nodir" / "skipped.jsonl"
    result = render("outreach", "--skipped", str(target))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert stderr_lines(result) == [
        *USING,
        f"error: cannot write {target}: the folder {tmp_path / 'nodir'} does not exist",
    ]


def test_skipped_file_that_is_a_folder(tmp_path: Path) -> None:
    result = render("outreach", "--skipped", str(tmp_path))
    assert result.exit_code == 2
    assert stderr_lines(result)[-1] == (
        f"Error: Invalid value for '--skipped': File '{tmp_path}' is a directory."
    )


def test_missing_profiles_file_does_not_touch_the_skipped_file(tmp_path: Path) -> None:
    skipped = tmp_path / "skipped.jsonl"
    skipped.write_text("kept\n", encoding="utf-8")
    result = render("outreach", "--profiles", "nope.jsonl", "--skipped", str(skipped))
    assert result.exit_code == 2
    assert stderr_lines(result) == [*USING_ACTIVATION, "error: nope.jsonl: no such file"]
    assert skipped.read_text(encoding="utf-8") == "kept\n"


# --- options that would have no effect are refused -----------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--sample", "3", "--profiles", "x.jsonl"],
            "--profiles cannot go with --sample, which renders generated profiles instead",
        ),
        (["--seed", "7"], "--seed goes with --sample: it seeds the generated profiles"),
        (["--connection", "x"], "--connection goes with --diff: render itself reads no ledger"),
        (["--state", "x.sqlite"], "--state goes with --diff: render itself reads no ledger"),
        (
            ["--diff", "--format", "http"],
            "--format does not apply to --diff, which shows changes, not requests",
        ),
        (
            ["--diff", "--skipped", "s.jsonl"],
            "--skipped does not apply to --diff, which shows changes, not requests",
        ),
        (
            ["--template", "templates/outreach/prospect.json.j2", "--profiles", "x.jsonl"],
            "--profiles does not apply to --template, which renders --target-profiles",
        ),
        (
            ["--skipped", "-"],
            "--skipped takes a file, not -: stdout carries the requests, and without"
            " --skipped the skipped profiles go to stderr",
        ),
    ],
)
def test_option_without_effect_is_a_usage_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["render", "outreach", *args], prog_name="dest-engine")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "Usage: dest-engine render [OPTIONS] SPEC\n"
        "Try 'dest-engine render --help' for help.\n\n"
        f"Error: {message}\n"
    )
    assert not Path("-").exists()


def test_sample_with_seed_and_limit_still_works() -> None:
    result = render("outreach", "--sample", "3", "--seed", "7", "--limit", "2")
    assert result.exit_code == 0
    assert [r["profiles"] for r in json_lines(result)] == [["sample 1"], ["sample 2"]]


# --- render --template ---------------------------------------------------------------------

PROSPECT_TEMPLATE = "templates/outreach/prospect.json.j2"
TARGET_ADA = {
    "identityMap": {"OutreachId": [{"id": "1001"}]},
    "attributes": {"firstName": {"value": "Ada"}},
    "segmentMembership": {"ups": {HIGH_VALUE: {"status": "realized"}}},
}


def render_template_cli(tmp_path: Path, targets: str | bytes, *extra: str) -> Result:
    path = tmp_path / "targets.json"
    if isinstance(targets, bytes):
        path.write_bytes(targets)
    else:
        path.write_text(targets, encoding="utf-8")
    args = ["--template", PROSPECT_TEMPLATE, "--target-profiles", str(path), *extra]
    return render("outreach", *args)


ADA_GROUP = """\
--- group 1, aggregationKey null
{
  "data": {
    "type": "prospect",
    "id": 1001,
    "attributes": {
      "firstName": "Ada",
      "custom7": "realized"
    }
  }
}
"""


@pytest.mark.parametrize("bom", [False, True], ids=["utf-8", "utf-8-bom"])
def test_template_without_activation_uses_the_bundled_example(tmp_path: Path, bom: bool) -> None:
    targets = ("\ufeff" if bom else "") + json.dumps([TARGET_ADA])
    result = render_template_cli(tmp_path, targets)
    assert result.exit_code == 0
    assert result.stdout == ADA_GROUP
    assert stderr_lines(result) == [*USING_ACTIVATION, "1 target profile: 1 group rendered"]


def test_template_with_activation(tmp_path: Path) -> None:
    result = render_template_cli(tmp_path, json.dumps([TARGET_ADA]), "--activation", ALL_FIELDS)
    assert result.exit_code == 0
    assert result.stdout == ADA_GROUP
    assert stderr_lines(result) == ["1 target profile: 1 group rendered"]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ("[{", "targets.json:1:3: invalid JSON: Expecting property name enclosed in double quotes"),
        ('{"a": 1}', "targets.json:1:1: give a JSON array of target profiles"),
        ("[{}, \n 1]", "targets.json:2:2: item 2: not a JSON object but a number"),
        (
            '[{"identityMap": 5}]',
            "targets.json:1:2: item 1: identityMap is a number, not an object",
        ),
        (
            '[{"identityMap": {"OutreachId": ["1001"]}}]',
            'targets.json:1:2: item 1: identityMap.OutreachId is not [{"id": ...}]',
        ),
        (
            '[{"segmentMembership": {"ups": {"a": "realized"}}}]',
            'targets.json:1:2: item 1: segmentMembership.ups is not {audience id: {"status": ...}}',
        ),
    ],
)
def test_template_invalid_target_profiles(tmp_path: Path, targets: str, message: str) -> None:
    result = render_template_cli(tmp_path, targets)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert stderr_lines(result) == [*USING_ACTIVATION, f"{tmp_path}/{message}"]


def test_template_target_profiles_not_utf8(tmp_path: Path) -> None:
    result = render_template_cli(tmp_path, "[]".encode("utf-16"))
    assert result.exit_code == 2
    assert stderr_lines(result) == [
        *USING_ACTIVATION,
        f"error: {tmp_path}/targets.json: the file is UTF-16 text; save it as UTF-8"
        " (in PowerShell: Out-File -Encoding utf8)",
    ]


def test_template_target_profiles_not_utf8_at_all(tmp_path: Path) -> None:
    result = render_template_cli(tmp_path, b'[{"a": "\xe9"}]')
    assert result.exit_code == 2
    assert stderr_lines(result) == [
        *USING_ACTIVATION,
        f"error: {tmp_path}/targets.json: not UTF-8 text (byte 8); save it as UTF-8",
    ]


def test_template_for_a_spec_without_a_bundled_example(tmp_path: Path) -> None:
    """No example activation to take aliases from: the template renders without them."""
    template = tmp_path / "t.j2"
    template.write_text('{"emails": {{ input.profile.identityMap.email | tojson }}}\n')
    targets = tmp_path / "targets.json"
    targets.write_text('[{"identityMap": {"email": [{"id": "a@example.com"}]}}]')
    args = ["--template", str(template), "--target-profiles", str(targets)]
    result = render("tests/data/destinations/dsdk-single.json", *args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        '--- group 1, aggregationKey null\n{"emails": [{"id": "a@example.com"}]}\n'
    )
    assert stderr_lines(result) == ["1 target profile: 1 group rendered"]


def test_template_profile_with_no_identity_says_why(tmp_path: Path) -> None:
    result = render_template_cli(tmp_path, "[{}]")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert stderr_lines(result) == [
        *USING_ACTIVATION,
        "skipped item 1: no identity, and splitUserById sends one entry per identity",
        "1 target profile: 0 groups rendered",
    ]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            '{\n  "x": {{ input.profile.identityMap }\n}\n',
            "error: {file}:2: template syntax error: unexpected '}'",
        ),
        (
            '{\n  "x": "{{ "".__class__.__mro__ }}"\n}\n',
            "skipped item 1: {file}:2: access to attribute '__class__' of 'str' object is"
            ' unsafe. (in `"x": "{{ "".__class__.__mro__ }}"`)',
        ),
        (
            '{"x": "{{ destination.segmentAliases.nope }}"}',
            "skipped item 1: {file}:1: 'nope' is missing in this profile"
            ' (in `{"x": "{{ destination.segmentAliases.nope }}"}`)',
        ),
    ],
    ids=["syntax", "sandbox", "undefined"],
)
def test_template_errors_are_one_line(tmp_path: Path, template: str, message: str) -> None:
    file = tmp_path / "mine.json.j2"
    file.write_text(template, encoding="utf-8")
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps([TARGET_ADA]), encoding="utf-8")
    result = render("outreach", "--template", str(file), "--target-profiles", str(targets))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = stderr_lines(result)
    assert lines[:2] == [*USING_ACTIVATION, message.replace("{file}", str(file))]
    assert lines[2:] in ([], ["1 target profile: 0 groups rendered"])

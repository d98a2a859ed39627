"""The conformance kit: every destination in destinations/ must pass these checks.

Specs are discovered with a glob, so a new destination is covered as soon as its
spec file exists. A destination ships `examples/<name>/activation.json` (and
optionally `examples/<name>/profiles.jsonl`); the kit uses that activation to
render the bundled profiles and generated sample profiles.

For each destination:

- the spec validates with no errors;
- its example activation validates;
- the bundled example and sample profiles render; every JSON body parses and
  every URL is https on an allowed host;
- every error-rule example gets the rule, action, retry time and message it expects;
- hostile values (quotes, backslashes, newlines, `{{`, `</script>`, emoji, huge
  strings, `../`, `?x=`) in attributes and identities never change a body's
  shape, the headers or a URL's path; values that pass the namespace pattern
  appear unchanged or hashed, values that fail it never appear at all.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from engine.activation import Activation, check_activation, load_activation
from engine.mapping import Skipped
from engine.pipeline import Pipeline, redacted_auth_data
from engine.profiles import ProfileRecord, read_profiles
from engine.samples import sample_profiles
from engine.spec import Spec, check_spec, load_spec
from engine.templating import Request, host_allowed
from engine.translation import EXAMPLE_NOW, Response, render_message, translate

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "destinations").glob("*.json"))
NAMES = [p.stem for p in SPECS]


def _rule_examples() -> Iterator[Any]:
    for path in SPECS:
        data = json.loads(path.read_text(encoding="utf-8"))
        for rule in data.get("errorTranslation", []):
            for n, example in enumerate(rule.get("examples", [])):
                yield pytest.param(
                    path.stem, rule["name"], example, id=f"{path.stem}-{rule['name']}-{n}"
                )


HOSTILE = {
    "quotes": 'Marie "Curie" \'O\'Brien\' \\"escaped\\"',
    "backslashes": "C:\\temp\\new\\x00 \\u0022 trailing\\",
    "newlines": "line one\nline two\r\nline three\ttab\x0bvt",
    "control": "nul\x00bell\x07esc\x1b[31mred\x7f",
    "jinja": "{{ 7*7 }} {% raw %}{% endraw %} {# comment #} ${x} #{y}",
    "script": "</script><script>alert(1)</script><!--",
    "unicode": "Zoë 李 🎉 👩\u200d👩\u200d👧 \u2028\u2029 \ufeff",
    "huge": "x" * 40_000,
    "path": "../../../etc/passwd/..",
    "dots": "..",
    "query": "?x=1&y=2#frag",
    "encoded": "%2e%2e%2f%3F%23 %00",
    "json": '{"a": [1, 2]}, "b": null',
    "comma": "a,b;c|d",
}


# --- helpers ----------------------------------------------------------------------------


def spec_and_activation(name: str) -> tuple[Spec, Activation]:
    spec = load_spec(str(ROOT / "destinations" / f"{name}.json"))
    path = ROOT / "examples" / name / "activation.json"
    assert path.is_file(), (
        f"destination {name} must ship examples/{name}/activation.json for the conformance kit"
    )
    return spec, load_activation(path, spec)


def render(spec: Spec, activation: Activation, records: Any) -> list[Request | Skipped]:
    return list(Pipeline(spec, activation, redacted_auth_data(spec)).run(records))


def is_json_content(spec: Spec) -> bool:
    ctype = (spec.data["destinationServer"]["httpTemplate"].get("contentType") or "").lower()
    ctype = ctype.split(";")[0].strip()
    return ctype == "application/json" or (
        ctype.startswith("application/") and ctype.endswith("+json")
    )


def check_request(spec: Spec, request: Request) -> None:
    """A body that parses when the content type is JSON; an https URL on an allowed host."""
    if is_json_content(spec):
        assert request.is_json
        assert json.loads(request.body) == request.json_body
    url = urlsplit(request.url)
    assert url.scheme == "https", request.url
    assert url.hostname is not None and host_allowed(url.hostname, spec.data["allowedHosts"]), (
        f"{request.url} is outside allowedHosts {spec.data['allowedHosts']}"
    )
    assert url.username is None and url.password is None


def no_render_errors(outputs: list[Request | Skipped]) -> None:
    errors = [o for o in outputs if isinstance(o, Skipped) and o.category == "render-error"]
    assert errors == [], errors[0].reason if errors else ""


def shape(value: Any) -> Any:
    """The structure of a JSON value: object keys and array lengths, leaves as one kind."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return "leaf"


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def path_segments(url: str) -> list[str]:
    """The URL's path as a server sees it (after httpx removes dot segments)."""
    return httpx.URL(url).path.split("/")


def hashes(value: str) -> set[str]:
    forms = {value, value.strip(), value.lower(), value.strip().lower()}
    return {hashlib.sha256(f.encode("utf-8")).hexdigest() for f in forms}


def appearances(value: str, request: Request) -> set[str]:
    """How a value shows in a request: as a whole body value, inside one, hashed, or in the URL."""
    found: set[str] = set()
    strings = [v for v in leaves(request.json_body)] if request.is_json else [request.body]
    texts = [str(v) for v in strings if v is not None]
    if request.is_json and any(str(v) == value for v in strings if not isinstance(v, bool)):
        found.add("exact")
    if any(value in t for t in texts):
        found.add("contained")
    if any(digest in t for t in texts for digest in hashes(value)):
        found.add("hashed")
    url = urlsplit(request.url)
    if quote(value, safe="") in url.path.split("/") or quote(value, safe="") in url.query:
        found.add("url")
    return found


# --- 1. the spec and its example activation -----------------------------------------------


def test_destinations_are_discovered() -> None:
    assert "outreach" in NAMES
    assert len(NAMES) >= 2


@pytest.mark.parametrize("name", NAMES)
def test_spec_validates_without_errors(name: str) -> None:
    findings = check_spec(str(ROOT / "destinations" / f"{name}.json"))
    assert [str(f) for f in findings if f.severity == "error"] == []


@pytest.mark.parametrize("name", NAMES)
def test_spec_name_is_its_file_name(name: str) -> None:
    data = json.loads((ROOT / "destinations" / f"{name}.json").read_text(encoding="utf-8"))
    assert data["name"] == name


@pytest.mark.parametrize("name", NAMES)
def test_example_activation_validates(name: str) -> None:
    path = ROOT / "examples" / name / "activation.json"
    assert path.is_file(), f"ship examples/{name}/activation.json"
    findings = check_activation(path, str(ROOT / "destinations" / f"{name}.json"))
    assert [str(f) for f in findings if f.severity == "error"] == []


# --- 2. rendering the bundled example and sample profiles ---------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bundled_example_renders(name: str) -> None:
    spec, activation = spec_and_activation(name)
    profiles = ROOT / "examples" / name / "profiles.jsonl"
    if not profiles.is_file():
        pytest.skip(f"{name} bundles no example profiles")
    outputs = render(spec, activation, read_profiles(profiles))
    no_render_errors(outputs)
    requests = [o for o in outputs if isinstance(o, Request)]
    assert requests, "the bundled example renders no request"
    for request in requests:
        check_request(spec, request)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_sample_profiles_render(name: str, seed: int) -> None:
    spec, activation = spec_and_activation(name)
    outputs = render(spec, activation, sample_profiles(spec, activation, 40, seed))
    no_render_errors(outputs)
    assert not [o for o in outputs if isinstance(o, Skipped)], "sample profiles are all sendable"
    requests = [o for o in outputs if isinstance(o, Request)]
    assert requests
    for request in requests:
        check_request(spec, request)
    # Every sample profile is carried by some request.
    assert {ref for r in requests for ref in r.refs} == {f"sample {n}" for n in range(1, 41)}


# --- 3. error-rule examples ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rule_name", "example"), list(_rule_examples()))
def test_error_rule_example(name: str, rule_name: str, example: dict[str, Any]) -> None:
    data = json.loads((ROOT / "destinations" / f"{name}.json").read_text(encoding="utf-8"))
    rules = data["errorTranslation"]
    got = translate(rules, Response.from_example(example["response"]), now=EXAMPLE_NOW)
    expect = example["expect"]
    assert (got.rule, got.action) == (rule_name, expect["action"])
    if "retryAt" in expect:
        want = datetime.fromisoformat(expect["retryAt"].replace("Z", "+00:00"))
        if want.tzinfo is None:
            want = want.replace(tzinfo=EXAMPLE_NOW.tzinfo)
        assert got.retry_at == want
    if expect["action"] == "RATE_LIMITED" and "retryAt" in expect:
        assert got.retry_at is not None
    if "message" in expect:
        assert got.message == expect["message"]
    assert "(the message could not be rendered" not in got.message


@pytest.mark.parametrize("name", NAMES)
def test_error_rules_cover_the_common_failures(name: str) -> None:
    """429 waits, 5xx retries, an auth failure never silently rejects profile after profile."""
    data = json.loads((ROOT / "destinations" / f"{name}.json").read_text(encoding="utf-8"))
    rules = data["errorTranslation"]

    def action(status: int, headers: dict[str, str] | None = None) -> str:
        response = Response(status, httpx.Headers(headers or {}), {})
        return translate(rules, response, now=EXAMPLE_NOW).action

    assert action(429, {"Retry-After": "5"}) == "RATE_LIMITED"
    assert {action(s) for s in (500, 502, 504)} == {"RETRY"}
    assert action(401) in ("FAIL_RUN", "REFRESH_TOKEN_THEN_RETRY")
    for status in (400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504):
        got = translate(rules, Response(status, httpx.Headers({}), {}), now=EXAMPLE_NOW)
        assert got.rule is not None, f"no rule matches HTTP {status}"


# --- 4. hostile values -----------------------------------------------------------------------


def benign_profile(spec: Spec, activation: Activation) -> dict[str, Any]:
    return next(iter(sample_profiles(spec, activation, 1, seed=11))).data


def string_attributes(spec: Spec, activation: Activation) -> dict[tuple[str, ...], int | None]:
    """The source paths of mapped string attributes, and the longest value each accepts."""
    fields = spec.data["schemaConfig"]["profileFields"]

    def field(target: str) -> dict[str, Any]:
        for f in fields:
            if f.get("name") == target or (
                "namePattern" in f and re.fullmatch(f["namePattern"], target)
            ):
                return dict(f)
        return {"type": "string"}

    mapped = {m.source_path: field(m.target) for m in activation.attribute_mappings}
    return {path: f.get("maxLength") for path, f in mapped.items() if f["type"] == "string"}


def put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def identity_values(data: dict[str, Any], mapping: Any) -> list[str]:
    if mapping.source_namespace is not None:
        return [e["id"] for e in data.get("identityMap", {}).get(mapping.source_namespace, [])]
    return [get(data, mapping.source_path)]


def set_identity(data: dict[str, Any], mapping: Any, value: str) -> None:
    if mapping.source_namespace is not None:
        data.setdefault("identityMap", {})[mapping.source_namespace] = [{"id": value}]
    else:
        put(data, mapping.source_path, value)


def requests_of(outputs: list[Request | Skipped]) -> list[Request]:
    no_render_errors(outputs)
    return [o for o in outputs if isinstance(o, Request)]


def assert_same_structure(spec: Spec, benign: list[Request], hostile: list[Request]) -> None:
    assert len(hostile) == len(benign)
    for b, r in zip(benign, hostile, strict=True):
        check_request(spec, r)
        assert (r.method, sorted(r.headers)) == (b.method, sorted(b.headers))
        assert r.headers == b.headers  # no profile value in a header
        assert urlsplit(r.url).hostname == urlsplit(b.url).hostname
        assert len(path_segments(r.url)) == len(path_segments(b.url)), (b.url, r.url[:300])
        assert not {".", ".."} & set(path_segments(r.url))
        assert sorted(k for k, _ in httpx.URL(r.url).params.multi_items()) == sorted(
            k for k, _ in httpx.URL(b.url).params.multi_items()
        )
        if b.is_json:
            assert shape(r.json_body) == shape(b.json_body)


def assert_absent(value: str, requests: list[Request]) -> None:
    """A value the namespace refused: not in any URL or body, in no form."""
    for r in requests:
        assert value not in r.url and quote(value, safe="") not in r.url
        text = r.body
        assert value not in text and json.dumps(value)[1:-1] not in text
        assert not any(d in text for d in hashes(value))


CASES = [(name, case) for name in NAMES for case in HOSTILE]


@pytest.mark.parametrize(("name", "case"), CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_hostile_attribute_values_keep_the_structure(name: str, case: str) -> None:
    spec, activation = spec_and_activation(name)
    attributes = string_attributes(spec, activation)
    if not attributes:
        pytest.skip(f"{name}'s example activation maps no string attribute")
    value = HOSTILE[case]
    benign = benign_profile(spec, activation)
    for path, limit in attributes.items():
        if limit is not None and len(value) > limit:  # refused before rendering
            hostile = deepcopy(benign)
            put(hostile, path, value)
            (skipped,) = render(spec, activation, [ProfileRecord("hostile", hostile)])
            assert isinstance(skipped, Skipped) and skipped.category == "invalid-attribute"
    paths = [p for p, limit in attributes.items() if limit is None or len(value) <= limit]
    hostile = deepcopy(benign)
    for path in paths:
        put(hostile, path, value)
    base = requests_of(render(spec, activation, [ProfileRecord("benign", benign)]))
    bad = requests_of(render(spec, activation, [ProfileRecord("hostile", hostile)]))
    assert base
    assert_same_structure(spec, base, bad)
    for path in paths:
        original = get(benign, path)
        for b, r in zip(base, bad, strict=True):
            shown = appearances(original, b) & {"exact", "hashed", "url"}
            if shown:  # the template prints this attribute: the hostile value shows the same way
                assert shown & appearances(value, r), (path, shown)


@pytest.mark.parametrize(("name", "case"), CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_hostile_identity_values_keep_the_structure(name: str, case: str) -> None:
    spec, activation = spec_and_activation(name)
    namespaces = spec.data["identityNamespaces"]
    value = HOSTILE[case]
    benign = benign_profile(spec, activation)
    base = requests_of(render(spec, activation, [ProfileRecord("benign", benign)]))
    assert base
    for mapping in activation.identity_mappings:
        pattern = namespaces[mapping.target].get("pattern")
        original = identity_values(benign, mapping)[0]
        for candidate in (value, value + original, original + value):
            hostile = deepcopy(benign)
            set_identity(hostile, mapping, candidate)
            outputs = render(spec, activation, [ProfileRecord("hostile", hostile)])
            bad = requests_of(outputs)
            passes = pattern is None or re.fullmatch(pattern, candidate) is not None
            if not passes:
                # Dropped: the profile is skipped, or sent with its other identities only.
                assert_absent(candidate, bad)
                if not bad:
                    assert [o.category for o in outputs if isinstance(o, Skipped)] == [
                        "missing-identity"
                    ]
                for b, r in zip(base, bad, strict=False):
                    check_request(spec, r)
                    assert len(path_segments(r.url)) == len(path_segments(b.url))
                continue
            assert_same_structure(spec, base, bad)
            for b, r in zip(base, bad, strict=True):
                shown = appearances(original, b) & {"exact", "hashed", "url"}
                if shown:
                    assert shown & appearances(candidate, r), (mapping.target, shown)


# --- 5. engine gaps the kit found -------------------------------------------------------------


def outreach_variant(tmp_path: Path, url: str | None = None, body: str | None = None) -> Spec:
    """A copy of the Outreach spec whose identity pattern admits dots, like many id formats,
    with its URL template and inline body replaced when given."""
    data = json.loads((ROOT / "destinations" / "outreach.json").read_text(encoding="utf-8"))
    data.pop("$schema", None)
    data["identityNamespaces"]["OutreachId"]["pattern"] = "^[A-Za-z0-9._-]{1,40}$"
    server = data["destinationServer"]
    if url is not None:
        server["urlBasedDestination"]["url"]["value"] = url
    server["httpTemplate"]["requestBody"] = {
        "templatingStrategy": "NONE" if body is None else "JINJA",
        "value": body or '{"data": {"type": "prospect", "attributes": {}}}',
    }
    (tmp_path / "destinations").mkdir()
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    spec_path = tmp_path / "destinations" / "outreach.json"
    spec_path.write_text(json.dumps(data), encoding="utf-8")
    assert [f for f in check_spec(str(spec_path)) if f.severity == "error"] == []
    return load_spec(str(spec_path))


def render_one(spec: Spec, oid: str, first_name: str = "Ada") -> Request:
    activation = load_activation(ROOT / "examples" / "outreach" / "activation.json", spec)
    profile = {
        "identityMap": {"Oid": [{"id": oid}]},
        "person": {"name": {"firstName": first_name}},
        "segmentMembership": {"ups": {activation.audiences[0].id: {"status": "realized"}}},
    }
    (request,) = requests_of(render(spec, activation, [ProfileRecord("profile", profile)]))
    return request


def test_dot_segment_identity_cannot_change_the_url_path(tmp_path: Path) -> None:
    request = render_one(outreach_variant(tmp_path), "..")
    assert request.url == "https://api.outreach.io/api/v2/prospects/%2E%2E"


HOSTILE_PATH = "12/../../users?x=2#"
PREFIX = "https://api.outreach.io/api/v2/prospects/1/notes/"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("v", "12%2F..%2F..%2Fusers%3Fx%3D2%23"),
        ("v | e", "12%2F..%2F..%2Fusers%3Fx%3D2%23"),
        ("v | escape", "12%2F..%2F..%2Fusers%3Fx%3D2%23"),
        ("v | safe", "12%2F..%2F..%2Fusers%3Fx%3D2%23"),
        ("v | urlencode", "12%2F..%2F..%2Fusers%3Fx%3D2%23"),
        ("v | string", "12%2F..%2F..%2Fusers%3Fx%3D2%23"),
        ("v | tojson", "%2212%2F..%2F..%2Fusers%3Fx%3D2%23%22"),
        ("v | raw", "%2212%2F..%2F..%2Fusers%3Fx%3D2%23%22"),
        (
            "(v | tojson) ~ v",
            "%2212%2F..%2F..%2Fusers%3Fx%3D2%23%2212%2F..%2F..%2Fusers%3Fx%3D2%23",
        ),
        ("formUrlEncode('q', v)", "q=12%2F..%2F..%2Fusers%3Fx%3D2%23"),
    ],
)
def test_no_filter_lets_a_value_change_the_url_path(
    tmp_path: Path, expression: str, expected: str
) -> None:
    url = PREFIX + "{% set v = input.profile.attributes.firstName.value %}{{ " + expression + " }}"
    request = render_one(outreach_variant(tmp_path, url=url), "1", first_name=HOSTILE_PATH)
    assert request.url == PREFIX + expected
    parts = urlsplit(request.url)
    assert (parts.path.count("/"), parts.query, parts.fragment) == (6, "", "")


@pytest.mark.parametrize("expression", ["v", "v | safe", "v | e", "v | string", "v | urlencode"])
def test_no_filter_lets_a_value_out_of_its_json_string(tmp_path: Path, expression: str) -> None:
    value = 'x", "admin": true, "y": "\\'
    body = (
        '{"name": "{% set v = input.profile.attributes.firstName.value %}{{ ' + expression + ' }}"}'
    )
    request = render_one(outreach_variant(tmp_path, body=body), "1", first_name=value)
    assert list(request.json_body) == ["name"]
    assert isinstance(request.json_body["name"], str)
    if expression in ("v", "v | safe", "v | string"):
        assert request.json_body == {"name": value}


@pytest.mark.parametrize(
    "expression", ['("{}" | tojson).format(v)', '("{v}" | tojson).format_map({"v": v})']
)
def test_format_on_tojson_output_gives_plain_text(tmp_path: Path, expression: str) -> None:
    body = (
        '{"data": {"attributes": {"firstName": '
        "{% set v = input.profile.attributes.firstName.value %}{{ " + expression + " }}}}}"
    )
    spec = outreach_variant(tmp_path, body=body)
    activation = load_activation(ROOT / "examples" / "outreach" / "activation.json", spec)
    profile = {
        "identityMap": {"Oid": [{"id": "1"}]},
        "person": {"name": {"firstName": 'x", "optedOut": true, "y": "z'}},
        "segmentMembership": {"ups": {activation.audiences[0].id: {"status": "realized"}}},
    }
    (skipped,) = render(spec, activation, [ProfileRecord("line 1", profile)])
    assert isinstance(skipped, Skipped)  # escaped again, so no longer JSON: never sent
    assert skipped.category == "render-error"
    assert "the rendered body is not valid JSON" in skipped.reason


def test_error_messages_render_even_with_nan_in_the_response() -> None:
    message = "rejected: {{ response.body.errors[0] | tojson }}"
    response = Response(422, {}, {"errors": [{"detail": float("nan")}]})
    assert render_message(message, response) == (
        f"{message} (the message could not be rendered:"
        " Out of range float values are not JSON compliant)"
    )


SCORE = '{"v": {{ input.profile.attributes.score.value }}}'
SCORE_JSON = '{"v": {{ input.profile.attributes.score.value | tojson }}}'
OUT_OF_RANGE = "ValueError: Out of range float values are not JSON compliant"


@pytest.mark.parametrize(
    ("body", "value", "problem"),
    [
        ('{"v": NaN}', 1, "the rendered body has NaN, which JSON does not allow;"),
        ('{"v": -Infinity}', 1, "the rendered body has -Infinity, which JSON does not allow;"),
        (SCORE, float("nan"), f"{OUT_OF_RANGE} (in `{SCORE}`)"),
        (SCORE_JSON, float("inf"), f"{OUT_OF_RANGE} (in `{SCORE_JSON}`)"),
    ],
)
def test_nan_and_infinity_never_reach_a_body(
    tmp_path: Path, body: str, value: Any, problem: str
) -> None:
    spec = outreach_variant(tmp_path, body=body)
    activation = load_activation(ROOT / "tests/data/activations/outreach-all-fields.json", spec)
    profile = {
        "identityMap": {"Oid": [{"id": "1"}]},
        "person": {"score": value},
        "segmentMembership": {"ups": {activation.audiences[0].id: {"status": "realized"}}},
    }
    (skipped,) = render(spec, activation, [ProfileRecord("line 1", profile)])
    assert isinstance(skipped, Skipped)
    where = f"{spec.path} /destinationServer/httpTemplate/requestBody/value"
    if problem.endswith(";"):
        problem += " check the template and the profile's values"
    assert (skipped.category, skipped.reason) == ("render-error", f"{where}: {problem}")

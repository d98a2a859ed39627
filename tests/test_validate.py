"""`dest-engine validate`: the real Outreach spec, broken variants of it, JSON output.

Each broken variant is built in a temporary folder laid out like a checkout:
`destinations/outreach.json` (the real spec, changed by one small function) and
`templates/` (a copy of the real one, its body template replaced by `BODY` below so
that template line numbers are the test's own; some cases edit it). The command runs
from that folder, so messages name `destinations/outreach.json` and
`templates/...` as a user would see them. Every case asserts the exact output:
every finding with its line and column, and the summary line.

Line numbers follow the real spec as written by `json.dumps(indent=2)`; a change
to destinations/outreach.json moves them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
REAL_SPEC = json.loads((ROOT / "destinations" / "outreach.json").read_text(encoding="utf-8"))
SPEC = "destinations/outreach.json"

Spec = dict[str, Any]
Mutation = Callable[[Spec], None]


def invoke(*args: str) -> Result:
    """Run `dest-engine validate ARGS`; an unexpected exception fails the test as itself."""
    result = CliRunner().invoke(main, ["validate", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def write_workspace(
    root: Path,
    mutate: Mutation | None = None,
    *,
    templates: dict[str, str | bytes] | None = None,
    edit_text: Callable[[str], str] | None = None,
    name: str = "outreach",
) -> Path:
    """`root/destinations/NAME.json` (the Outreach spec, mutated) and `root/templates/`."""
    spec = json.loads(json.dumps(REAL_SPEC))
    spec["name"] = name  # a spec's name matches its file name
    if mutate is not None:
        mutate(spec)
    text = json.dumps(spec, indent=2) + "\n"
    if edit_text is not None:
        text = edit_text(text)
    path = root / "destinations" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if not (root / "templates").exists():
        shutil.copytree(ROOT / "templates", root / "templates")
    for file, content in (templates or {}).items():
        target = root / "templates" / file
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return path


def summary(errors: int, warnings: int, spec: str = SPEC) -> str:
    verdict = "invalid" if errors else "valid"
    e = f"{errors} error" + ("" if errors == 1 else "s")
    w = f"{warnings} warning" + ("" if warnings == 1 else "s")
    return f"{spec}: {verdict} ({e}, {w})"


def text_of(finding: dict[str, Any]) -> str:
    """A JSON finding as the text format prints it."""
    where = finding["file"]
    if finding["line"] is not None:
        where += f":{finding['line']}"
        if finding["column"] is not None:
            where += f":{finding['column']}"
    label = "" if finding["severity"] == "error" else " warning:"
    pointer = f" {finding['pointer']}:" if finding["pointer"] else ""
    return f"{where}:{label}{pointer} {finding['message']}"


# --- spec helpers -------------------------------------------------------------


def http(spec: Spec) -> Spec:
    return spec["destinationServer"]["httpTemplate"]  # type: ignore[no-any-return]


def url(spec: Spec) -> Spec:
    return spec["destinationServer"]["urlBasedDestination"]["url"]  # type: ignore[no-any-return]


def auth(spec: Spec) -> Spec:
    return spec["customerAuthenticationConfigurations"][0]  # type: ignore[no-any-return]


def rule(spec: Spec, name: str) -> Spec:
    return next(r for r in spec["errorTranslation"] if r["name"] == name)


def body_file(spec: Spec, file: str) -> None:
    http(spec)["requestBody"] = {"templatingStrategy": "JINJA", "file": file}


def configurable_aggregation(spec: Spec, key: Spec) -> None:
    spec["aggregation"] = {
        "aggregationType": "CONFIGURABLE_AGGREGATION",
        "configurableAggregation": {"maxNumEventsInBatch": 100, "aggregationKey": key},
    }


# A body template of our own, so that template line numbers do not follow the real one.
BODY = """\
{
  "data": {
    "type": "prospect",
    "id": {{ input.profile.identityMap.OutreachId[0].id | int }},
    "attributes": {
      {%- for attribute in input.profile.attributes %}{{ "," if not loop.first }}
      "{{ attribute.key }}": {{ attribute.value.value | tojson }}
      {%- endfor %}
    }
  }
}
"""
BODY_FILE = "outreach/prospect.json.j2"


def body_with(old: str, new: str) -> dict[str, str | bytes]:
    """The body template with one edit, as the `templates` of a case."""
    assert old in BODY
    return {BODY_FILE: BODY.replace(old, new, 1)}


# --- the broken variants ------------------------------------------------------


@dataclass(frozen=True)
class Case:
    mutate: Mutation
    expected: tuple[str, ...]
    templates: dict[str, str | bytes] | None = None
    edit_text: Callable[[str], str] | None = None
    exit_code: int = 1


CASES: list[Any] = []


def case(
    case_id: str,
    expected: list[str],
    *,
    templates: dict[str, str | bytes] | None = None,
    edit_text: Callable[[str], str] | None = None,
    exit_code: int = 1,
    marks: Any = (),
) -> Callable[[Mutation], Mutation]:
    """Register the decorated mutation as a broken variant with its exact expected output."""

    def register(mutate: Mutation) -> Mutation:
        spec_case = Case(mutate, tuple(expected), templates, edit_text, exit_code)
        CASES.append(pytest.param(spec_case, id=case_id, marks=marks))
        return mutate

    return register


# JSON syntax


@case(
    "invalid-json-trailing-comma-in-list",
    [
        "destinations/outreach.json:237:22: invalid JSON: trailing comma before ']'; remove it",
        summary(1, 0),
    ],
    edit_text=lambda text: text.replace('"api.outreach.io"\n  ]', '"api.outreach.io",\n  ]', 1),
)
def _trailing_comma_list(spec: Spec) -> None:
    pass


@case(
    "invalid-json-trailing-comma-in-object",
    [
        "destinations/outreach.json:11:29: invalid JSON: trailing comma before '}'; remove it",
        summary(1, 0),
    ],
    edit_text=lambda text: text.replace('"Streaming"\n', '"Streaming",\n', 1),
)
def _trailing_comma_object(spec: Spec) -> None:
    pass


@case(
    "invalid-json-empty-file",
    ["destinations/outreach.json:1:1: invalid JSON: Expecting value", summary(1, 0)],
    edit_text=lambda text: "",
)
def _empty_file(spec: Spec) -> None:
    pass


# JSON Schema


@case(
    "not-an-object",
    ["destinations/outreach.json:1:1: must be an object, not a list ([])", summary(1, 0)],
    edit_text=lambda text: "[]\n",
)
def _not_an_object(spec: Spec) -> None:
    pass


@case(
    "wrong-type-string-for-integer",
    [
        'destinations/outreach.json:252:20: /retryPolicy/maxAttempts: must be an integer, not a string ("5")',
        summary(1, 0),
    ],
)
def _string_for_integer(spec: Spec) -> None:
    spec["retryPolicy"]["maxAttempts"] = "5"


@case(
    "wrong-type-object-for-list",
    [
        'destinations/outreach.json:236:19: /allowedHosts: must be a list, not an object ({"outreach": "api.outreach.io"})',
        summary(1, 0),
    ],
)
def _object_for_list(spec: Spec) -> None:
    spec["allowedHosts"] = {"outreach": "api.outreach.io"}


@case(
    "wrong-type-object-for-nested-list",
    [
        "destinations/outreach.json:20:16: /customerAuthenticationConfigurations/0/scope: "
        'must be a list, not an object ({"prospects": "read"})',
        summary(1, 0),
    ],
)
def _object_for_nested_list(spec: Spec) -> None:
    auth(spec)["scope"] = {"prospects": "read"}


@case(
    "empty-list",
    [
        "destinations/outreach.json:236:19: /allowedHosts: must not be empty",
        summary(1, 0),
    ],
)
def _empty_allowed_hosts(spec: Spec) -> None:
    spec["allowedHosts"] = []


@case(
    "missing-top-level-member",
    [
        "destinations/outreach.json:1:1: missing required property 'allowedHosts'",
        summary(1, 0),
    ],
)
def _missing_allowed_hosts(spec: Spec) -> None:
    del spec["allowedHosts"]


@case(
    "missing-oauth2-authorizationUrl",
    [
        "destinations/outreach.json:14:5: /customerAuthenticationConfigurations/0: missing required property 'authorizationUrl' (required when grant is OAUTH2_AUTHORIZATION_CODE: where the user's browser is sent to log in)",
        summary(1, 0),
    ],
)
def _missing_authorization_url(spec: Spec) -> None:
    del auth(spec)["authorizationUrl"]


@case(
    "missing-oauth2-grant",
    [
        "destinations/outreach.json:14:5: /customerAuthenticationConfigurations/0: missing required property 'grant' (required when authType is OAUTH2)",
        summary(1, 0),
    ],
)
def _missing_grant(spec: Spec) -> None:
    del auth(spec)["grant"]


@case(
    "misspelled-top-level-key",
    [
        "destinations/outreach.json:260:3: /errorTranslations: unknown property 'errorTranslations'; did you mean 'errorTranslation'?",
        summary(1, 0),
    ],
)
def _misspelled_top_level(spec: Spec) -> None:
    spec["errorTranslations"] = spec.pop("errorTranslation")


@case(
    "misspelled-nested-key",
    [
        "destinations/outreach.json:258:5: /retryPolicy/maxAtempts: unknown property 'maxAtempts'; did you mean 'maxAttempts'?",
        summary(1, 0),
    ],
)
def _misspelled_nested(spec: Spec) -> None:
    spec["retryPolicy"]["maxAtempts"] = spec["retryPolicy"].pop("maxAttempts")


@case(
    "misspelled-required-key",
    [
        "destinations/outreach.json:230:7: /destinationServer/httpTemplate/requestbody: unknown property 'requestbody'; did you mean 'requestBody'?",
        summary(1, 0),
    ],
)
def _misspelled_required(spec: Spec) -> None:
    http(spec)["requestbody"] = http(spec).pop("requestBody")


@case(
    "unknown-key-without-suggestion",
    [
        "destinations/outreach.json:24:7: "
        "/customerAuthenticationConfigurations/0/clientSecret: unknown property "
        "'clientSecret'; allowed here: authType, grant, authorizationUrl, accessTokenUrl, "
        "refreshTokenUrl, scope, options, accessTokenResponsePath, "
        "refreshTokenResponsePath, expiresInResponsePath",
        summary(1, 0),
    ],
)
def _client_secret_in_spec(spec: Spec) -> None:
    auth(spec)["clientSecret"] = "s3cret"


@case(
    "enum-typo-http-method",
    [
        "destinations/outreach.json:212:21: /destinationServer/httpTemplate/httpMethod: must be one of GET, PUT, POST, DELETE, PATCH, not \"PACTH\"; did you mean 'PATCH'?",
        summary(1, 0),
    ],
)
def _enum_typo_method(spec: Spec) -> None:
    http(spec)["httpMethod"] = "PACTH"


@case(
    "enum-typo-aggregation-type",
    [
        "destinations/outreach.json:197:24: /aggregation/aggregationType: must be one of BEST_EFFORT, CONFIGURABLE_AGGREGATION, not \"BEST_EFORT\"; did you mean 'BEST_EFFORT'?",
        summary(1, 0),
    ],
)
def _enum_typo_aggregation(spec: Spec) -> None:
    spec["aggregation"]["aggregationType"] = "BEST_EFORT"


@case(
    "name-not-matching-pattern",
    [
        'destinations/outreach.json:3:11: /name: "Outreach" does not match the pattern '
        "^[a-z][a-z0-9-]{0,62}$",
        summary(1, 0),
    ],
)
def _capitalised_name(spec: Spec) -> None:
    spec["name"] = "Outreach"


@case(
    "rule-status-4x",
    [
        'destinations/outreach.json:700:11: /errorTranslation/12/match/status/0: must be an integer from 100 to 599 or a string matching ^[1-5]xx$, not "4x"',
        summary(1, 0),
    ],
)
def _status_4x(spec: Spec) -> None:
    rule(spec, "client-error")["match"]["status"] = ["4x"]


# templates


@case(
    "template-syntax-error-missing-endfor",
    [
        # IMPROVE: line 7 holds the last tag; the unclosed `for` is on line 6.
        "templates/outreach/prospect.json.j2:7: template syntax error: Unexpected end of "
        "template. Jinja was looking for the following tags: 'endfor' or 'else'. The "
        "innermost block that needs to be closed is 'for'.",
        summary(1, 0),
    ],
    templates=body_with("      {%- endfor %}\n", ""),
)
def _missing_endfor(spec: Spec) -> None:
    pass


@case(
    "template-syntax-error-unbalanced-braces",
    [
        "templates/outreach/prospect.json.j2:4: template syntax error: unexpected '}'",
        summary(1, 0),
    ],
    templates=body_with("[0].id | int }}", "[0].id | int }"),
)
def _unbalanced_braces(spec: Spec) -> None:
    pass


@case(
    "template-includes-another",
    [
        "templates/outreach/prospect.json.j2:2: {% include %} is not available: each template is"
        " rendered on its own; write its content here, or a macro in this template",
        "templates/outreach/prospect.json.j2:2: {% import %} is not available: each template is"
        " rendered on its own; write its content here, or a macro in this template",
        summary(2, 0),
    ],
    templates=body_with(
        '{\n  "data": {\n',
        '{\n{% include "attributes.j2" %}{% from "ids.j2" import oid %}\n  "data": {\n',
    ),
)
def _include(spec: Spec) -> None:
    pass


UNQUOTED = (
    "warning: a value printed outside a JSON string: text would land without quotes and could"
    ' add JSON structure; write it inside quotes ("{{ ... }}") or use | tojson'
)


@case(
    "body-prints-text-outside-quotes",
    [
        f"templates/outreach/prospect.json.j2:4: {UNQUOTED}",
        f"templates/outreach/prospect.json.j2:5: {UNQUOTED}",
        f"templates/outreach/prospect.json.j2:6: {UNQUOTED}",
        summary(0, 3),
    ],
    templates=body_with(
        '    "type": "prospect",\n',
        '    "type": "prospect",\n'
        '    "first": {{ input.profile.attributes.firstName.value }},\n'
        '    "n": {{ input.profile.attributes.firstName.value ~ "x" }},\n'
        '    "k": {{ input.profile.identityMap.OutreachId[0].id | lower }},\n'
        '    "quoted": "{{ input.profile.attributes.firstName.value }} \\"{{ 1 }}\\"",\n'
        '    "score": {{ input.profile.attributes.score.value }},\n'
        '    "opted": {{ input.profile.attributes.optedOut.value if true else 1 }},\n'
        '    "json": {{ input.profile.attributes.firstName.value | tojson }},\n'
        '    "len": {{ input.profile.attributes.firstName.value | length }},\n'
        '    "same": {{ input.profile.attributes.firstName.value == "a" }},\n',
    ),
    exit_code=0,
)
def _unquoted(spec: Spec) -> None:
    pass


@case(
    "inline-template-syntax-error",
    [
        "destinations/outreach.json:208:18: /destinationServer/urlBasedDestination/url/value: template syntax error: unexpected '}'",
        summary(1, 0),
    ],
)
def _inline_syntax_error(spec: Spec) -> None:
    url(spec)["value"] = url(spec)["value"].replace("}}", "}")


@case(
    "template-undefined-name-input-profle",
    [
        "templates/outreach/prospect.json.j2:6: `input.profle` does not exist; did you "
        "mean `profile`? (`input` has: profiles, profile)",
        summary(1, 0),
    ],
    templates=body_with("in input.profile.attributes", "in input.profle.attributes"),
)
def _input_profle(spec: Spec) -> None:
    pass


@case(
    "inline-multiline-template-undefined-name",
    [
        "destinations/outreach.json:232:18: /destinationServer/httpTemplate/requestBody/value: `input.profle` does not exist; did you mean `profile`? (`input` has: profiles, profile) (line 6 of the template)",
        summary(1, 0),
    ],
)
def _inline_multiline_profle(spec: Spec) -> None:
    http(spec)["requestBody"] = {
        "templatingStrategy": "JINJA",
        "value": BODY.replace("in input.profile.attributes", "in input.profle.attributes"),
    }


@case(
    "inline-url-wrong-identity-namespace",
    [
        "destinations/outreach.json:208:18: /destinationServer/urlBasedDestination/url/value: `input.profile.identityMap.OutreachID`: the spec has no identity namespace `OutreachID`; did you mean `OutreachId`?",
        summary(1, 0),
    ],
)
def _url_outreach_id_typo(spec: Spec) -> None:
    url(spec)["value"] = url(spec)["value"].replace("OutreachId", "OutreachID")


@case(
    "template-wrong-identity-namespace",
    [
        "templates/outreach/prospect.json.j2:4: `input.profile.identityMap.OutreachID`: "
        "the spec has no identity namespace `OutreachID`; did you mean `OutreachId`?",
        summary(1, 0),
    ],
    templates=body_with("identityMap.OutreachId", "identityMap.OutreachID"),
)
def _body_outreach_id_typo(spec: Spec) -> None:
    pass


@case(
    "template-attribute-not-in-profileFields",
    [
        "templates/outreach/prospect.json.j2:4: `input.profile.attributes.frstName`: the "
        "spec has no target attribute `frstName`; did you mean `firstName`?",
        summary(1, 0),
    ],
    templates=body_with(
        '"type": "prospect",',
        '"type": "prospect",\n    "name": "{{ input.profile.attributes.frstName.value }}",',
    ),
)
def _frst_name(spec: Spec) -> None:
    pass


@case(
    "template-authData-in-body",
    [
        "templates/outreach/prospect.json.j2:3: `authData` is only available in header templates",
        summary(1, 0),
    ],
    templates=body_with('"type": "prospect",', '"token": "{{ authData.accessToken }}",'),
)
def _auth_data_in_body(spec: Spec) -> None:
    pass


@case(
    "header-template-authData-typo",
    [
        "destinations/outreach.json:219:22: /destinationServer/httpTemplate/headers/0/value/value: `authData.acessToken` does not exist; did you mean `accessToken`? (`authData` has: accessToken, tokenType)",
        summary(1, 0),
    ],
)
def _auth_data_typo(spec: Spec) -> None:
    http(spec)["headers"][0]["value"]["value"] = "Bearer {{ authData.acessToken }}"


@case(
    "inline-template-undeclared-customerData",
    [
        "destinations/outreach.json:208:18: /destinationServer/urlBasedDestination/url/value: `customerData.region`: the spec has no customer data field `region`; declare it in customerDataFields",
        summary(1, 0),
    ],
)
def _undeclared_customer_data(spec: Spec) -> None:
    url(spec)["value"] = url(spec)["value"].replace(
        "/api/v2/", "/api/v2/{{ customerData.region }}/"
    )


@case(
    "template-file-missing",
    [
        "destinations/outreach.json:232:17: /destinationServer/httpTemplate/requestBody/file: template file templates/outreach/prospects.json.j2 does not exist",
        summary(1, 0),
    ],
)
def _missing_template_file(spec: Spec) -> None:
    body_file(spec, "outreach/prospects.json.j2")


@case(
    "template-file-outside-templates-folder",
    [
        "destinations/outreach.json:232:17: /destinationServer/httpTemplate/requestBody/file: template file '../../etc/passwd' is outside the templates folder (templates/); give a path inside it, e.g. 'outreach/body.json.j2'",
        summary(1, 0),
    ],
)
def _template_escapes(spec: Spec) -> None:
    body_file(spec, "../../etc/passwd")


@case(
    "template-file-absolute-path",
    [
        "destinations/outreach.json:232:17: /destinationServer/httpTemplate/requestBody/file: template file '/etc/passwd' is outside the templates folder (templates/); give a path inside it, e.g. 'outreach/body.json.j2'",
        summary(1, 0),
    ],
)
def _template_absolute(spec: Spec) -> None:
    body_file(spec, "/etc/passwd")


@case(
    "template-file-is-a-folder",
    [
        "destinations/outreach.json:232:17: /destinationServer/httpTemplate/requestBody/file: template file templates/outreach is a folder; name a file inside it",
        summary(1, 0),
    ],
)
def _template_is_folder(spec: Spec) -> None:
    body_file(spec, "outreach")


@case(
    "template-file-not-utf8",
    [
        "destinations/outreach.json:232:17: /destinationServer/httpTemplate/requestBody/file: template file templates/outreach/prospect.json.j2: not UTF-8 text (byte 1); save it as UTF-8",
        summary(1, 0),
    ],
    templates={BODY_FILE: b'"\xe9"\n'},
)
def _template_not_utf8(spec: Spec) -> None:
    pass


@case(
    "template-value-and-file",
    [
        "destinations/outreach.json:230:22: /destinationServer/httpTemplate/requestBody: give the template either `value` or `file`, not both",
        summary(1, 0),
    ],
)
def _value_and_file(spec: Spec) -> None:
    http(spec)["requestBody"]["value"] = "{}"


@case(
    "template-neither-value-nor-file",
    [
        "destinations/outreach.json:230:22: /destinationServer/httpTemplate/requestBody: give the template a `value` or a `file`",
        summary(1, 0),
    ],
)
def _neither_value_nor_file(spec: Spec) -> None:
    del http(spec)["requestBody"]["file"]


# URLs and hosts


@case(
    "url-host-not-in-allowedHosts",
    [
        "destinations/outreach.json:208:18: /destinationServer/urlBasedDestination/url/value: host api.outreach.com is not in allowedHosts (api.outreach.io); add it there or fix the URL",
        summary(1, 0),
    ],
)
def _url_host(spec: Spec) -> None:
    url(spec)["value"] = url(spec)["value"].replace("api.outreach.io", "api.outreach.com")


@case(
    "token-url-http",
    [
        "destinations/outreach.json:18:25: "
        "/customerAuthenticationConfigurations/0/accessTokenUrl: URL "
        "'http://api.outreach.io/oauth/token' must start with https://",
        summary(1, 0),
    ],
)
def _token_url_http(spec: Spec) -> None:
    auth(spec)["accessTokenUrl"] = "http://api.outreach.io/oauth/token"


@case(
    "token-url-host-not-in-allowedHosts",
    [
        "destinations/outreach.json:19:26: "
        "/customerAuthenticationConfigurations/0/refreshTokenUrl: host login.example.com "
        "is not in allowedHosts (api.outreach.io); add it there or fix the URL",
        summary(1, 0),
    ],
)
def _token_url_host(spec: Spec) -> None:
    auth(spec)["refreshTokenUrl"] = "https://login.example.com/oauth/token"


# regular expressions


@case(
    "regex-invalid-identity-pattern",
    [
        "destinations/outreach.json:32:18: /identityNamespaces/OutreachId/pattern: invalid "
        "regular expression '^[1-9][0-9{0,17}$': unterminated character set at position 6",
        summary(1, 0),
    ],
)
def _identity_pattern(spec: Spec) -> None:
    spec["identityNamespaces"]["OutreachId"]["pattern"] = "^[1-9][0-9{0,17}$"


@case(
    "regex-invalid-in-error-rule-unused-by-examples",
    [
        "destinations/outreach.json:581:22: /errorTranslation/9/match/headers/0/regex: invalid regular expression '[0-9+': unterminated character set at position 0",
        summary(1, 0),
    ],
)
def _rule_regex_not_evaluated(spec: Spec) -> None:
    # `exists: false` holds for every example (no such header), so the regex is never run.
    rule(spec, "rate-limited")["match"]["headers"] = [
        {"header": "X-Debug", "exists": False, "regex": "[0-9+"}
    ]


@case(
    "regex-invalid-in-error-rule",
    [
        "destinations/outreach.json:296:22: /errorTranslation/1/match/body/0/regex: invalid regular expression '^unauthorized(Oauth': missing ), unterminated subpattern at position 13",
        summary(1, 0),
    ],
)
def _rule_regex(spec: Spec) -> None:
    rule(spec, "missing-scope")["match"]["body"][0] = {
        "pointer": "/errors/0/id",
        "regex": "^unauthorized(Oauth",
    }


@case(
    "regex-invalid-in-retryAt",
    [
        "destinations/outreach.json:582:20: /errorTranslation/9/retryAt/0/regex: invalid regular expression 'try again at (\\\\d{4}': missing ), unterminated subpattern at position 13",
        summary(1, 0),
    ],
)
def _retry_at_regex(spec: Spec) -> None:
    rule(spec, "rate-limited")["retryAt"][0]["regex"] = "try again at (\\d{4}"


@case(
    "regex-invalid-profile-field-namePattern",
    [
        "destinations/outreach.json:185:24: /schemaConfig/profileFields/23/namePattern: invalid regular expression '^custom([1-9]$': missing ), unterminated subpattern at position 7",
        summary(1, 0),
    ],
)
def _name_pattern(spec: Spec) -> None:
    spec["schemaConfig"]["profileFields"][-1]["namePattern"] = "^custom([1-9]$"


# error rules and their examples


@case(
    "example-action-contradicts-rule",
    [
        "destinations/outreach.json:354:23: /errorTranslation/2/examples/0/expect/action: the example expects FAIL_RUN but rule 'forbidden' does REJECT",
        summary(1, 0),
    ],
)
def _example_action(spec: Spec) -> None:
    rule(spec, "forbidden")["examples"][0]["expect"]["action"] = "FAIL_RUN"


@case(
    "example-matched-by-earlier-rule",
    [
        "destinations/outreach.json:514:23: /errorTranslation/7/examples/0/response: this example response is matched by rule 'invalid-value', which comes first; move rule 'value-too-long' before it or narrow 'invalid-value'",
        summary(1, 0),
    ],
)
def _rules_reordered(spec: Spec) -> None:
    rules = spec["errorTranslation"]
    catch_422 = rules.pop(next(i for i, r in enumerate(rules) if r["name"] == "invalid-value"))
    rules.insert(next(i for i, r in enumerate(rules) if r["name"] == "value-too-long"), catch_422)


@case(
    "example-matched-by-later-rule",
    [
        "destinations/outreach.json:341:23: /errorTranslation/2/examples/0/response: rule 'forbidden' does not match this example response (it falls through to rule 'client-error'); check the rule's match conditions",
        summary(1, 0),
    ],
)
def _example_not_matched_by_own_rule(spec: Spec) -> None:
    example = rule(spec, "forbidden")["examples"][0]
    example["response"]["body"]["errors"][0]["id"] = "unauthorizedRequests"


@case(
    "example-retryAt-differs",
    [
        "destinations/outreach.json:612:24: /errorTranslation/9/examples/0/expect/retryAt: the rule reads 2017-01-01T00:00:00+00:00 from this example, not 2017-01-01T01:00:00+00:00",
        summary(1, 0),
    ],
)
def _example_retry_at(spec: Spec) -> None:
    rule(spec, "rate-limited")["examples"][0]["expect"]["retryAt"] = "2017-01-01T01:00:00+00:00"


@case(
    "example-retryAt-not-a-time",
    [
        "destinations/outreach.json:612:24: /errorTranslation/9/examples/0/expect/retryAt: 'soon' is not an ISO 8601 time",
        summary(1, 0),
    ],
)
def _example_retry_at_not_time(spec: Spec) -> None:
    rule(spec, "rate-limited")["examples"][0]["expect"]["retryAt"] = "soon"


@case(
    "example-message-differs",
    [
        "destinations/outreach.json:391:24: /errorTranslation/3/examples/0/expect/message: the example expects 'Outreach has no prospect with this OutreachId.' but the rule gives \"Outreach has no prospect with this OutreachId (Could not find 'prospect' with ID '1'.). Check the profile's identity mapped to OutreachId.\"",
        summary(1, 0),
    ],
)
def _example_message(spec: Spec) -> None:
    rule(spec, "prospect-not-found")["examples"][0]["expect"]["message"] = (
        "Outreach has no prospect with this OutreachId."
    )


@case(
    "rule-message-undefined-name",
    [
        "destinations/outreach.json:374:18: /errorTranslation/3/message: `reponse` is not defined; did you mean `response`?",
        summary(1, 0),
    ],
)
def _message_name(spec: Spec) -> None:
    found = rule(spec, "prospect-not-found")
    found["message"] = found["message"].replace("response.body", "reponse.body")


@case(
    "rule-message-syntax-error",
    [
        "destinations/outreach.json:704:18: /errorTranslation/12/message: template syntax error: unexpected '}'",
        summary(1, 0),
    ],
)
def _message_syntax(spec: Spec) -> None:
    found = rule(spec, "client-error")
    found["message"] = found["message"].replace("response.status }}", "response.status }")


@case(
    "rate-limited-without-retryAt",
    [
        "destinations/outreach.json:638:17: warning: /errorTranslation/10/action: RATE_LIMITED without retryAt: dest-engine will back off instead of waiting for the time the server names",
        summary(0, 1),
    ],
    exit_code=0,
)
def _rate_limited_without_retry_at(spec: Spec) -> None:
    found = rule(spec, "maintenance")
    del found["retryAt"]
    del found["examples"][0]["expect"]["retryAt"]


@case(
    "gaps-without-catch-all-rules",
    [
        "destinations/outreach.json:260:23: warning: /errorTranslation: gap: no rule matches an HTTP 403 response; dest-engine would REJECT it with a generic message; add a rule for it (or a 4xx/5xx catch-all)",
        "destinations/outreach.json:260:23: warning: /errorTranslation: gap: no rule matches an HTTP 404 response; dest-engine would REJECT it with a generic message; add a rule for it (or a 4xx/5xx catch-all)",
        "destinations/outreach.json:260:23: warning: /errorTranslation: gap: no rule matches an HTTP 408 response; dest-engine would RETRY it with a generic message; add a rule for it (or a 4xx/5xx catch-all)",
        "destinations/outreach.json:260:23: warning: /errorTranslation: gap: no rule matches an HTTP 409 response; dest-engine would REJECT it with a generic message; add a rule for it (or a 4xx/5xx catch-all)",
        "destinations/outreach.json:260:23: warning: /errorTranslation: gap: no rule matches an HTTP 500 response; dest-engine would RETRY it with a generic message; add a rule for it (or a 4xx/5xx catch-all)",
        "destinations/outreach.json:260:23: warning: /errorTranslation: gap: no rule matches an HTTP 502 response; dest-engine would RETRY it with a generic message; add a rule for it (or a 4xx/5xx catch-all)",
        "destinations/outreach.json:260:23: warning: /errorTranslation: gap: no rule matches an HTTP 504 response; dest-engine would RETRY it with a generic message; add a rule for it (or a 4xx/5xx catch-all)",
        summary(0, 7),
    ],
    exit_code=0,
)
def _no_catch_all(spec: Spec) -> None:
    catch_all = {"server-error", "client-error"}
    spec["errorTranslation"] = [r for r in spec["errorTranslation"] if r["name"] not in catch_all]


# aggregation and segment mapping


@case(
    "includeSegmentStatus-without-includeSegmentId",
    [
        "destinations/outreach.json:201:33: /aggregation/configurableAggregation/aggregationKey/includeSegmentStatus: includeSegmentStatus needs includeSegmentId: true",
        "destinations/outreach.json:547:18: /errorTranslation/8/message: `input.profile` does not exist: a request of this spec carries several profiles (aggregation); loop over `input.profiles`",
        summary(2, 0),
    ],
)
def _segment_status_without_id(spec: Spec) -> None:
    configurable_aggregation(spec, {"includeSegmentStatus": True})
    url(spec)["value"] = "https://api.outreach.io/api/v2/prospects"
    http(spec)["requestBody"] = {
        "templatingStrategy": "JINJA",
        "value": '{"count": {{ input.profiles | length }}}',
    }


@case(
    "aggregated-templates-use-input-profile",
    [
        "destinations/outreach.json:201:33: /aggregation/configurableAggregation/aggregationKey/includeSegmentStatus: includeSegmentStatus needs includeSegmentId: true",
        "destinations/outreach.json:210:18: /destinationServer/urlBasedDestination/url/value: `input.profile` does not exist: a request of this spec carries several profiles (aggregation); loop over `input.profiles`",
        "destinations/outreach.json:547:18: /errorTranslation/8/message: `input.profile` does not exist: a request of this spec carries several profiles (aggregation); loop over `input.profiles`",
        "templates/outreach/prospect.json.j2:4: `input.profile` does not exist: a request of this spec carries several profiles (aggregation); loop over `input.profiles`",
        "templates/outreach/prospect.json.j2:6: `input.profile` does not exist: a request of this spec carries several profiles (aggregation); loop over `input.profiles`",
        summary(5, 0),
    ],
)
def _aggregated_with_profile_templates(spec: Spec) -> None:
    configurable_aggregation(spec, {"includeSegmentStatus": True})


@case(
    "aggregation-group-unknown-namespace",
    [
        "destinations/outreach.json:205:15: /aggregation/configurableAggregation/aggregationKey/groups/0/namespaces/0: identity namespace 'OutreachID' is not in identityNamespaces (OutreachId)",
        "destinations/outreach.json:554:18: /errorTranslation/8/message: `input.profile` does not exist: a request of this spec carries several profiles (aggregation); loop over `input.profiles`",
        summary(2, 0),
    ],
)
def _group_namespace(spec: Spec) -> None:
    configurable_aggregation(
        spec, {"includeIdentity": True, "groups": [{"namespaces": ["OutreachID"]}]}
    )
    url(spec)["value"] = "https://api.outreach.io/api/v2/prospects"
    http(spec)["requestBody"] = {"templatingStrategy": "JINJA", "value": "{}"}


@case(
    "mapping-id-minimum-above-maximum",
    [
        "destinations/outreach.json:44:24: /segmentMappingConfig/mappingIdSchema: minimum is greater than maximum",
        summary(1, 0),
    ],
)
def _mapping_id_range(spec: Spec) -> None:
    spec["segmentMappingConfig"]["mappingIdSchema"]["minimum"] = 200


@pytest.mark.parametrize("spec_case", CASES)
def test_broken_variant(spec_case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_workspace(
        tmp_path,
        spec_case.mutate,
        templates={BODY_FILE: BODY, **(spec_case.templates or {})},
        edit_text=spec_case.edit_text,
    )
    monkeypatch.chdir(tmp_path)
    result = invoke(SPEC)
    assert result.stdout == "".join(line + "\n" for line in spec_case.expected)
    assert result.stderr == ""
    assert result.exit_code == spec_case.exit_code


# --- the real spec ------------------------------------------------------------


@pytest.mark.parametrize("ref", ["destinations/outreach.json", "outreach"])
def test_real_spec_is_valid(ref: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = invoke(ref)
    assert result.stdout == f"{ref}: valid (0 errors, 0 warnings)\n"
    assert result.stderr == ""
    assert result.exit_code == 0


def test_the_copied_workspace_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline of every broken variant: unchanged spec, our own body template."""
    write_workspace(tmp_path, templates={BODY_FILE: BODY})
    monkeypatch.chdir(tmp_path)
    result = invoke(SPEC)
    assert result.stdout == summary(0, 0) + "\n"
    assert result.exit_code == 0


# --- unreadable files -----------------------------------------------------------


def test_missing_file_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("destinations/nope.json")
    assert result.stdout == ""
    assert result.stderr == "error: destinations/nope.json: no such file\n"
    assert result.exit_code == 2


def test_folder_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "destinations" / "outreach.json").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    result = invoke(SPEC)
    assert result.stdout == ""
    assert result.stderr == "error: destinations/outreach.json: is a folder, not a file\n"
    assert result.exit_code == 2


def test_byte_order_mark_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_workspace(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    act = tmp_path / "act.json"
    act.write_bytes(b"\xef\xbb\xbf" + (ROOT / "examples/outreach/activation.json").read_bytes())
    monkeypatch.chdir(tmp_path)
    result = invoke(SPEC, "--activation", "act.json")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == summary(0, 0) + "\n"


@pytest.mark.parametrize(
    ("encoding", "says"),
    [
        ("utf-16", "UTF-16 text; save it as UTF-8 (in PowerShell: Out-File -Encoding utf8)"),
        ("utf-16-le", "UTF-16 text; save it as UTF-8 (in PowerShell: Out-File -Encoding utf8)"),
        ("utf-32", "UTF-32 text; save it as UTF-8"),
    ],
)
def test_utf16_spec_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str, says: str
) -> None:
    path = write_workspace(tmp_path)
    path.write_bytes(path.read_text(encoding="utf-8").encode(encoding))
    monkeypatch.chdir(tmp_path)
    result = invoke(SPEC)
    assert result.stderr == f"error: destinations/outreach.json: the file is {says}\n"
    assert result.exit_code == 2


def test_unknown_destination_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_workspace(tmp_path, name="acme")
    monkeypatch.chdir(tmp_path)
    result = invoke("nope")
    prefix = "error: no destination named 'nope' in ./destinations or the bundled ones; available: "
    assert result.stderr.startswith(prefix)
    available = result.stderr.removeprefix(prefix).rstrip("\n").split(", ")
    assert {"acme", "outreach"} <= set(available)  # ./destinations and the bundled ones
    assert result.stdout == ""
    assert result.exit_code == 2


def test_no_spec_is_a_usage_error() -> None:
    result = invoke()
    assert "Missing argument 'SPEC...'" in result.stderr
    assert result.exit_code == 2


# --- --format json --------------------------------------------------------------


def test_json_format_of_a_valid_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = invoke("outreach", "--format", "json")
    assert json.loads(result.stdout) == {
        "results": [{"spec": "outreach", "valid": True, "findings": []}]
    }
    assert result.exit_code == 0


def test_json_format_lists_the_same_findings_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several errors in the spec and in a template file, with and without columns."""
    write_workspace(tmp_path, _aggregated_with_profile_templates, templates={BODY_FILE: BODY})
    monkeypatch.chdir(tmp_path)
    text = invoke(SPEC)
    as_json = invoke(SPEC, "--format", "json")

    assert as_json.exit_code == text.exit_code == 1
    report = json.loads(as_json.stdout)
    assert [(r["spec"], r["valid"]) for r in report["results"]] == [(SPEC, False)]
    findings = report["results"][0]["findings"]
    assert len(findings) == 5
    for finding in findings:
        assert set(finding) == {"file", "line", "column", "pointer", "message", "severity"}
        assert isinstance(finding["line"], int)
        assert finding["severity"] == "error"
    assert {f["file"] for f in findings} == {SPEC, "templates/outreach/prospect.json.j2"}
    *finding_lines, verdict = text.stdout.splitlines()
    assert [text_of(f) for f in findings] == finding_lines
    assert verdict == summary(5, 0)


def test_json_format_reports_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_workspace(tmp_path, _no_catch_all, templates={BODY_FILE: BODY})
    monkeypatch.chdir(tmp_path)
    result = invoke(SPEC, "--format", "json")
    assert result.exit_code == 0
    (only,) = json.loads(result.stdout)["results"]
    assert only["valid"] is True
    assert {f["severity"] for f in only["findings"]} == {"warning"}
    assert only["findings"][0] == {
        "file": SPEC,
        "line": 260,
        "column": 23,
        "pointer": "/errorTranslation",
        "message": "gap: no rule matches an HTTP 403 response; dest-engine would REJECT it"
        " with a generic message; add a rule for it (or a 4xx/5xx catch-all)",
        "severity": "warning",
    }


# --- several specs in one call ---------------------------------------------------


def write_three(root: Path) -> None:
    """destinations/outreach.json (valid), broken-host.json and broken-type.json."""
    write_workspace(root, templates={BODY_FILE: BODY})
    write_workspace(root, _url_host, name="broken-host")
    write_workspace(root, _string_for_integer, name="broken-type")


def test_several_specs_each_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_three(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = invoke(SPEC, "destinations/broken-host.json", "broken-type")
    assert result.stdout.splitlines() == [
        summary(0, 0),
        "destinations/broken-host.json:208:18: /destinationServer/urlBasedDestination/url/value:"
        " host api.outreach.com is not in allowedHosts (api.outreach.io); add it there or fix"
        " the URL",
        summary(1, 0, "destinations/broken-host.json"),
        "destinations/broken-type.json:252:20: /retryPolicy/maxAttempts: must be an integer,"
        ' not a string ("5")',
        summary(1, 0, "broken-type"),
    ]
    assert result.stderr == ""
    assert result.exit_code == 1


def test_several_valid_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_workspace(tmp_path, templates={BODY_FILE: BODY})
    write_workspace(tmp_path, name="copy")
    monkeypatch.chdir(tmp_path)
    result = invoke(SPEC, "copy")
    assert result.stdout.splitlines() == [summary(0, 0), summary(0, 0, "copy")]
    assert result.exit_code == 0


def test_several_specs_one_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unreadable one makes the exit code 2; the others are still checked and reported."""
    write_three(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = invoke("broken-type", "destinations/nope.json", SPEC)
    assert result.stdout.splitlines() == [
        "destinations/broken-type.json:252:20: /retryPolicy/maxAttempts: must be an integer,"
        ' not a string ("5")',
        summary(1, 0, "broken-type"),
        summary(0, 0),
    ]
    assert result.stderr == "error: destinations/nope.json: no such file\n"
    assert result.exit_code == 2


def test_several_specs_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_three(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = invoke(SPEC, "broken-host", "broken-type", "--format", "json")
    results = json.loads(result.stdout)["results"]
    assert [(r["spec"], r["valid"], len(r["findings"])) for r in results] == [
        (SPEC, True, 0),
        ("broken-host", False, 1),
        ("broken-type", False, 1),
    ]
    assert [r["findings"][0]["pointer"] for r in results[1:]] == [
        "/destinationServer/urlBasedDestination/url/value",
        "/retryPolicy/maxAttempts",
    ]
    assert result.exit_code == 1

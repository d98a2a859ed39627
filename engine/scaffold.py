"""Scaffold: `dest-engine new NAME` writes a destination that validates and renders as it is.

The spec's `description` fields say what each section is for; replace the
example values with the destination's own.
"""

from __future__ import annotations

import contextlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

BODY = """{#- One contact per request: the mapped attributes and the audiences it is in or left. -#}
{
  "id": "{{ input.profile.identityMap.ContactId[0].id }}",
  "properties": {
    {%- for attribute in input.profile.attributes %}{{ "," if not loop.first }}
    "{{ attribute.key }}": {{ attribute.value.value | tojson }}
    {%- endfor %}
  },
  "lists": {
    "add": [
      {%- for s in input.profile.segmentMembership.ups | added %}{{ "," if not loop.first }}
      "{{ destination.segmentAliases[s.key] }}"
      {%- endfor %}
    ],
    "remove": [
      {%- for s in input.profile.segmentMembership.ups | removed %}{{ "," if not loop.first }}
      "{{ destination.segmentAliases[s.key] }}"
      {%- endfor %}
    ]
  }
}
"""

TEST = '''"""Snapshot of the requests {name} renders for its example (dest-engine new)."""

from pathlib import Path

from click.testing import CliRunner

from engine.cli import main


def test_{ident}_renders_its_example(snapshot, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    result = CliRunner().invoke(main, ["render", "{name}"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == snapshot
'''


def _spec(name: str) -> dict[str, Any]:
    host = "api.example.com"
    return {
        "$schema": "../schemas/destination.schema.json",
        "name": name,
        "title": name.replace("-", " ").title(),
        "description": f"{name}: keeps contacts' list memberships and attributes in sync with your"
        " audiences. Replace the example values with the destination's own.",
        "status": "TEST",
        "uiAttributes": {
            "documentationLink": f"https://{host}/docs",
            "category": "crm",
            "connectionType": "Server-to-server",
            "frequency": "Streaming",
        },
        "customerAuthenticationConfigurations": [{"authType": "BEARER"}],
        "customerDataFields": [
            {
                "name": "region",
                "type": "string",
                "title": "Region",
                "description": "An example per-connection setting, read as customerData.region.",
                "enum": ["eu", "us"],
                "default": "eu",
            }
        ],
        "identityNamespaces": {
            "ContactId": {
                "title": "Contact id",
                "description": "The destination's contact id (here: digits).",
                "required": True,
                "pattern": "^[0-9]{1,18}$",
            }
        },
        "segmentMappingConfig": {
            "mapUserInput": True,
            "mappingIdTitle": "List id",
            "mappingIdDescription": "The id of the destination's list that mirrors the audience.",
            "mappingIdSchema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        },
        "schemaConfig": {
            "profileFields": [
                {"name": "firstName", "title": "First name", "type": "string", "maxLength": 255},
                {"name": "lastName", "title": "Last name", "type": "string", "maxLength": 255},
            ],
            "segmentRequired": True,
            "identityRequired": True,
        },
        "aggregation": {
            "aggregationType": "BEST_EFFORT",
            "bestEffortAggregation": {"maxUsersPerRequest": 1, "splitUserById": True},
        },
        "destinationServer": {
            "destinationServerType": "URL_BASED",
            "urlBasedDestination": {
                "url": {
                    "templatingStrategy": "JINJA",
                    "value": f"https://{host}/v1/{{{{ customerData.region }}}}/contacts/"
                    "{{ input.profile.identityMap.ContactId[0].id }}",
                }
            },
            "httpTemplate": {
                "httpMethod": "PUT",
                "contentType": "application/json",
                "headers": [
                    {
                        "header": "Authorization",
                        "value": {
                            "templatingStrategy": "JINJA",
                            "value": "Bearer {{ authData.accessToken }}",
                        },
                    }
                ],
                "requestBody": {"templatingStrategy": "JINJA", "file": f"{name}/body.json.j2"},
            },
        },
        "allowedHosts": [host],
        "rateLimit": {
            "requests": 100,
            "periodSeconds": 60,
            "scope": "connection",
            "window": "fixed",
            "headers": {"remaining": "X-RateLimit-Remaining", "reset": "X-RateLimit-Reset"},
        },
        "retryPolicy": {"maxAttempts": 5, "initialBackoffSeconds": 1, "maxBackoffSeconds": 30},
        "errorTranslation": [
            _rule(
                "unauthorized",
                [401],
                "FAIL_RUN",
                "The token was refused: import a new one"
                f" with `dest-engine auth import {name} --connection NAME`.",
            ),
            _rule("not-found", [404], "REJECT", "No contact has this ContactId."),
            _rule(
                "rate-limited",
                [429],
                "RATE_LIMITED",
                "The rate limit is reached; waiting.",
                retry_at=[{"header": "Retry-After", "format": "seconds"}],
            ),
            _rule(
                "server-error",
                ["5xx"],
                "RETRY",
                "A temporary failure (HTTP {{ response.status }}).",
            ),
            _rule(
                "client-error",
                ["4xx"],
                "REJECT",
                "The request was refused (HTTP {{ response.status }}).",
            ),
        ],
    }


def _rule(
    name: str,
    status: list[int | str],
    action: str,
    message: str,
    retry_at: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    example_status = status[0] if isinstance(status[0], int) else int(str(status[0])[0]) * 100 + 3
    rule: dict[str, Any] = {"name": name, "match": {"status": status}, "action": action}
    if retry_at:
        rule["retryAt"] = retry_at
    rule["message"] = message
    example: dict[str, Any] = {"status": example_status, "body": {"error": name}}
    if retry_at:
        example["headers"] = {"Retry-After": "30"}
    rule["examples"] = [{"response": example, "expect": {"action": action}}]
    return rule


def _activation(name: str) -> dict[str, Any]:
    return {
        "destination": name,
        "connection": f"{name}-main",
        "customerData": {"region": "eu"},
        "mappings": [
            {"source": "identityMap.CRMID", "target": "ContactId"},
            {"source": "person.name.firstName", "target": "firstName"},
            {"source": "person.name.lastName", "target": "lastName"},
        ],
        "audiences": [
            {"id": "aud-newsletter", "name": "Newsletter", "mappingId": "list-news"},
            {"id": "aud-trial", "name": "Trial users", "mappingId": "list-trial"},
        ],
    }


PROFILES = [
    {
        "identityMap": {"CRMID": [{"id": "101"}]},
        "person": {"name": {"firstName": "Ada", "lastName": "Lovelace"}},
        "segmentMembership": {"ups": {"aud-newsletter": {"status": "realized"}}},
    },
    {
        "identityMap": {"CRMID": [{"id": "102"}]},
        "person": {"name": {"firstName": "Alan"}},
        "segmentMembership": {
            "ups": {"aud-newsletter": {"status": "exited"}, "aud-trial": {"status": "realized"}}
        },
    },
]


def scaffold(name: str, root: Path) -> list[Path]:
    """Write the new destination's files under `root`; refuse to overwrite any."""
    schema = (
        resources.files("engine.schemas").joinpath("destination.schema.json").read_text("utf-8")
    )
    files = {
        root / "destinations" / f"{name}.json": json.dumps(_spec(name), indent=2) + "\n",
        root / "templates" / name / "body.json.j2": BODY,
        root / "examples" / name / "activation.json": json.dumps(_activation(name), indent=2)
        + "\n",
        root / "examples" / name / "profiles.jsonl": "".join(
            json.dumps(p) + "\n" for p in PROFILES
        ),
        root / "tests" / f"test_{name.replace('-', '_')}.py": TEST.format(
            name=name, ident=name.replace("-", "_")
        ),
    }
    schema_path = root / "schemas" / "destination.schema.json"
    if not schema_path.exists():  # for editors' completion and hover help
        files[schema_path] = schema
    in_the_way = [path for path in files if path.exists()] + [
        folder for path in files for folder in path.parents if folder.is_file()
    ]
    if in_the_way:
        raise FileExistsError(", ".join(str(p) for p in dict.fromkeys(in_the_way)))
    _write_all(files)
    return list(files)


def _write_all(files: dict[Path, str]) -> None:
    """Write every file or none: after an OSError, remove what was made, then re-raise it."""
    made: list[Path] = []
    try:
        for path, text in files.items():
            missing = [path.parent, *path.parent.parents]
            made += reversed([folder for folder in missing if not folder.exists()])
            path.parent.mkdir(parents=True, exist_ok=True)
            made.append(path)
            path.write_text(text, encoding="utf-8")
    except OSError:
        for path in reversed(made):  # files before their folders
            with contextlib.suppress(OSError):
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink(missing_ok=True)
        raise

"""The destination JSON Schema gives editors completion and hover help everywhere.

Every property schema (each entry of every `properties` object, each `$defs`
entry, and each `items` / `additionalProperties` schema, at any depth) needs a
non-empty `title` and `description`. The walk is generic: a new property without
help fails the test, which names it by JSON pointer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parent.parent
OUTREACH = ROOT / "destinations" / "outreach.json"

# Keywords whose value is a map of name -> schema.
SCHEMA_MAPS = ("properties", "$defs", "patternProperties", "dependentSchemas")
# Keywords whose value is one schema that describes a value the user writes.
VALUE_SCHEMAS = ("items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems")
# Keywords whose value is data, not schemas: never walked into. (A property *named*
# `title` or `default` is an entry of a `properties` map, handled above them.)
DATA_KEYWORDS = ("enum", "const", "default", "examples", "required", "title", "description")


def load_schema() -> dict[str, Any]:
    text = resources.files("engine.schemas").joinpath("destination.schema.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def property_schemas(node: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """(pointer, schema) for every schema that needs a title and a description."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from property_schemas(item, f"{pointer}/{i}")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        here = f"{pointer}/{_escape(key)}"
        if key in DATA_KEYWORDS:
            continue
        if key in SCHEMA_MAPS and isinstance(value, dict):
            for name, schema in value.items():
                entry = f"{here}/{_escape(name)}"
                yield entry, schema
                yield from property_schemas(schema, entry)
        elif key in VALUE_SCHEMAS and isinstance(value, dict):
            yield here, value
            yield from property_schemas(value, here)
        else:
            yield from property_schemas(value, here)


def missing_help(schema: Any) -> list[str]:
    """Pointers of property schemas without a non-empty title or description."""
    offenders = []
    for pointer, sub in property_schemas(schema):
        if not isinstance(sub, dict):
            offenders.append(f"{pointer} (not an object schema)")
            continue
        lacking = [
            k
            for k in ("title", "description")
            if not (isinstance(sub.get(k), str) and sub[k].strip())
        ]
        if lacking:
            offenders.append(f"{pointer} (no {' or '.join(lacking)})")
    return offenders


def test_every_property_has_title_and_description() -> None:
    offenders = missing_help(load_schema())
    assert not offenders, "schema entries without editor help:\n" + "\n".join(offenders)


def test_walk_covers_the_schema() -> None:
    pointers = {p for p, _ in property_schemas(load_schema())}
    for expected in (
        "/properties/name",
        "/$defs/errorRule",
        "/$defs/errorRule/properties/examples/items/properties/expect/properties/action",
        "/properties/identityNamespaces/additionalProperties",
        "/properties/allowedHosts/items",
        "/$defs/authConfiguration/allOf/0/if/properties/authType",
        "/$defs/customerDataField/properties/title",
    ):
        assert expected in pointers


@pytest.mark.parametrize(
    ("schema", "offender"),
    [
        ({"properties": {"a": {"type": "string"}}}, "/properties/a (no title or description)"),
        (
            {"$defs": {"d": {"title": "D", "description": " "}}},
            "/$defs/d (no description)",
        ),
        (
            {"properties": {"a": {"title": "A", "description": "A.", "items": {"title": "I"}}}},
            "/properties/a/items (no description)",
        ),
        (
            {"additionalProperties": {"properties": {"x/y": {"description": "X."}}}},
            "/additionalProperties/properties/x~1y (no title)",
        ),
        (
            {"allOf": [{"if": {"properties": {"k": {"const": 1}}}}]},
            "/allOf/0/if/properties/k (no title or description)",
        ),
    ],
)
def test_walker_reports_offenders(schema: dict[str, Any], offender: str) -> None:
    assert offender in missing_help(schema)


def test_schema_is_valid_draft_2020_12() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_outreach_spec_validates() -> None:
    validator = Draft202012Validator(
        load_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    spec = json.loads(OUTREACH.read_text(encoding="utf-8"))
    errors = [
        f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(spec)
    ]
    assert not errors, "destinations/outreach.json:\n" + "\n".join(errors)

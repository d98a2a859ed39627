"""The JSON Schemas shipped with dest-engine, and their errors told as sentences.

Every schema error becomes a `Finding` with file, line, JSON pointer and a
message a person understands; a misspelled property gets "did you mean".
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match

from engine.findings import Document, Finding, pointer_of

TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@cache
def load(name: str) -> dict[str, Any]:
    """A bundled schema by name: `destination` or `activation`."""
    text = resources.files("engine.schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def check(doc: Document, name: str) -> list[Finding]:
    """All schema errors of a document, in file order."""
    findings: list[Finding] = []
    for error in validator(name).iter_errors(doc.data):
        findings += _findings(doc, error)
    unique = {(f.pointer, f.message): f for f in findings}
    return sorted(unique.values(), key=lambda f: (f.line or 0, f.column or 0, f.pointer))


def _findings(doc: Document, error: ValidationError) -> list[Finding]:
    pointer = pointer_of(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(_schema_of(error).get("properties", {}))
        extras = [k for k in error.instance if k not in allowed]
        return [
            doc.finding(f"{pointer}/{pointer_of([k])[1:]}", _unknown_property(k, allowed), key=True)
            for k in extras
        ]
    if kind in ("anyOf", "oneOf") and error.context:
        return [doc.finding(pointer, _anyof_message(error))]
    if kind == "required" and isinstance(error.instance, dict):
        return _missing(doc, pointer, error)
    return [doc.finding(pointer, describe(error))]


def _missing(doc: Document, pointer: str, error: ValidationError) -> list[Finding]:
    """Missing required properties, except those a misspelled key already explains."""
    instance: Any = error.instance
    required: Any = error.validator_value
    allowed = list(_schema_of(error).get("properties", {}))
    unknown = [k for k in instance if allowed and k not in allowed]
    # An `if`/`then` block's description says when its properties are required.
    why = None if allowed else _schema_of(error).get("description")
    findings = []
    for name in required:
        if name in instance or difflib.get_close_matches(name, unknown, n=1, cutoff=0.6):
            continue
        message = f"missing required property {name!r}" + (f" ({why})" if why else "")
        findings.append(doc.finding(pointer, message))
    return findings


def _unknown_property(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown property {name!r}; did you mean {close[0]!r}?"
    return f"unknown property {name!r}; allowed here: {', '.join(allowed)}"


def _anyof_message(error: ValidationError) -> str:
    options = [_expected(sub) for sub in _schema_of(error)[str(error.validator)]]
    if all(options):
        return f"must be {' or '.join(options)}, not {_show(error.instance)}"
    return describe(best_match(error.context or []))


def _schema_of(error: ValidationError) -> dict[str, Any]:
    return error.schema if isinstance(error.schema, dict) else {}


def _expected(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    text = TYPE_NAMES.get(kind, "") if isinstance(kind, str) else ""
    if "minimum" in schema and "maximum" in schema:
        text += f" from {schema['minimum']} to {schema['maximum']}"
    if "pattern" in schema:
        text += f" matching {schema['pattern']}"
    return text


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_of(value: Any) -> str:
    for name, py in (("boolean", bool), ("integer", int), ("number", float), ("string", str)):
        if isinstance(value, py):
            return TYPE_NAMES[name]
    if isinstance(value, dict):
        return TYPE_NAMES["object"]
    if isinstance(value, list):
        return TYPE_NAMES["array"]
    return "null"


def describe(error: ValidationError) -> str:
    """One sentence for one schema error."""
    kind, value = error.validator, error.instance
    expected: Any = error.validator_value
    if kind == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(TYPE_NAMES.get(n, n) for n in names)
        return f"must be {wanted}, not {_type_of(value)} ({_show(value)})"
    if kind == "enum":
        options = [str(o) for o in expected]
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"must be one of {', '.join(options)}, not {_show(value)}{hint}"
    if kind == "const":
        return f"must be {_show(expected)}, not {_show(value)}"
    if kind == "pattern":
        return f"{_show(value)} does not match the pattern {expected}"
    if kind == "minimum":
        return f"must be at least {expected}, not {_show(value)}"
    if kind == "maximum":
        return f"must be at most {expected}, not {_show(value)}"
    if kind == "exclusiveMinimum":
        return f"must be greater than {expected}, not {_show(value)}"
    if kind == "minItems":
        return "must not be empty" if expected == 1 else f"must have at least {expected} items"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if kind == "minProperties":
        return "must not be empty" if expected == 1 else f"must have at least {expected} entries"
    if kind == "format":
        return f"{_show(value)} is not a valid {expected}"
    if kind == "propertyNames":
        return describe(best_match(error.context or [])) if error.context else error.message
    return error.message

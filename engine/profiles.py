"""Profiles: XDM-style profiles streamed from JSONL, a JSON array, or stdin.

Memory stays flat however many profiles there are: one record at a time.
A record that is not a JSON object is reported with its place and skipped.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import ijson

from engine.findings import reading


class ProfileRecord(NamedTuple):
    """One input profile and where it came from (`line 3`, `item 3`)."""

    ref: str
    data: dict[str, Any]


class BadRecord(NamedTuple):
    """An input record that is not a profile, and why."""

    ref: str
    reason: str


Record = ProfileRecord | BadRecord


def read_profiles(source: str | Path) -> Iterator[Record]:
    """Stream records from a file path or `-` (stdin); JSONL unless the input starts with `[`."""
    if str(source) == "-":
        yield from _read(sys.stdin.buffer)
        return
    path = Path(source)
    with reading(path):
        handle = path.open("rb")
    with handle:
        yield from _read(handle)


def _read(raw: IO[bytes]) -> Iterator[Record]:
    stream = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]
    if _first_byte(stream) == b"[":
        yield from _read_array(stream)
    else:
        yield from _read_lines(stream)


def _first_byte(stream: io.BufferedReader[Any]) -> bytes:
    while True:
        head = stream.peek(64)
        if not head:
            return b""
        stripped = head.lstrip(b" \t\r\n\xef\xbb\xbf")
        if stripped:
            return stripped[:1]
        stream.read(len(head))


def _read_lines(stream: IO[bytes]) -> Iterator[Record]:
    for number, raw_line in enumerate(stream, start=1):
        ref = f"line {number}"
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield BadRecord(ref, f"not UTF-8 text (byte {exc.start})")
            continue
        if not line.strip():
            continue
        try:
            data = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            yield BadRecord(ref, f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        yield _as_profile(ref, data)


def _read_array(stream: IO[bytes]) -> Iterator[Record]:
    number = 0
    try:
        for number, data in enumerate(ijson.items(stream, "item", use_float=True), start=1):
            yield _as_profile(f"item {number}", data)
    except ijson.JSONError as exc:
        yield BadRecord(
            f"after item {number}",
            f"invalid JSON ({str(exc).splitlines()[0]}); the rest of the file cannot be read",
        )


def _as_profile(ref: str, data: Any) -> Record:
    if isinstance(data, dict):
        return ProfileRecord(ref, data)
    kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(data), "a number"
    )
    return BadRecord(ref, f"not a JSON object but {kind}")

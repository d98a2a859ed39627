"""Findings: what is wrong, where (file, line, JSON pointer), and how bad.

Every check in dest-engine reports `Finding`s instead of raising on the first
problem, so a user sees all of them at once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from json_source_map import calculate

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem in a file: `file:line:column: pointer: message`."""

    file: str
    message: str
    pointer: str = ""
    line: int | None = None
    column: int | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        pointer = f" {self.pointer}:" if self.pointer else ""
        label = "" if self.severity == "error" else " warning:"
        return f"{where}:{label}{pointer} {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class InvalidInput(Exception):
    """Raised with the findings that make an input unusable."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("\n".join(str(f) for f in findings))
        self.findings = findings


class UnreadableInput(Exception):
    """A file that cannot be read at all (missing, a folder, no permission)."""


def display_path(path: Path) -> str:
    """The path as the user would type it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass
class Document:
    """A parsed JSON file that can say where each JSON pointer is."""

    path: Path
    name: str
    data: Any
    text: str

    def location(self, pointer: str, *, key: bool = False) -> tuple[int | None, int | None]:
        """1-based line and column of the value at `pointer` (or of its key)."""
        entries = _source_map(self.text)
        entry = entries.get(pointer)
        while entry is None and pointer:
            pointer = pointer.rsplit("/", 1)[0]
            entry = entries.get(pointer)
        if entry is None:
            return None, None
        place = entry.key_start if key and entry.key_start is not None else entry.value_start
        return place.line + 1, place.column + 1

    def finding(
        self, pointer: str, message: str, *, key: bool = False, severity: Severity = "error"
    ) -> Finding:
        line, column = self.location(pointer, key=key)
        return Finding(self.name, message, pointer, line, column, severity)


_SOURCE_MAPS: dict[int, dict[str, Any]] = {}


def _source_map(text: str) -> dict[str, Any]:
    key = hash(text)
    if key not in _SOURCE_MAPS:
        _SOURCE_MAPS.clear()
        _SOURCE_MAPS[key] = calculate(text)
    return _SOURCE_MAPS[key]


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn OS errors on `path` into `UnreadableInput` with a clear message."""
    try:
        yield
    except FileNotFoundError:
        raise UnreadableInput(f"{display_path(path)}: no such file") from None
    except IsADirectoryError:
        raise UnreadableInput(f"{display_path(path)}: is a folder, not a file") from None
    except PermissionError:
        raise UnreadableInput(f"{display_path(path)}: permission denied") from None


NO_CONSTANTS = "JSON has no NaN, Infinity or -Infinity"


class NotJsonValue(ValueError):
    """A value Python's json module reads but JSON (and the APIs) do not have: NaN, Infinity."""

    def __init__(self, value: str, message: str) -> None:
        super().__init__(message)
        self.value = value


def refuse_constant(name: str) -> Any:
    """`parse_constant` for JSON decoders: NaN, Infinity and -Infinity are errors."""
    raise NotJsonValue(name, f"{name} is not a JSON value ({NO_CONSTANTS})")


def json_kind(value: Any) -> str:
    """What a JSON value is, for messages: `an object`, `a list`, `a number`, ..."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if value is None else kinds.get(type(value), "a number")


def wide_encoding(head: bytes) -> str | None:
    """UTF-16 or UTF-32 when a file's first bytes say it is written in one of them, else None.

    By its byte order mark, or by NUL bytes: JSON text starts with an ASCII
    character, which UTF-16 writes with one NUL byte beside it (UTF-32: three),
    and UTF-8 JSON never holds a NUL byte.
    """
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "UTF-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16"
    nul = [byte == 0 for byte in head[:4]]
    if nul in ([False, True, True, True], [True, True, True, False]):
        return "UTF-32"
    if nul[:2] in ([False, True], [True, False]):
        return "UTF-16"
    return None


def wide_encoding_message(name: str, encoding: str, what: str = "file") -> str:
    """`name: the file is UTF-16 text; save it as UTF-8`, and how in PowerShell."""
    how = (
        " (in PowerShell: Out-File -Encoding utf8)"
        if (encoding, what) == ("UTF-16", "file")
        else ""
    )
    return f"{name}: the {what} is {encoding} text; save it as UTF-8{how}"


def read_text(path: Path) -> str:
    """Read a UTF-8 file (without its byte order mark); unreadable files raise `UnreadableInput`."""
    try:
        with reading(path):
            text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        encoding = wide_encoding(exc.object[:4])
        if encoding:
            raise UnreadableInput(wide_encoding_message(display_path(path), encoding)) from None
        raise UnreadableInput(
            f"{display_path(path)}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    if "\x00" in text[:4]:
        encoding = wide_encoding(text[:4].encode())
        if encoding:
            raise UnreadableInput(wide_encoding_message(display_path(path), encoding))
    return text[1:] if text.startswith("\ufeff") else text


def load_document(path: Path) -> Document:
    """Read and parse a JSON file; a syntax error becomes a finding with line and column."""
    name = display_path(path)
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput([_syntax_finding(name, text, exc)]) from None
    return Document(path, name, data, text)


def _syntax_finding(name: str, text: str, exc: json.JSONDecodeError) -> Finding:
    """A JSON syntax error; a trailing comma is named as such, at the comma."""
    before = text[: exc.pos].rstrip()
    closing = text[exc.pos : exc.pos + 1]
    if before.endswith(",") and closing in ("]", "}"):
        comma = len(before) - 1
        line = text.count("\n", 0, comma) + 1
        column = comma - text.rfind("\n", 0, comma)
        return Finding(
            name, f"invalid JSON: trailing comma before '{closing}'; remove it", "", line, column
        )
    return Finding(name, f"invalid JSON: {exc.msg}", "", exc.lineno, exc.colno)


def pointer_of(path: Any) -> str:
    """JSON pointer (RFC 6901) for a sequence of keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)

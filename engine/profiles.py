"""Profiles: XDM-style profiles streamed from JSONL, a JSON array, or stdin.

Memory stays flat however many profiles there are: one record at a time.
A record that is not a JSON object is reported with its place and skipped.

Input is UTF-8 (a byte order mark is dropped); a UTF-16 or UTF-32 file is
refused as a whole (`UnreadableInput`). A JSONL line is skipped, and the run
goes on, when it is not UTF-8, holds NaN or Infinity (not JSON values, though
Python's json module writes them), a string with an unpaired surrogate escape
(`"\\ud800"`: not text) or objects and arrays more than `MAX_DEPTH` levels
inside each other. In a JSON array, where ijson cannot go on after an error,
these problems end the reading with a message that says where (but for an
unpaired surrogate, which ijson's C backend reads as "?"). The usual line
costs next to nothing: the slower checks run only when a quick test calls for
them (more than MAX_DEPTH brackets, a backslash, an error).
"""

from __future__ import annotations

import codecs
import io
import json
import math
import re
import sys
from collections.abc import Iterator
from itertools import accumulate, count
from operator import sub
from pathlib import Path
from typing import IO, Any, NamedTuple

import ijson

from engine.findings import (
    NO_CONSTANTS,
    NotJsonValue,
    UnreadableInput,
    display_path,
    json_kind,
    reading,
    refuse_constant,
    wide_encoding,
    wide_encoding_message,
)

MAX_DEPTH = 100
"""Objects and arrays inside each other in one profile, at most."""

_TOO_DEEP = f"nested too deeply (objects and arrays more than {MAX_DEPTH} levels inside each other)"
_BOM = b"\xef\xbb\xbf"


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
    """Stream records from a file path or `-` (stdin); JSONL unless the input starts with `[`.

    A file that cannot be read at all (missing, UTF-16...) raises `UnreadableInput`
    at the first record asked for.
    """
    if str(source) == "-":
        yield from _read(sys.stdin.buffer, "stdin", "input")
        return
    path = Path(source)
    with reading(path):
        handle = path.open("rb")
    with handle:
        yield from _read(handle, display_path(path), "file")


def is_json_array(path: Path) -> bool:
    """Whether a profiles file holds a JSON array (else JSON Lines), as `read_profiles` decides."""
    with path.open("rb") as stream:
        if stream.peek(len(_BOM)).startswith(_BOM):
            stream.read(len(_BOM))
        return _skip_blank(stream, 0)[0] == b"["


def _read(raw: IO[bytes], name: str, what: str) -> Iterator[Record]:
    stream = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]
    head = stream.peek(4)[:4]
    encoding = wide_encoding(head)
    if encoding:
        raise UnreadableInput(wide_encoding_message(name, encoding, what))
    offset = 0
    if head.startswith(_BOM):
        offset = len(stream.read(len(_BOM)))
    first, offset, line = _skip_blank(stream, offset)
    if first == b"[":
        yield from _read_array(_CheckedArray(stream, offset))
    else:
        yield from _read_lines(stream, line)


def _skip_blank(stream: io.BufferedReader[Any], offset: int) -> tuple[bytes, int, int]:
    """The first byte that is not white space, its offset, and the number of its line."""
    line = 1
    while True:
        head = stream.peek(64)
        if not head:
            return b"", offset, line
        stripped = head.lstrip(b" \t\r\n")
        if stripped:
            return stripped[:1], offset + len(head) - len(stripped), line
        line += head.count(b"\n")
        offset += len(stream.read(len(head)))


# --- JSON Lines ------------------------------------------------------------------------


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        message = f"the number {text} is too large (it would be Infinity; {NO_CONSTANTS})"
        raise NotJsonValue(text, message)
    return value


_DECODER = json.JSONDecoder(parse_constant=refuse_constant, parse_float=_finite)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _read_lines(stream: IO[bytes], start: int) -> Iterator[Record]:
    for number, raw_line in enumerate(stream, start=start):
        record = _line_record(f"line {number}", raw_line)
        if record is not None:
            yield record


def _line_record(ref: str, raw_line: bytes) -> Record | None:
    """The record on one line; None for a blank line."""
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadRecord(ref, f"not UTF-8 text (byte {exc.start}); save the file as UTF-8")
    if not line.strip():
        return None
    if len(raw_line) > 2 * MAX_DEPTH and _too_deep(raw_line):
        return BadRecord(ref, _TOO_DEEP)
    try:
        data = _DECODER.decode(line.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        if raw_line.startswith(_BOM):  # a byte order mark, as in files joined with `cat`
            return _line_record(ref, raw_line[len(_BOM) :])
        return BadRecord(ref, f"invalid JSON: {exc.msg} at column {exc.colno}")
    except NotJsonValue as exc:
        return BadRecord(ref, f"invalid JSON: {exc}")
    except RecursionError:
        return BadRecord(ref, _TOO_DEEP)
    if "\\" in line and _SURROGATE_ESCAPE.search(raw_line):  # (`in` on a str is the fastest)
        reason = _unpaired_surrogate(data)
        if reason:
            return BadRecord(ref, reason)
    return _as_profile(ref, data)


def _unpaired_surrogate(data: Any) -> str | None:
    """Why `data` is not text, when one of its strings holds an unpaired surrogate."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        escape = f"\\u{ord(exc.object[exc.start]):04x}"
        return f"contains {escape}, an unpaired surrogate escape, which is not valid text"
    return None


_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
_PARENS = bytes.maketrans(b"[{]}", b"(())")  # with _NOT_PARTS: "(" and ")" for the brackets
_NOT_PARTS = bytes(b for b in range(256) if b not in b'[]{}"')
_STEPS = bytes.maketrans(b"()", b"\x02\x00")


def _too_deep(raw_line: bytes) -> bool:
    """Whether a line holds objects and arrays more than MAX_DEPTH levels inside each other."""
    if raw_line.count(b"[") + raw_line.count(b"{") <= MAX_DEPTH:
        return False
    parens, _, _ = _structure(raw_line, False)
    return _deeper_than(parens, MAX_DEPTH)


def _structure(text: bytes, in_string: bool) -> tuple[bytes, bool, bool]:
    """The brackets of JSON `text` outside its strings, as `(` and `)`, at C speed.

    Also whether `text` ends inside a string, and then right after a backslash.
    `in_string`: whether `text` starts inside a string.
    """
    if b"\\" in text:  # \\ and \" do not end a string: drop them
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    parts = text.translate(_PARENS, _NOT_PARTS)
    if in_string:
        parts = b'"' + parts
    ends_in_string = parts.count(b'"') % 2 == 1
    # Dropping two quotes side by side leaves every other byte in or out of a string as it
    # was; most strings hold no bracket, so the split is left with the few that do.
    parens = b"".join(parts.replace(b'""', b"").split(b'"')[::2])
    return parens, ends_in_string, ends_in_string and text.endswith(b"\\")


def _deeper_than(parens: bytes, limit: int) -> bool:
    """Whether `parens` (only `(` and `)`) go more than `limit` levels deep from level 0."""
    if parens.count(b"(") <= limit:
        return False
    # An upper bound first: the pairs taken away layer by layer (as deep as the deepest
    # closed group), plus the "(" left open.
    rest, layers = parens, 0
    while layers <= limit:
        inner = rest.replace(b"()", b"")
        if len(inner) == len(rest):
            if layers + rest.count(b"(") <= limit:
                return False
            break
        rest, layers = inner, layers + 1
    return int(max(map(sub, accumulate(parens.translate(_STEPS)), count(1)))) > limit


# --- JSON arrays -----------------------------------------------------------------------


def _read_array(checked: _CheckedArray) -> Iterator[Record]:
    number = 0
    try:
        for number, data in enumerate(ijson.items(checked, "item", use_float=True), start=1):
            yield _as_profile(f"item {number}", data)
    except _ArrayProblem as exc:
        reason = f"{exc}; the rest of the file cannot be read{exc.advice}"
        yield BadRecord(f"after item {number}", reason)
    except ijson.JSONError as exc:
        message = _first_line(exc)
        lexical = message.startswith(("lexical error", "Unexpected symbol"))  # C or Python ijson
        constant = checked.constant() if lexical else None
        yield BadRecord(
            f"after item {number}",
            f"{constant or f'invalid JSON ({message})'}; the rest of the file cannot be read",
        )


def _first_line(exc: Exception) -> str:
    """The first line of an ijson error, which may hold bytes or another exception."""
    message = exc.args[0] if exc.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return (str(message).strip().splitlines() or [""])[0]


class _ArrayProblem(Exception):
    """Why the rest of a JSON array cannot be read, and what to do (`: save it as UTF-8`)."""

    def __init__(self, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.advice = advice


_CONSTANT_LETTERS = frozenset(b"-NaInfity")
_PART_OF_CONSTANT = re.compile(rb"(?:-|-?(?:N|Na|I|In|Inf|Infi|Infin|Infini|Infinit))\Z")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[{]|[\]}]|-?NaN|-?Infinity', re.DOTALL)


class _CheckedArray:
    """A JSON array's bytes for ijson, checked as they are read, at C speed.

    - UTF-8: the offset of a byte that is not (ijson would dump raw bytes).
    - Depth: ijson takes memory quadratic in nesting depth (1 GB for a 200 KB
      file nested 20,000 deep), so an item nested deeper than MAX_DEPTH stops
      the read.
    - NaN and Infinity: ijson stops at them ("invalid char"); `constant` then
      names them, with their offset.

    On a problem, the bytes before it are returned, so that ijson yields the
    items they complete, and the next read raises `_ArrayProblem`.
    """

    def __init__(self, stream: IO[bytes], offset: int) -> None:
        self._stream = stream
        self._offset = offset  # in the file, of the next byte returned
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._depth = 0  # the array itself is level 1, its items 2
        self._in_string = False  # the last chunk ended inside a string...
        self._escaped = False  # ... right after a backslash
        self._problem: _ArrayProblem | None = None
        self._last = (b"", 0, 0, False, False)  # the last chunk, with its offset and state

    def read(self, size: int = -1) -> bytes:
        if self._problem is not None:
            raise self._problem
        chunk = self._stream.read(size)
        if size == 0:
            return chunk
        if chunk and chunk[-1] in _CONSTANT_LETTERS and _PART_OF_CONSTANT.search(chunk[-9:]):
            chunk += self._stream.read(8)  # the rest of NaN or Infinity, to name it (once)
        found = self._check_utf8(chunk)
        end = len(chunk) if found is None else found[0]
        found = self._check_structure(chunk[:end]) or found
        if found is not None:
            end, self._problem = found
            chunk = chunk[:end]
            if not chunk:
                raise self._problem
        self._offset += len(chunk)
        return chunk

    def _check_utf8(self, chunk: bytes) -> tuple[int, _ArrayProblem] | None:
        pending = len(self._utf8.getstate()[0])  # bytes of a character the last chunk began
        try:
            self._utf8.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            at = exc.start - pending
            message = f"not UTF-8 text (byte {self._offset + at})"
            return max(at, 0), _ArrayProblem(message, ": save it as UTF-8")
        return None

    def _check_structure(self, chunk: bytes) -> tuple[int, _ArrayProblem] | None:
        """Follow strings and brackets through `chunk`: the first problem, and where it is."""
        if not chunk:
            return None
        self._last = (chunk, self._offset, self._depth, self._in_string, self._escaped)
        text = chunk[1:] if self._escaped else chunk  # its first byte is escaped: not a quote
        parens, in_string, escaped = _structure(text, self._in_string)
        if _deeper_than(parens, MAX_DEPTH + 1 - self._depth):
            found = _locate(*self._last)
            if found is not None:
                return found
        self._depth = max(self._depth + 2 * parens.count(b"(") - len(parens), 0)
        self._in_string, self._escaped = in_string, escaped
        return None

    def constant(self) -> str | None:
        """NaN or Infinity in the last chunk read: what ijson stopped at, with its offset."""
        found = _locate(*self._last, constants=True)
        return None if found is None else str(found[1])


def _locate(
    chunk: bytes, offset: int, depth: int, in_string: bool, escaped: bool, constants: bool = False
) -> tuple[int, _ArrayProblem] | None:
    """The slow way, for a chunk with a problem: which one, and where.

    From the state before the chunk: its offset in the file, the depth, whether
    it starts in a string, and then right after a backslash.
    """
    start = 0
    if in_string:  # skip to the end of the string the last chunk ended in
        start = _STRING_REST.match(chunk, 1 if escaped else 0).end()  # type: ignore[union-attr]
        if chunk[start : start + 1] != b'"':
            return None
        start += 1
    for match in _TOKEN.finditer(chunk, start):
        token = match.group()
        if token[:1] == b'"':
            if len(token) == 1:  # a string that goes on in the next chunk
                return None
            continue
        at = offset + match.start()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH + 1 and not constants:
                return match.start(), _ArrayProblem(f"an item (byte {at}) is {_TOO_DEEP}")
        elif token in (b"]", b"}"):
            depth -= 1
        else:
            message = f"{token.decode()} (byte {at}) is not a JSON value ({NO_CONSTANTS})"
            return match.start(), _ArrayProblem(message)
    return None


def _as_profile(ref: str, data: Any) -> Record:
    if isinstance(data, dict):
        return ProfileRecord(ref, data)
    return BadRecord(ref, f"not a JSON object but {json_kind(data)}")

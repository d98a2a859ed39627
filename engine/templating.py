"""Templating: a Batch becomes a Request (method, URL, headers, body).

One sandboxed Jinja environment with the Destination SDK's context and
helpers. What a template prints is escaped for where it lands, so no profile
value can change the structure of a JSON body or the path of a URL:

- JSON bodies: `{{ x }}` prints a string as JSON string *content* (quotes,
  backslashes and control characters escaped; write the quotes around it in
  the template) and any other value as a JSON literal. `tojson` / `raw` print
  a whole JSON value.
- URLs: every printed value is percent-encoded (`/`, `?`, `#` included).
- Headers: a value with a line break is refused.

`engine.namecheck` checks templates statically against the same context.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import (
    ChainableUndefined,
    TemplateError,
    meta,
    nodes,
)
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext, Undefined, new_context
from jinja2.sandbox import SandboxedEnvironment

from engine.findings import NotJsonValue, refuse_constant

if TYPE_CHECKING:
    from engine.aggregation import Batch
    from engine.spec import Spec

Kind = Literal["url", "header", "body", "message"]
JSON_CONTENT = re.compile(r"^application/(json|[\w.+-]+\+json)\b", re.IGNORECASE)
REDACTED = "[REDACTED]"


class Entry(NamedTuple):
    """What iterating a map yields in a template: `entry.key`, `entry.value`."""

    key: str
    value: Any


ENTRY_FIELDS = ("key", "value")
# The documented `loop` variables (all safe to read).
LOOP_FIELDS = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length"}
    | {"depth", "depth0", "previtem", "nextitem"}
)


class Map(dict[str, Any]):
    """A dict whose iteration yields `Entry(key, value)`, as Destination SDK templates expect.

    Python code iterating a Map uses `.keys()` or `.items()`.
    """

    def __iter__(self) -> Iterator[Entry]:  # type: ignore[override]
        return map(Entry._make, self.items())


MAX_REPEAT = 1_000_000  # characters or items a `*` may make
MAX_POWER_BITS = 10_000  # bits of an integer a `**` may make


def _repeatable(items: Any, times: Any) -> bool:
    return isinstance(items, str | list | tuple) and isinstance(times, int)


def _power_bits(base: Any, exponent: Any) -> int:
    """About how many bits `base ** exponent` has, for integers (0 otherwise)."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        return exponent * abs(base).bit_length() if abs(base) > 1 else 0
    return 0


class TemplateEnvironment(SandboxedEnvironment):
    """Sandboxed Jinja where `a.b` on a dict reads the key `b` (data before methods),
    and where `*` and `**` cannot build values big enough to stall a run."""

    intercepted_binops = frozenset({"*", "**"})

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` in templates gives plain text, even on `tojson` output."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        return lambda *args, **kwargs: str(wrapped(*args, **kwargs))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for items, times in ((left, right), (right, left)):
                size = len(items) * times if _repeatable(items, times) else 0
                if size > MAX_REPEAT:
                    raise SecurityError(
                        f"`*` would make {size:,} characters or items (at most {MAX_REPEAT:,})"
                    )
        elif operator == "**" and _power_bits(left, right) > MAX_POWER_BITS:
            raise SecurityError(f"`**` would make an integer of over {MAX_POWER_BITS:,} bits")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is Map:  # the common case, first
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(f"{attribute!r} is missing in this profile", obj, attribute)
        if type(obj) is Entry and attribute in ENTRY_FIELDS:
            return obj.key if attribute == "key" else obj.value
        if type(obj) is LoopContext and attribute in LOOP_FIELDS:
            return getattr(obj, attribute)
        if isinstance(obj, dict):
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


# --- helpers named as in the Destination SDK --------------------------------

ADDED_STATUSES = ("realized", "existing")


def _status(membership: Any) -> Any:
    return membership.get("status") if isinstance(membership, dict) else None


def _memberships(segments: Any) -> Iterator[tuple[str, Any]]:
    """(audience id, membership) from one namespace's map or from the namespaced map."""
    if not isinstance(segments, Mapping):
        return
    for key, value in segments.items():
        if isinstance(value, Mapping) and "status" not in value:
            yield from _memberships(value)  # a namespace: {"ups": {audienceId: {...}}}
        else:
            yield key, value


def added_segments(segments: Any) -> Map:
    """Audiences the profile is in (status realized, or the older existing)."""
    return Map((k, v) for k, v in _memberships(segments) if _status(v) in ADDED_STATUSES)


def removed_segments(segments: Any) -> Map:
    """Audiences the profile left (status exited)."""
    return Map((k, v) for k, v in _memberships(segments) if _status(v) == "exited")


def has_segments(segments: Any) -> bool:
    """Whether there is any audience membership."""
    return any(True for _ in _memberships(segments))


class TemplateUndefined(ChainableUndefined):
    """A missing value: iterates as empty, tests false, chains (`a.b.c`), but cannot be printed.

    Printing it would send wrong data, so that is an error naming what is missing.
    """

    __slots__ = ()

    def __str__(self) -> str:
        self._fail_with_undefined_error()
        return ""  # not reached

    __html__ = __str__


def is_empty(value: Any) -> bool:
    """`x is empty`: null, undefined, "", [] and {} are empty."""
    if value is None or isinstance(value, Undefined):
        return True
    return isinstance(value, str | list | tuple | dict) and len(value) == 0


class JsonText(str):
    """JSON text from `raw` / `tojson`, printed as is into JSON bodies.

    A plain `str` subclass, not Markup: anything done to it (concatenation, string
    methods) gives a plain `str` again, which is escaped like any other value.
    """


class UrlText(str):
    """Text already percent-encoded for a URL (`formUrlEncode`), printed as is into URLs."""


def raw(value: Any) -> JsonText:
    """Print a value as JSON, unescaped (also `tojson`: JSON needs no HTML escaping)."""
    if type(value) is str:
        return JsonText(encode_basestring(value))
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return JsonText(json.dumps(value, ensure_ascii=False, allow_nan=False))


def sha256(value: Any) -> str:
    """Hex SHA-256 of the value's UTF-8 text, for APIs that take hashed identities.

    Normalise first as the API asks, e.g. `{{ email | trim | lower | sha256 }}`.
    """
    return hashlib.sha256(str(value).encode()).hexdigest()


def base64encode(value: Any) -> str:
    """Base64 of the value's UTF-8 text."""
    return base64.b64encode(str(value).encode()).decode("ascii")


def form_url_encode(*pairs: Any) -> UrlText:
    """`formUrlEncode(k1, v1, k2, v2, ...)`: an application/x-www-form-urlencoded string."""
    if len(pairs) % 2:
        raise TemplateError("formUrlEncode() takes key, value pairs: an even number of arguments")
    pairs_ = [(str(pairs[i]), str(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    return UrlText(urlencode(pairs_))


def url_segment(value: Any) -> UrlText:
    """A value percent-encoded as one URL path segment or query value (`/`, `?`, `#` too)."""
    quoted = quote(str(value), safe="")
    if quoted in (".", ".."):  # a dot segment would climb the path once normalised
        quoted = quoted.replace(".", "%2E")
    return UrlText(quoted)


GLOBALS: dict[str, Any] = {
    "addedSegments": added_segments,
    "removedSegments": removed_segments,
    "hasSegments": has_segments,
    "formUrlEncode": form_url_encode,
}
FILTERS: dict[str, Any] = {
    "added": added_segments,
    "removed": removed_segments,
    "raw": raw,
    "tojson": raw,
    "base64encode": base64encode,
    "sha256": sha256,
}


def _json_finalize(value: Any) -> Any:
    """Strings as JSON string content, other values as JSON literals; `raw` output as is."""
    if type(value) is str:
        return encode_basestring(value)[1:-1]
    if type(value) is int:
        return str(value)
    if type(value) is JsonText or isinstance(value, Undefined):
        return value
    if isinstance(value, str):  # Markup from `safe` or `escape` included: escaped all the same
        return encode_basestring(value)[1:-1]
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _url_finalize(value: Any) -> Any:
    """Every value percent-encoded, whatever filter made it; `formUrlEncode` output as is."""
    if type(value) is UrlText or isinstance(value, Undefined):
        return value
    return url_segment(value)


def _text_finalize(value: Any) -> Any:
    """Plain text: JSON spellings for true, false and null (printed as nothing)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def _make_environment(
    finalize: Callable[[Any], Any], undefined: type[Undefined], **filters: Any
) -> Any:
    env = TemplateEnvironment(undefined=undefined, finalize=finalize, autoescape=False)
    env.globals.update(GLOBALS)
    env.filters.update(FILTERS, **filters)
    env.tests["empty"] = is_empty
    return env


ENVIRONMENTS = {
    "json": _make_environment(_json_finalize, TemplateUndefined),
    # In URLs every value is encoded anyway: `urlencode` must not encode twice.
    "url": _make_environment(_url_finalize, TemplateUndefined, urlencode=url_segment),
    "text": _make_environment(_text_finalize, TemplateUndefined),
    # Messages for users must render even when a response lacks a field.
    "message": _make_environment(_text_finalize, ChainableUndefined),
}


# --- template sources --------------------------------------------------------


@dataclass(frozen=True)
class TemplateSource:
    """A template's text and where it came from, for messages."""

    text: str
    strategy: str
    origin: str  # a template file, or the spec file
    pointer: str  # where in the spec the template is declared
    kind: Kind
    file: Path | None = None

    def where(self, line: int | None) -> str:
        """`file:line` for a file template, `spec:pointer (line N)` for an inline one."""
        if self.file is not None:
            return f"{self.origin}:{line}" if line else self.origin
        suffix = f" (line {line} of the template)" if line and "\n" in self.text else ""
        return f"{self.origin} {self.pointer}{suffix}"


def compile_source(source: TemplateSource, escaping: str) -> Template | None:
    """Compile a JINJA template; NONE templates are literal and return None."""
    if source.strategy == "NONE":
        return None
    env = ENVIRONMENTS["message" if source.kind == "message" else escaping]
    return env.from_string(source.text)  # type: ignore[no-any-return]


def parse(source: TemplateSource) -> nodes.Template:
    """The template's syntax tree (raises TemplateSyntaxError)."""
    return ENVIRONMENTS["text"].parse(source.text)  # type: ignore[no-any-return]


# --- the request -------------------------------------------------------------


class Request(NamedTuple):
    """One HTTP request, exactly as `push` sends it."""

    method: str
    url: str
    headers: dict[str, str]
    body: str
    json_body: Any = None
    is_json: bool = False
    refs: tuple[str, ...] = ()  # the input profiles it carries, e.g. "line 3"
    identities: tuple[str, ...] = ()  # their destination identities, e.g. "OutreachId=123"
    context: Mapping[str, Any] | None = None  # the templates' `input` and `destination`

    def display_body(self) -> Any:
        """The body as the user reads it: parsed JSON when JSON, else text."""
        return self.json_body if self.is_json else self.body

    def shown(self) -> dict[str, Any]:
        """The request as `render` shows it (secrets redacted)."""
        return {
            "method": self.method,
            "url": self.url,
            "headers": self.headers,
            "body": self.display_body(),
        }

    def message_context(self) -> dict[str, Any]:
        """What error-rule messages may read besides `response`: `input`, `destination`."""
        return dict(self.context or {})


class RenderError(Exception):
    """A batch could not become a request; the message says which template and why."""


@dataclass
class RequestTemplates:
    """The spec's URL, header and body templates, compiled once."""

    spec: Spec
    method: str
    content_type: str | None
    is_json: bool
    url: tuple[TemplateSource, Template | None]
    headers: list[tuple[str, TemplateSource, Template | None]]
    body: tuple[TemplateSource, Template | None]
    allowed_hosts: list[str] = field(default_factory=list)
    _auth_cache: tuple[Any, dict[str, str]] | None = None

    @classmethod
    def from_spec(cls, spec: Spec) -> RequestTemplates:
        """Compile the spec's templates (the spec must have passed validation)."""
        http = spec.data["destinationServer"]["httpTemplate"]
        is_json = has_json_body(spec)
        url = spec.template_source("/destinationServer/urlBasedDestination/url", "url")
        body = spec.template_source("/destinationServer/httpTemplate/requestBody", "body")
        headers = []
        for i, header in enumerate(http.get("headers", [])):
            src = spec.template_source(
                f"/destinationServer/httpTemplate/headers/{i}/value", "header"
            )
            headers.append((header["header"], src, compile_source(src, "text")))
        return cls(
            spec=spec,
            method=http["httpMethod"],
            content_type=http.get("contentType"),
            is_json=is_json,
            url=(url, compile_source(url, "url")),
            headers=headers,
            body=(body, compile_source(body, "json" if is_json else "text")),
            allowed_hosts=spec.data["allowedHosts"],
        )

    def bind(self, context: Mapping[str, Any], auth_data: Mapping[str, Any]) -> BoundTemplates:
        """Templates ready to render: `context` holds destination and customerData.

        Headers that do not read `input` are rendered once here. `auth_data` is
        the redacted one: `push` puts the live credentials in at send time
        (`auth_headers`), so what `render` shows is what `push` sends.
        """
        variables = dict(ENVIRONMENTS["text"].globals)
        variables.update(context)
        header_vars = dict(variables, authData=auth_data)
        headers: dict[str, str] = {"Content-Type": self.content_type} if self.content_type else {}
        per_batch = []
        for name, src, tmpl in self.headers:
            if tmpl is not None and "input" in reads(src):
                per_batch.append((name, src, tmpl))
                headers[name] = ""  # keeps the spec's header order
            else:
                headers[name] = _header(name, src, render_source(src, tmpl, header_vars))
        return BoundTemplates(self, variables, header_vars, headers, per_batch)

    def auth_headers(self, auth_data: Mapping[str, Any]) -> dict[str, str]:
        """The headers that read `authData`, rendered with live credentials (cached per token)."""
        key = tuple(sorted(auth_data.items()))
        cached = self._auth_cache
        if cached is None or cached[0] != key:
            variables = dict(ENVIRONMENTS["text"].globals, authData=auth_data)
            rendered = {
                name: _header(name, src, render_source(src, tmpl, variables))
                for name, src, tmpl in self.headers
                if tmpl is not None and "authData" in reads(src)
            }
            cached = self._auth_cache = (key, rendered)
        return cached[1]


def has_json_body(spec: Spec) -> bool:
    """Whether the spec's body is JSON (`application/json`, `application/...+json`)."""
    content_type = spec.data["destinationServer"]["httpTemplate"].get("contentType")
    return bool(content_type and JSON_CONTENT.match(content_type))


def reads(source: TemplateSource) -> set[str]:
    """The context names a template reads."""
    return meta.find_undeclared_variables(parse(source))


@dataclass
class BoundTemplates:
    """A spec's templates bound to one connection's context."""

    templates: RequestTemplates
    variables: dict[str, Any]
    header_vars: dict[str, Any]
    headers: dict[str, str]
    per_batch_headers: list[tuple[str, TemplateSource, Template]]

    def render(self, batch: Batch) -> Request:
        """The request for one batch; raises RenderError naming the template and the problem."""
        t = self.templates
        variables = dict(self.variables, input=batch.template_input())
        url = render_source(t.url[0], t.url[1], variables)
        check_url(url, t.allowed_hosts, t.url[0])
        headers = self.headers
        if self.per_batch_headers:
            headers = dict(headers)
            header_vars = dict(self.header_vars, input=variables["input"])
            for name, src, tmpl in self.per_batch_headers:
                headers[name] = _header(name, src, render_source(src, tmpl, header_vars))
        text = render_source(t.body[0], t.body[1], variables)
        context = {"input": variables["input"], "destination": variables["destination"]}
        if not t.is_json:
            return Request(
                t.method, url, headers, text, None, False, batch.refs, batch.identities, context
            )
        try:
            parsed = BODY_DECODER.decode(text)
        except DuplicateKey as exc:
            raise RenderError(
                f"{t.body[0].where(None)}: the rendered body has the key {exc.key!r} twice,"
                " so one value would be lost; check the mappings"
            ) from None
        except NotJsonValue as exc:
            raise RenderError(
                f"{t.body[0].where(None)}: the rendered body has {exc.value}, which JSON"
                " does not allow; check the template and the profile's values"
            ) from None
        except json.JSONDecodeError as exc:
            bad_line = text.splitlines()[exc.lineno - 1].strip() if text.strip() else ""
            raise RenderError(
                f"{t.body[0].where(None)}: the rendered body is not valid JSON: {exc.msg}"
                f" at line {exc.lineno}, column {exc.colno} of the output ({bad_line[:120]!r})"
            ) from None
        return Request(
            t.method, url, headers, text, parsed, True, batch.refs, batch.identities, context
        )


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (the later would silently win)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return result


BODY_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=refuse_constant)


def _header(name: str, source: TemplateSource, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise RenderError(f"{source.where(None)}: header {name} would contain a line break")
    return value


def render_source(
    source: TemplateSource, template: Template | None, variables: dict[str, Any]
) -> str:
    """Render with `variables` as the whole context (globals included: no copy per call)."""
    if template is None:
        return source.text
    try:
        try:
            # `variables` already holds the globals: a context without them skips a copy.
            context = new_context(
                template.environment, template.name, template.blocks, variables, shared=True
            )
            return "".join(template.root_render_func(context))
        except Exception:
            template.environment.handle_exception()  # re-raises with template line numbers
    except TemplateError as exc:
        line = _template_line(exc)
        problem = exc.message or str(exc)
    except Exception as exc:
        line = _template_line(exc)
        problem = f"{type(exc).__name__}: {exc}"
    raise RenderError(f"{source.where(line)}: {problem}{_excerpt(source, line)}") from None


def _excerpt(source: TemplateSource, line: int | None) -> str:
    """The template line an error happened on, so the user sees which expression."""
    lines = source.text.splitlines()
    if line is None or not 0 < line <= len(lines):
        return ""
    return f" (in `{lines[line - 1].strip()[:160]}`)"


def _template_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def host_allowed(host: str, allowed: list[str]) -> bool:
    """Exact host names, or `*.example.com` for subdomains of example.com."""
    host = host.lower()
    for pattern in allowed:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def check_url(url: str, allowed: list[str], source: TemplateSource) -> None:
    """Refuse a URL that is not https or leaves the spec's allowed hosts."""
    if any(c in url for c in " \t\r\n"):
        raise RenderError(f"{source.where(None)}: the URL contains white space: {url[:200]!r}")
    if url.startswith(tuple(f"https://{host}/" for host in allowed if not host.startswith("*"))):
        return  # the host is one of the allowed ones, whatever the path holds
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise RenderError(f"{source.where(None)}: the URL must use https, not {url[:200]!r}")
    if parts.username or parts.password or not parts.hostname:
        raise RenderError(f"{source.where(None)}: the URL has no plain host: {url[:200]!r}")
    if not host_allowed(parts.hostname, allowed):
        raise RenderError(
            f"{source.where(None)}: host {parts.hostname} is not in allowedHosts"
            f" ({', '.join(allowed)})"
        )


def auth_data_fields(spec: Spec) -> list[str]:
    """What `authData` holds for the spec's authentication type."""
    auth_type = spec.data["customerAuthenticationConfigurations"][0]["authType"]
    return {
        "OAUTH2": ["accessToken", "tokenType"],
        "BEARER": ["accessToken", "tokenType"],
        "BASIC": ["username", "password"],
        "NONE": [],
    }[auth_type]

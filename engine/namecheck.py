"""Name check: every name a template reads must exist in the context the spec defines.

Walks a template's syntax tree with the shape of its context (which members
`input`, `destination`, `customerData`, `authData` and `response` have, which
identity namespaces and attributes the spec declares) and reports, with the
line, each read of a name that cannot exist: `input.profle`,
`identityMap.OutreachID`, `authData` outside headers.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateSyntaxError, nodes

from engine.templating import GLOBALS, Kind, TemplateSource, auth_data_fields, parse

if TYPE_CHECKING:
    from engine.spec import Spec


@dataclass(frozen=True)
class Obj:
    """A context object with known members; `absent` explains members it lacks on purpose."""

    fields: Mapping[str, Any]
    absent: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MapOf:
    """A map; `check` returns a problem for a key that cannot exist."""

    value: Any
    check: Callable[[str], str | None] | None = None


@dataclass(frozen=True)
class ListOf:
    """A list of items."""

    item: Any


ANY = Obj({"*": None})  # anything: members are not checked
SAFE_NAMES = {"loop", "joiner", "namespace", "range", "cycler", "lipsum", "dict", "true", "false"}


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


class NameChecker:
    """Walks a template's syntax tree and reports reads of names the context lacks."""

    def __init__(self, roots: Mapping[str, Any], only_in: Mapping[str, str]) -> None:
        self.roots = roots
        self.only_in = only_in  # names that exist in other kinds of template
        self.problems: list[tuple[int, str]] = []

    def check(self, tree: nodes.Template) -> list[tuple[int, str]]:
        self._body(tree.body, {})
        return self.problems

    def _body(self, body: list[nodes.Node], scope: dict[str, Any]) -> None:
        for node in body:
            self._stmt(node, scope)

    def _stmt(self, node: nodes.Node, scope: dict[str, Any]) -> None:
        if isinstance(node, nodes.For):
            shape, _ = self._expr(node.iter, scope)
            inner = dict(scope)
            self._bind(node.target, _iterated(shape), inner)
            inner["loop"] = ANY
            if node.test is not None:
                self._expr(node.test, inner)
            self._body(node.body, inner)
            self._body(node.else_, scope)
        elif isinstance(node, nodes.Assign):
            shape, _ = self._expr(node.node, scope)
            self._bind(node.target, shape, scope)
        elif isinstance(node, nodes.AssignBlock):
            self._body(node.body, scope)
            self._bind(node.target, ANY, scope)
        elif isinstance(node, nodes.Macro | nodes.CallBlock):
            inner = dict(scope)
            for arg in node.args:
                inner[arg.name] = ANY
            inner.update(caller=ANY, varargs=ANY, kwargs=ANY)
            if isinstance(node, nodes.Macro):
                scope[node.name] = ANY
            else:
                self._expr(node.call, scope)
            self._body(node.body, inner)
        elif isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            tag = {nodes.Include: "include", nodes.Extends: "extends"}.get(type(node), "import")
            self.problems.append(
                (
                    node.lineno,
                    f"{{% {tag} %}} is not available: each template is rendered on its own;"
                    " write its content here, or a macro in this template",
                )
            )
        elif isinstance(node, nodes.With):
            inner = dict(scope)
            for target, value in zip(node.targets, node.values, strict=True):
                self._bind(target, self._expr(value, scope)[0], inner)
            self._body(node.body, inner)
        else:
            for child in node.iter_child_nodes():
                if isinstance(child, nodes.Expr):
                    self._expr(child, scope)
                else:
                    self._stmt(child, scope)

    def _bind(self, target: nodes.Node, shape: Any, scope: dict[str, Any]) -> None:
        if isinstance(target, nodes.Name):
            scope[target.name] = shape
        elif isinstance(target, nodes.Tuple):
            for item in target.items:
                self._bind(item, ANY, scope)

    def _expr(self, node: nodes.Node, scope: dict[str, Any]) -> tuple[Any, str]:
        if isinstance(node, nodes.Name):
            if node.name in scope:
                return scope[node.name], node.name
            if node.name in self.roots:
                return self.roots[node.name], node.name
            if node.name in GLOBALS or node.name in SAFE_NAMES:
                return ANY, node.name
            if node.name in self.only_in:
                self._problem(node, f"`{node.name}` is only available in {self.only_in[node.name]}")
            else:
                options = [*self.roots, *scope, *GLOBALS]
                self._problem(node, f"`{node.name}` is not defined{_suggest(node.name, options)}")
            return ANY, node.name
        if isinstance(node, nodes.Getattr):
            shape, text = self._expr(node.node, scope)
            return self._member(node, shape, text, node.attr, f"{text}.{node.attr}")
        if isinstance(node, nodes.Getitem):
            shape, text = self._expr(node.node, scope)
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str | int):
                key = node.arg.value
                return self._member(node, shape, text, key, f"{text}[{key!r}]")
            self._expr(node.arg, scope)
            if isinstance(shape, MapOf):
                return shape.value, f"{text}[...]"
            if isinstance(shape, ListOf):
                return shape.item, f"{text}[...]"
            return ANY, f"{text}[...]"
        if isinstance(node, nodes.Filter | nodes.Test):
            shape, text = self._expr(node.node, scope) if node.node is not None else (ANY, "")
            self._args(node, scope)
            if isinstance(node, nodes.Filter) and node.name in ("added", "removed"):
                return shape, text
            return ANY, text
        if isinstance(node, nodes.Call):
            _, text = self._expr(node.node, scope)
            shapes = self._args(node, scope)
            if text in ("addedSegments", "removedSegments") and shapes:
                return shapes[0], text
            return ANY, text
        for child in node.iter_child_nodes():
            self._expr(child, scope)
        return ANY, ""

    def _args(
        self, node: nodes.Filter | nodes.Test | nodes.Call, scope: dict[str, Any]
    ) -> list[Any]:
        shapes = [self._expr(arg, scope)[0] for arg in node.args]
        for kw in node.kwargs:
            self._expr(kw.value, scope)
        for dyn in (node.dyn_args, node.dyn_kwargs):
            if dyn is not None:
                self._expr(dyn, scope)
        return shapes

    def _member(
        self, node: nodes.Node, shape: Any, text: str, key: str | int, full: str
    ) -> tuple[Any, str]:
        if isinstance(shape, Obj):
            if "*" in shape.fields:
                return ANY, full
            if isinstance(key, str) and key in shape.fields:
                return shape.fields[key], full
            if isinstance(key, str) and key in shape.absent:
                self._problem(node, f"`{full}` does not exist: {shape.absent[key]}")
                return ANY, full
            self._problem(
                node,
                f"`{full}` does not exist{_suggest(str(key), list(shape.fields))}"
                f" (`{text}` has: {', '.join(shape.fields) or 'nothing'})",
            )
            return ANY, full
        if isinstance(shape, MapOf):
            if shape.check is not None:
                problem = shape.check(str(key))
                if problem:
                    self._problem(node, f"`{full}`: {problem}")
            return shape.value, full
        if isinstance(shape, ListOf):
            return shape.item if isinstance(key, int) else ANY, full
        return ANY, full

    def _problem(self, node: nodes.Node, message: str) -> None:
        self.problems.append((node.lineno, message))


def _iterated(shape: Any) -> Any:
    if isinstance(shape, MapOf):
        return Obj({"key": ANY, "value": shape.value})
    if isinstance(shape, ListOf):
        return shape.item
    return ANY


def _key_check(
    names: list[str], what: str, where: str, matches: Callable[[str], bool] | None = None
) -> Callable[[str], str | None]:
    def check(key: str) -> str | None:
        if key in names or (matches is not None and matches(key)):
            return None
        return f"the spec has no {what} `{key}`" + (
            _suggest(key, names) or f"; declare it in {where}"
        )

    return check


def context_roots(spec: Spec, kind: Kind) -> dict[str, Any]:
    """The shape of the template context the spec defines, for the static name check."""
    data = spec.data
    namespaces = list(data["identityNamespaces"])
    identity_map = MapOf(
        ListOf(Obj({"id": ANY})), _key_check(namespaces, "identity namespace", "identityNamespaces")
    )
    field_names = [f["name"] for f in data["schemaConfig"]["profileFields"] if "name" in f]
    patterns = [
        re.compile(f["namePattern"])
        for f in data["schemaConfig"]["profileFields"]
        if "namePattern" in f
    ]
    attributes = MapOf(
        Obj({"value": ANY}),
        _key_check(
            field_names,
            "target attribute",
            "schemaConfig.profileFields",
            lambda k: any(p.fullmatch(k) for p in patterns),
        ),
    )
    membership = Obj({"status": ANY, "lastQualificationTime": ANY})
    profile = Obj(
        {
            "identityMap": identity_map,
            "attributes": attributes,
            "segmentMembership": MapOf(MapOf(membership)),
        }
    )
    members: dict[str, Any] = {"profiles": ListOf(profile)}
    absent = {
        "profile": "a request of this spec carries several profiles (aggregation);"
        " loop over `input.profiles`",
        "aggregationKey": "it exists only with CONFIGURABLE_AGGREGATION",
    }
    aggregation = data["aggregation"]
    if aggregation["aggregationType"] == "BEST_EFFORT":
        if aggregation["bestEffortAggregation"]["maxUsersPerRequest"] == 1:
            members["profile"] = profile
    else:
        members["aggregationKey"] = aggregation_key_shape(
            aggregation["configurableAggregation"].get("aggregationKey", {})
        )
    roots: dict[str, Any] = {
        "input": Obj(members, {k: v for k, v in absent.items() if k not in members}),
        "destination": Obj(
            {
                "segmentAliases": MapOf(ANY),
                "namespaceSegmentAliases": MapOf(MapOf(ANY)),
                "segmentNames": MapOf(ANY),
                "namespaceSegmentNames": MapOf(MapOf(ANY)),
            }
        ),
        "customerData": MapOf(
            ANY,
            _key_check(
                [f["name"] for f in data.get("customerDataFields", [])],
                "customer data field",
                "customerDataFields",
            ),
        ),
    }
    if kind == "header":
        roots["authData"] = Obj({k: ANY for k in auth_data_fields(spec)})
    if kind == "message":  # error-rule messages: the response, and the request's input
        del roots["customerData"]
        roots["response"] = Obj({"status": ANY, "headers": ANY, "body": ANY})
    return roots


def aggregation_key_shape(config: Mapping[str, Any]) -> Obj:
    """`input.aggregationKey` holds only what the spec's aggregationKey settings put in it."""
    groups = {
        "includeSegmentId": ("segmentId", "segmentNamespace", "segmentAlias"),
        "includeSegmentStatus": ("segmentStatus",),
        "includeIdentity": ("identityNamespaces",),
    }
    fields, absent = {}, {}
    for setting, names in groups.items():
        for name in names:
            if config.get(setting):
                fields[name] = ANY
            else:
                absent[name] = f"set aggregationKey.{setting} to true to group by it"
    return Obj(fields, absent)


def check_names(spec: Spec, source: TemplateSource) -> list[tuple[int, str]]:
    """(line, problem) for every name the template reads that its context lacks."""
    try:
        tree = parse(source)
    except TemplateSyntaxError:
        return []
    only_in = {} if source.kind == "header" else {"authData": "header templates"}
    return NameChecker(context_roots(spec, source.kind), only_in).check(tree)

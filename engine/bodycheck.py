"""Static check of JSON body templates: what is printed outside a JSON string.

In a JSON body, `{{ x }}` prints a string as JSON string *content*, without
quotes (the template writes them), and any other value as a JSON literal. A
text value printed outside quotes therefore lands as bare JSON text: most
values make the body invalid, but `1, 2` or `true` would add structure. So
`validate` warns about every print outside a JSON string that could be text
from the data: put it inside quotes, or use `| tojson`.

The quotes are followed through the template's literal text in template order
(loop and branch bodies as written); what is printed is judged by its form: a
filter that makes a number or JSON, a comparison, the template's own constants
(`{{ "," if not loop.last }}`, a `joiner`), or an attribute the spec declares as
a number or boolean.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

NOT_TEXT_FILTERS = {"tojson", "raw", "int", "float", "length", "count", "abs", "round"}
NOT_TEXT_NODES = (nodes.Compare, nodes.Not, nodes.Test, nodes.Sub, nodes.Div, nodes.FloorDiv)


def unquoted_prints(profile_fields: list[dict[str, Any]], tree: nodes.Template) -> list[int]:
    """The lines of prints outside a JSON string that could print text from the data.

    `tree`: the body template, parsed.
    """
    typed = {
        f["name"]
        for f in profile_fields
        if "name" in f and f.get("type") in ("integer", "number", "boolean")
    }
    walker = _Walker(typed)
    walker.body(tree.body, in_string=False)
    return walker.lines


class _Walker:
    """Follows the JSON string state through a template and notes risky prints."""

    def __init__(self, typed: set[str]) -> None:
        self.typed = typed  # attributes the spec declares as numbers or booleans
        self.joiners: set[str] = set()  # names set to joiner(...): they print constants
        self.lines: list[int] = []

    def body(self, body: list[nodes.Node], in_string: bool) -> bool:
        """Walk statements in order; whether the text after them is inside a JSON string."""
        for node in body:
            in_string = self.statement(node, in_string)
        return in_string

    def statement(self, node: nodes.Node, in_string: bool) -> bool:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    in_string = _after(child.data, in_string)
                elif not in_string and self.may_be_text(child):
                    self.lines.append(child.lineno)
            return in_string
        if isinstance(node, nodes.If):  # every branch starts where the `if` does
            for branch in [*(e.body for e in node.elif_), node.else_]:
                self.body(branch, in_string)
            return self.body(node.body, in_string)
        if isinstance(node, nodes.For):
            self.body(node.else_, in_string)
            return self.body(node.body, in_string)
        if isinstance(node, nodes.With | nodes.Scope | nodes.FilterBlock):
            return self.body(node.body, in_string)
        if isinstance(node, nodes.Assign) and _calls(node.node, "joiner"):
            self.joiners.add(getattr(node.target, "name", ""))
        return in_string  # assignments, macro definitions: print nothing here

    def may_be_text(self, expr: nodes.Expr) -> bool:
        if isinstance(expr, nodes.Filter):
            return expr.name not in NOT_TEXT_FILTERS
        if isinstance(expr, nodes.Const):
            return False  # the template's own text
        if isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Name):
            return expr.node.name not in self.joiners
        if isinstance(expr, nodes.CondExpr):
            return self.may_be_text(expr.expr1) or (
                expr.expr2 is not None and self.may_be_text(expr.expr2)
            )
        if isinstance(expr, NOT_TEXT_NODES):
            return False
        return _typed_attribute(expr) not in self.typed


def _calls(expr: nodes.Node, name: str) -> bool:
    return (
        isinstance(expr, nodes.Call)
        and isinstance(expr.node, nodes.Name)
        and (expr.node.name == name)
    )


def _typed_attribute(expr: nodes.Expr) -> str | None:
    """`name` for `input.profile.attributes.<name>.value`, else None."""
    chain = []
    while isinstance(expr, nodes.Getattr):
        chain.append(expr.attr)
        expr = expr.node
    if isinstance(expr, nodes.Name):
        chain.append(expr.name)
    chain.reverse()
    if chain[-1:] == ["value"] and chain[-3:-2] == ["attributes"] and len(chain) >= 3:
        return chain[-2]
    return None


def _after(text: str, in_string: bool) -> bool:
    """Whether the end of `text` is inside a JSON string, given where it starts."""
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif in_string and char == "\\":
            escaped = True
        elif char == '"':
            in_string = not in_string
    return in_string

"""Evaluator: walks the parsed tree over plain data (dict/list/str/int/float/bool/None).

It is sandboxed by construction: values are only ever read by key or index from mappings and
sequences — no attribute access, no Python callables other than the fixed function table — and
every rendering is bounded by :class:`~mailstack.templates._errors.Limits`.
"""

from __future__ import annotations

import html as html_lib
import math
import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Final, NoReturn
from urllib.parse import quote

from mailstack.templates._compiled import parsed
from mailstack.templates._errors import DEFAULT_LIMITS, Limits, TemplateError, near
from mailstack.templates._parser import (
    Call,
    Chain,
    Expr,
    For,
    If,
    Index,
    Literal,
    Node,
    Print,
    Ref,
    Set,
    Text,
)

__all__ = ["SafeText", "render"]

_MISSING: Final = object()
_MAX_INT: Final = 2**63
# Numeric text that arithmetic and comparisons accept (bounded, so int() never sees huge inputs).
_NUMERIC = re.compile(r"\s*-?[0-9]{1,19}(?:\.[0-9]{1,40})?\s*")
_ROUNDING = Context(prec=400, rounding=ROUND_HALF_UP)  # enough digits for any finite float
_EQUALITY: Final = frozenset({"=", "==", "==="})
_INEQUALITY: Final = frozenset({"!=", "<>"})


class SafeText(str):
    """Text already HTML-escaped by ``Escape()``: an HTML part prints it without escaping again."""

    __slots__ = ()


def render(
    template: str,
    variables: Mapping[str, Any],
    *,
    data: Mapping[str, Any] | None = None,
    html: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """Render a Mailjet-language template; raises :class:`TemplateError` on any problem.

    ``variables`` are the message's ``Variables`` (``{{var:…}}``), ``data`` the contact properties
    (``{{data:…}}``). With ``html=True`` every printed value is HTML-escaped (for HTMLPart).
    The template is parsed once per process and source (:mod:`._compiled`): each recipient's copy of
    a message renders from the same tree.
    """
    nodes = parsed(template, limits)
    renderer = _Renderer(template, variables, data, html=html, limits=limits)
    renderer.run(nodes)
    return "".join(renderer.out)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_container(value: object) -> bool:
    return isinstance(value, Mapping) or (isinstance(value, Sequence) and not isinstance(value, str))


def _format_float(value: float) -> str:
    # Integral floats print without ".0" (10 / 2 prints 5), as JSON-minded engines do.
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


class _Renderer:
    def __init__(
        self,
        source: str,
        variables: Mapping[str, Any],
        data: Mapping[str, Any] | None,
        *,
        html: bool,
        limits: Limits,
    ) -> None:
        self.source = source
        self.namespaces: dict[str, Mapping[str, Any]] = {"var": variables, "data": data or {}}
        self.folded: dict[str, dict[str, str | None]] = {}
        self.html = html
        self.limits = limits
        self.scopes: list[dict[str, Any]] = [{}]
        self.out: list[str] = []
        self.out_bytes = 0
        self.iterations = 0
        self.steps = 0
        self.work = 0

    # -- errors ----------------------------------------------------------------------------------

    def fail(self, detail: str, expr: Expr) -> NoReturn:
        raise TemplateError(
            f"expression evaluation error ## {detail} ## near ## {near(self.source, expr.tag, expr.end)} ##",
            source=self.source,
            offset=expr.start,
        )

    def unknown(self, expr: Expr) -> NoReturn:
        raise TemplateError(
            f"expression parsing error ## Unknown identifier: {near(self.source, expr.start, expr.end)} ## "
            f"near ## {near(self.source, expr.tag, expr.end)} ##",
            source=self.source,
            offset=expr.start,
        )

    def limit(self, detail: str, expr: Expr | None = None) -> NoReturn:
        offset = expr.start if expr is not None else None
        raise TemplateError(f"template limit exceeded ## {detail} ##", source=self.source, offset=offset)

    # -- statements ------------------------------------------------------------------------------

    def run(self, nodes: tuple[Node, ...]) -> None:
        for node in nodes:
            if isinstance(node, Text):
                self.emit(node.text, None)
            elif isinstance(node, Print):
                value = self.eval(node.expr)
                text = self.text(value, node.expr)
                if self.html and not isinstance(value, SafeText):
                    text = html_lib.escape(text, quote=True)
                self.emit(text, node.expr)
            elif isinstance(node, If):
                for condition, body in node.branches:
                    if self.truthy(self.eval(condition)):
                        self.run(body)
                        break
                else:
                    self.run(node.orelse)
            elif isinstance(node, For):
                self.loop(node)
            else:
                self.assign(node)

    def emit(self, text: str, expr: Expr | None) -> None:
        self.out_bytes += len(text.encode("utf-8", "surrogatepass"))
        if self.out_bytes > self.limits.max_output_bytes:
            self.limit(f"output larger than {self.limits.max_output_bytes} bytes", expr)
        self.out.append(text)

    def loop(self, node: For) -> None:
        source = self.eval(node.iterable)
        items: Any
        if isinstance(source, Mapping):
            items = source.values()  # Mailjet loops over an object's values
        elif _is_container(source):
            items = source
        else:
            expr = node.iterable
            raise TemplateError(
                f'"{near(self.source, expr.start, expr.end)}" is not an array value',
                source=self.source,
                offset=expr.start,
            )
        for item in items:
            self.iterations += 1
            if self.iterations > self.limits.max_loop_iterations:
                self.limit(f"more than {self.limits.max_loop_iterations} loop iterations", node.iterable)
            self.scopes.append({node.name: item})
            try:
                self.run(node.body)
            finally:
                self.scopes.pop()

    def assign(self, node: Set) -> None:
        value = self.eval(node.expr)
        for scope in reversed(self.scopes):
            if node.name in scope:
                scope[node.name] = value
                return
        self.scopes[0][node.name] = value  # set is template-wide (Mailjet's tutorials set inside if)

    # -- values ----------------------------------------------------------------------------------

    def truthy(self, value: Any) -> bool:
        if value is None or value is False:
            return False
        if value is True:
            return True
        if _is_number(value):
            return bool(value)
        if isinstance(value, str):
            return value != ""
        if _is_container(value):
            return len(value) > 0
        raise TemplateError(f"unsupported value of type {type(value).__name__}")

    def text(self, value: Any, expr: Expr) -> str:
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            try:
                return str(value)
            except ValueError:  # more digits than Python converts
                self.fail("number too large to print", expr)
        if isinstance(value, float):
            return _format_float(self.checked(value, expr))
        if _is_container(value):
            self.fail(f"cannot print an array or object: {near(self.source, expr.start, expr.end)}", expr)
        self.fail(f"unsupported value of type {type(value).__name__}", expr)

    def string(self, text: str, expr: Expr) -> str:
        """Account for a computed string: bounded in size and in total work."""
        if len(text) > self.limits.max_string_chars:
            self.limit(f"string longer than {self.limits.max_string_chars} characters", expr)
        self.work += len(text)
        if self.work > self.limits.max_work_chars:
            self.limit(f"more than {self.limits.max_work_chars} characters of string work", expr)
        return text

    def number(self, value: Any, expr: Expr) -> int | float:
        if isinstance(value, str) and _NUMERIC.fullmatch(value):
            value = float(value) if "." in value else int(value)
        if not _is_number(value):
            self.fail(f"not a number: {self.text_for_error(value)}", expr)
        return self.checked(value, expr)

    def checked(self, value: int | float, expr: Expr) -> int | float:
        if isinstance(value, int) and not -_MAX_INT <= value <= _MAX_INT:
            self.fail("number out of range", expr)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail("number out of range", expr)
        return value

    def text_for_error(self, value: Any) -> str:
        if isinstance(value, str):
            return repr(value[:30])
        if value is None or isinstance(value, bool):
            return "true" if value is True else "false" if value is False else "null"
        return "an array or object" if _is_container(value) else type(value).__name__

    # -- expressions -----------------------------------------------------------------------------

    def eval(self, expr: Expr) -> Any:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            self.limit(f"more than {self.limits.max_steps} evaluation steps", expr)
        if isinstance(expr, Literal):
            return expr.value
        if isinstance(expr, Ref):
            return self.ref(expr)
        if isinstance(expr, Index):
            target = self.eval(expr.target)
            key = expr.key if isinstance(expr.key, str) else self.eval(expr.key)
            value = self.child(target, key)
            if value is _MISSING:
                self.unknown(expr)
            return value
        if isinstance(expr, Chain):
            return self.chain(expr)
        if isinstance(expr, Call):
            return self.call(expr)
        operand = self.eval(expr.operand)  # Unary
        if expr.op == "not":
            return not self.truthy(operand)
        number = self.number(operand, expr)
        return self.checked(-number if expr.op == "neg" else number, expr)

    def ref(self, expr: Ref) -> Any:
        value = self.lookup(expr.namespace, expr.name)
        for segment in expr.path:
            if value is _MISSING:
                break
            key = segment if isinstance(segment, str) else self.eval(segment)
            value = self.child(value, key)
        if value is _MISSING or (value is None and expr.has_default):
            if expr.has_default:
                return expr.default
            self.unknown(expr)
        return value

    def lookup(self, namespace: str | None, name: str) -> Any:
        if namespace is None:
            for scope in reversed(self.scopes):
                if name in scope:
                    return scope[name]
            return _MISSING
        values = self.namespaces.get(namespace)
        if values is None:  # mj: and segment: have no source in mailstack
            return _MISSING
        value = values.get(name, _MISSING)
        if value is _MISSING:
            # Mailjet's own examples send "Day" and use var:day, so fall back to a unique
            # case-insensitive match.
            folded = self.folded.get(namespace)
            if folded is None:
                folded = {}
                for key in values:
                    if isinstance(key, str):
                        low = key.casefold()
                        folded[low] = None if low in folded else key
                self.folded[namespace] = folded
            original = folded.get(name.casefold())
            if original is not None:
                value = values[original]
        return value

    def child(self, value: Any, key: Any) -> Any:
        """``value[key]`` for a mapping or a sequence, or _MISSING; never an attribute."""
        if isinstance(value, Mapping):
            if isinstance(key, bool) or not isinstance(key, str | int):
                return _MISSING
            return value.get(str(key), _MISSING)
        if _is_container(value):
            if isinstance(key, str) and key.isdecimal() and key.isascii():
                key = int(key)
            if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(value):
                return value[key]
        return _MISSING

    def chain(self, expr: Chain) -> Any:
        value = self.eval(expr.first)
        for op, operand in expr.rest:
            if op == "and":
                value = self.truthy(value) and self.truthy(self.eval(operand))
            elif op == "or":
                value = self.truthy(value) or self.truthy(self.eval(operand))
            elif op == "xor":
                value = self.truthy(value) != self.truthy(self.eval(operand))
            elif op in _EQUALITY or op in _INEQUALITY:
                equal = self.equal(value, self.eval(operand), expr)
                value = equal if op in _EQUALITY else not equal
            elif op in {"<", ">", "<=", ">="}:
                value = self.order(op, value, self.eval(operand), expr)
            else:
                value = self.arithmetic(op, value, self.eval(operand), expr)
        return value

    def equal(self, left: Any, right: Any, expr: Chain) -> bool:
        if _is_container(left) or _is_container(right):
            self.fail("cannot compare an array or object", expr)
        if _is_number(left) or _is_number(right):
            if isinstance(left, str) and _NUMERIC.fullmatch(left):
                left = self.number(left, expr)
            if isinstance(right, str) and _NUMERIC.fullmatch(right):
                right = self.number(right, expr)
            return _is_number(left) and _is_number(right) and bool(left == right)
        if type(left) is not type(right) and not (isinstance(left, str) and isinstance(right, str)):
            return False
        return bool(left == right)

    def order(self, op: str, left: Any, right: Any, expr: Chain) -> bool:
        if isinstance(left, str) and isinstance(right, str):
            if not (_NUMERIC.fullmatch(left) and _NUMERIC.fullmatch(right)):
                pair: tuple[Any, Any] = (left, right)
            else:
                pair = (self.number(left, expr), self.number(right, expr))
        elif (_is_number(left) or isinstance(left, str)) and (_is_number(right) or isinstance(right, str)):
            pair = (self.number(left, expr), self.number(right, expr))
        else:
            self.fail(f"cannot compare {self.text_for_error(left)} with {self.text_for_error(right)}", expr)
        a, b = pair
        if op == "<":
            return bool(a < b)
        if op == ">":
            return bool(a > b)
        if op == "<=":
            return bool(a <= b)
        return bool(a >= b)

    def arithmetic(self, op: str, left: Any, right: Any, expr: Chain) -> Any:
        if op == "+" and (isinstance(left, str) or isinstance(right, str)):
            # Text joins: "+" concatenates as soon as one side is a string.
            if _is_container(left) or _is_container(right):
                self.fail("cannot add an array or object", expr)
            if self.html and (isinstance(left, SafeText) or isinstance(right, SafeText)):
                # Escaped text joined with raw text: escape the raw side now, keep it escaped.
                joined = self.html_text(left, expr) + self.html_text(right, expr)
                return SafeText(self.string(joined, expr))
            return self.string(self.text(left, expr) + self.text(right, expr), expr)
        a, b = self.number(left, expr), self.number(right, expr)
        if op == "+":
            return self.checked(a + b, expr)
        if op == "-":
            return self.checked(a - b, expr)
        if op == "*":
            return self.checked(a * b, expr)
        if b == 0:
            self.fail("division by zero", expr)
        if op == "/":
            return self.checked(a / b, expr)
        if isinstance(a, int) and isinstance(b, int):
            quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # truncated, as C and PHP
        else:
            quotient = math.trunc(self.checked(a / b, expr))
        if op == "div":
            return self.checked(quotient, expr)
        if isinstance(a, int) and isinstance(b, int):
            return a - b * quotient  # mod: the remainder has the sign of the dividend
        return self.checked(math.fmod(a, b), expr)

    def html_text(self, value: Any, expr: Expr) -> str:
        text = self.text(value, expr)
        return text if isinstance(value, SafeText) else html_lib.escape(text, quote=True)

    def call(self, expr: Call) -> Any:
        args = [self.eval(arg) for arg in expr.args]
        name = expr.name
        if name in {"hasopenedsince", "hasclickedsince"}:
            self.fail(
                f"{self.source[expr.start : expr.start + len(name)]} is not supported: mailstack has no "
                "per-contact open and click history at rendering time",
                expr,
            )
        if name == "round":
            return self.round(args, expr)
        if name == "int":
            return self.checked(math.trunc(self.number(args[0], expr)), expr)
        if _is_container(args[0]):
            self.fail("expected a string, got an array or object", expr)
        text = self.text(args[0], expr)
        if name == "upper":
            return self.string(text.upper(), expr)
        if name == "lower":
            return self.string(text.lower(), expr)
        if name == "capitalize":
            return self.string(text[:1].upper() + text[1:], expr)
        if name == "urlencode":
            return self.string(quote(text, safe=""), expr)
        return SafeText(self.string(html_lib.escape(text, quote=True), expr))  # escape

    def round(self, args: list[Any], expr: Call) -> int | float:
        value = self.number(args[0], expr)
        precision = self.number(args[1], expr) if len(args) > 1 else 0
        if isinstance(precision, float) and precision.is_integer():
            precision = int(precision)
        if not isinstance(precision, int) or not -15 <= precision <= 15:
            self.fail("Round precision must be a whole number between -15 and 15", expr)
        # Half away from zero on the decimal digits shown (2.675 -> 2.68), not banker's rounding.
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        rounded = exact.quantize(Decimal(1).scaleb(-precision), context=_ROUNDING)
        if precision <= 0:
            return self.checked(int(rounded), expr)
        return self.checked(float(rounded), expr)

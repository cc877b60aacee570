"""Parser: tokens -> a tree of plain dataclasses (no Python code is ever generated or evaluated).

Grammar (lowest precedence first; keywords are case-insensitive)::

    template   := (TEXT | '{{' expr '}}' | statement)*
    statement  := '{%' 'if' expr '%}' template ('{%' 'elseif' expr '%}' template)*
                  ('{%' 'else' '%}' template)? '{%' 'endif' '%}'
                | '{%' 'for' NAME 'in' expr '%}' template '{%' 'endfor' '%}'
                | '{%' 'set' NAME '=' expr '%}'
    expr       := xor ('or' xor)*
    xor        := and ('xor' and)*
    and        := not ('and' not)*
    not        := 'not' not | comparison
    comparison := sum (('='|'=='|'==='|'!='|'<>'|'<'|'>'|'<='|'>=') sum)*
    sum        := product (('+'|'-') product)*
    product    := unary (('*'|'/'|'div'|'mod') unary)*
    unary      := ('-'|'+'|'!') unary | postfix
    postfix    := primary ('.' KEY | '[' expr ']')* (':' default)?    -- default only after a variable
    primary    := NUMBER | STRING | 'true' | 'false' | 'null' | '(' expr ')'
                | NAMESPACE KEY | NAME '(' (expr (',' expr)*)? ')' | NAME

``end if``/``end for``/``else if`` are accepted as spellings of ``endif``/``endfor``/``elseif``.
Operator chains of one precedence level are kept flat (:class:`Chain`), so a long ``a + b + …``
does not deepen the tree; nesting (parentheses, calls, indexes, unary operators, blocks) is bounded
by :attr:`Limits.max_depth`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from mailstack.templates._errors import Limits, TemplateError, near
from mailstack.templates._lexer import Token, tokenize

__all__ = [
    "FUNCTIONS",
    "Call",
    "Chain",
    "Expr",
    "For",
    "If",
    "Index",
    "Literal",
    "Node",
    "Print",
    "Ref",
    "Set",
    "Text",
    "Unary",
    "parse",
]

Scalar: TypeAlias = str | int | float | bool | None

# Function name (lower case) -> (minimum, maximum) number of arguments.
FUNCTIONS: Final[dict[str, tuple[int, int]]] = {
    "upper": (1, 1),
    "lower": (1, 1),
    "capitalize": (1, 1),
    "round": (1, 2),
    "int": (1, 1),
    "urlencode": (1, 1),
    "escape": (1, 1),
    "hasopenedsince": (1, 1),
    "hasclickedsince": (1, 1),
}
_COMPARISONS: Final = frozenset({"=", "==", "===", "!=", "<>", "<", ">", "<=", ">="})
_KEYWORDS: Final = frozenset({"and", "or", "xor", "not", "div", "mod", "in", "true", "false", "null"})
_LITERALS: Final[dict[str, Scalar]] = {"true": True, "false": False, "null": None}
_MAX_INT: Final = 2**63


@dataclass(frozen=True, slots=True)
class Literal:
    value: Scalar
    start: int
    end: int
    tag: int


@dataclass(frozen=True, slots=True)
class Ref:
    """A variable: ``namespace`` is ``var``/``data``/``mj``/``segment``, or None for a template name."""

    namespace: str | None
    name: str
    path: tuple[str | Expr, ...]
    has_default: bool
    default: Scalar
    start: int
    end: int  # end of the path: the identifier Mailjet names in "Unknown identifier"
    tag: int


@dataclass(frozen=True, slots=True)
class Index:
    target: Expr
    key: str | Expr
    start: int
    end: int
    tag: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "neg", "pos" or "not"
    operand: Expr
    start: int
    end: int
    tag: int


@dataclass(frozen=True, slots=True)
class Chain:
    """``first op1 e1 op2 e2 …`` evaluated left to right (operators of one precedence level)."""

    first: Expr
    rest: tuple[tuple[str, Expr], ...]
    start: int
    end: int
    tag: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str  # lower case
    args: tuple[Expr, ...]
    start: int
    end: int
    tag: int


Expr: TypeAlias = Literal | Ref | Index | Unary | Chain | Call


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Print:
    expr: Expr


@dataclass(frozen=True, slots=True)
class If:
    branches: tuple[tuple[Expr, tuple[Node, ...]], ...]
    orelse: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class For:
    name: str
    iterable: Expr
    body: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Set:
    name: str
    expr: Expr


Node: TypeAlias = Text | Print | If | For | Set


def parse(source: str, limits: Limits) -> tuple[Node, ...]:
    """Parse a whole template; any syntax error is a :class:`TemplateError`."""
    if len(source) > limits.max_template_chars:
        raise TemplateError(
            f"template limit exceeded ## template longer than {limits.max_template_chars} characters ##"
        )
    return _Parser(source, tokenize(source), limits).template()


class _Parser:
    def __init__(self, source: str, tokens: list[Token], limits: Limits) -> None:
        self.source = source
        self.tokens = tokens
        self.limits = limits
        self.i = 0
        self.blocks = 0  # current nesting of if/for
        self.nesting = 0  # current nesting inside one expression

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    @property
    def last_end(self) -> int:
        """End of the last token read (a closing parenthesis included)."""
        return self.tokens[self.i - 1].end

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def at(self, kind: str, value: str | None = None) -> bool:
        token = self.tok
        if token.kind != kind:
            return False
        return value is None or (token.value.lower() if kind == "NAME" else token.value) == value

    def keyword(self) -> str | None:
        return self.tok.value.lower() if self.tok.kind == "NAME" else None

    def expression_error(self, detail: str, token: Token) -> TemplateError:
        end = max(token.end, token.start + 1) if token.kind != "EOF" else token.start
        return TemplateError(
            f"expression parsing error ## {detail} ## near ## {near(self.source, token.tag, end)} ##",
            source=self.source,
            offset=token.start,
        )

    def template_error(self, token: Token) -> TemplateError:
        if token.kind == "EOF":  # an unclosed block: Mailjet quotes the end of the template
            snippet = self.source[-10:]
        else:  # quote the tag up to the last token read
            end = max(token.end, self.last_end)
            snippet = near(self.source, token.tag, end, limit=30)
        return TemplateError(
            f"not valid template ## near ## {snippet} ##", source=self.source, offset=token.start
        )

    def expect_close(self) -> None:
        if not self.at("CLOSE"):
            token = self.tok
            raise self.expression_error(f"Unexpected token: {token.value!r}", token)
        self.advance()

    def deeper(self, token: Token) -> None:
        self.nesting += 1
        if self.nesting > self.limits.max_depth:
            raise TemplateError(
                f"template limit exceeded ## expression nested deeper than {self.limits.max_depth} ## "
                f"near ## {near(self.source, token.tag, token.end)} ##",
                source=self.source,
                offset=token.start,
            )

    # -- statements ------------------------------------------------------------------------------

    def template(self) -> tuple[Node, ...]:
        body, ender = self.body(frozenset())
        assert ender is None  # body() only stops early on an expected ender
        return body

    def body(self, enders: frozenset[str]) -> tuple[tuple[Node, ...], tuple[str, Token] | None]:
        """Nodes up to EOF or to a statement in ``enders`` (returned with its keyword token)."""
        nodes: list[Node] = []
        while True:
            token = self.tok
            if token.kind == "EOF":
                if enders:
                    raise self.template_error(token)
                return tuple(nodes), None
            if token.kind == "TEXT":
                self.advance()
                nodes.append(Text(token.value))
            elif token.kind == "PRINT_OPEN":
                self.advance()
                if self.at("CLOSE"):
                    raise self.expression_error("Empty expression", self.tok)
                nodes.append(Print(self.expression()))
                self.expect_close()
            else:
                self.advance()  # STMT_OPEN
                word = self.statement_keyword()
                if word in enders:
                    return tuple(nodes), (word, token)
                nodes.append(self.statement(word, token))

    def statement_keyword(self) -> str:
        token = self.tok
        word = self.keyword()
        if word is None:
            raise self.template_error(token)
        self.advance()
        following = self.keyword()
        if (word, following) in {("end", "if"), ("end", "for"), ("else", "if")}:
            self.advance()
            word = "elseif" if word == "else" else f"end{following}"
        return word

    def statement(self, word: str, opening: Token) -> Node:
        if word == "set":
            name = self.local_name()
            if not self.at("OP", "="):
                raise self.expression_error(f"Unexpected token: {self.tok.value!r}", self.tok)
            self.advance()
            expr = self.expression()
            self.expect_close()
            return Set(name, expr)
        if word not in {"if", "for"}:
            raise self.template_error(opening)
        self.blocks += 1
        if self.blocks > self.limits.max_depth:
            raise TemplateError(
                f"template limit exceeded ## blocks nested deeper than {self.limits.max_depth} ## "
                f"near ## {near(self.source, opening.start, self.tok.end)} ##",
                source=self.source,
                offset=opening.start,
            )
        node = self.if_block() if word == "if" else self.for_block()
        self.blocks -= 1
        return node

    def if_block(self) -> If:
        branches: list[tuple[Expr, tuple[Node, ...]]] = []
        condition = self.expression()
        while True:
            self.expect_close()
            body, ender = self.body(frozenset({"elseif", "else", "endif"}))
            assert ender is not None
            branches.append((condition, body))
            if ender[0] == "elseif":
                condition = self.expression()
                continue
            if ender[0] == "endif":
                self.expect_close()
                return If(tuple(branches), ())
            self.expect_close()  # else
            orelse, ender = self.body(frozenset({"elseif", "else", "endif"}))
            assert ender is not None
            if ender[0] != "endif":
                raise self.template_error(ender[1])
            self.expect_close()
            return If(tuple(branches), orelse)

    def for_block(self) -> For:
        name = self.local_name()
        if not self.at("NAME", "in"):
            raise self.expression_error(f"Unexpected token: {self.tok.value!r}", self.tok)
        self.advance()
        iterable = self.expression()
        self.expect_close()
        body, _ = self.body(frozenset({"endfor"}))
        self.expect_close()
        return For(name, iterable, body)

    def local_name(self) -> str:
        token = self.tok
        if token.kind != "NAME" or token.value.lower() in _KEYWORDS:
            raise self.expression_error(f"Expected a variable name, got {token.value!r}", token)
        self.advance()
        return token.value

    # -- expressions -----------------------------------------------------------------------------

    def expression(self) -> Expr:
        return self.chain(self.xor_level, frozenset({"or"}))

    def xor_level(self) -> Expr:
        return self.chain(self.and_level, frozenset({"xor"}))

    def and_level(self) -> Expr:
        return self.chain(self.not_level, frozenset({"and"}))

    def not_level(self) -> Expr:
        if self.keyword() == "not":
            token = self.advance()
            self.deeper(token)
            operand = self.not_level()
            self.nesting -= 1
            return Unary("not", operand, token.start, self.last_end, token.tag)
        return self.chain(self.sum_level, _COMPARISONS)

    def sum_level(self) -> Expr:
        return self.chain(self.product_level, frozenset({"+", "-"}))

    def product_level(self) -> Expr:
        return self.chain(self.unary, frozenset({"*", "/", "div", "mod"}))

    def chain(self, parse_operand: Callable[[], Expr], operators: frozenset[str]) -> Expr:
        first = parse_operand()
        rest: list[tuple[str, Expr]] = []
        while True:
            token = self.tok
            op = token.value.lower() if token.kind in {"OP", "NAME"} else None
            if op is None or op not in operators:
                break
            self.advance()
            rest.append((op, parse_operand()))
        if not rest:
            return first
        return Chain(first, tuple(rest), first.start, self.last_end, first.tag)

    def unary(self) -> Expr:
        token = self.tok
        if token.kind == "OP" and token.value in {"-", "+", "!"}:
            self.advance()
            self.deeper(token)
            operand = self.unary()
            self.nesting -= 1
            op = {"-": "neg", "+": "pos", "!": "not"}[token.value]
            return Unary(op, operand, token.start, self.last_end, token.tag)
        return self.postfix()

    def postfix(self) -> Expr:
        first = self.tok
        node = self.primary()
        path: list[str | Expr] = []
        end = node.end
        while True:
            token = self.tok
            if self.at("OP", "."):
                self.advance()
                key = self.tok
                if key.kind != "NAME":
                    raise self.expression_error(f"Unexpected token: {key.value!r}", key)
                self.advance()
                path.append(key.value)
                end = key.end
            elif self.at("OP", "["):
                self.advance()
                self.deeper(token)
                index = self.expression()
                self.nesting -= 1
                if not self.at("OP", "]"):
                    raise self.expression_error(f"Unexpected token: {self.tok.value!r}", self.tok)
                end = self.advance().end
                path.append(index)
            else:
                break
        if isinstance(node, Ref):
            has_default, default = False, None
            if self.at("OP", ":"):
                self.advance()
                has_default, default = True, self.default_value()
            return Ref(
                node.namespace, node.name, tuple(path), has_default, default, node.start, end, first.tag
            )
        for key_or_index in path:
            node = Index(node, key_or_index, first.start, end, first.tag)
        return node

    def default_value(self) -> Scalar:
        token = self.advance()
        if token.kind == "STRING":
            return token.value
        if token.kind == "NUMBER":
            return self.number(token, negative=False)
        if token.kind == "OP" and token.value == "-" and self.at("NUMBER"):
            return self.number(self.advance(), negative=True)
        if token.kind == "NAME":  # true/false/null, or a bare word taken as text
            return _LITERALS.get(token.value.lower(), token.value)
        raise self.expression_error(f"Invalid default value: {token.value!r}", token)

    def number(self, token: Token, *, negative: bool) -> int | float:
        text = token.value
        if "." in text:
            value: int | float = float(text)
            if not math.isfinite(value):
                raise self.expression_error(f"Number out of range: {text}", token)
        else:
            # Checked on the text: int() of thousands of digits is refused by Python itself.
            if len(text.lstrip("0")) > 19 or int(text) > _MAX_INT:
                raise self.expression_error(f"Number out of range: {text}", token)
            value = int(text)
        return -value if negative else value

    def primary(self) -> Expr:
        token = self.tok
        if token.kind == "NUMBER":
            self.advance()
            return Literal(self.number(token, negative=False), token.start, token.end, token.tag)
        if token.kind == "STRING":
            self.advance()
            return Literal(token.value, token.start, token.end, token.tag)
        if token.kind == "NS":
            self.advance()
            key = self.tok
            if key.kind != "NAME":
                raise self.expression_error(f"Unexpected token: {key.value!r}", key)
            self.advance()
            return Ref(token.value, key.value, (), False, None, token.start, key.end, token.tag)
        if self.at("OP", "("):
            self.advance()
            self.deeper(token)
            inner = self.expression()
            self.nesting -= 1
            if not self.at("OP", ")"):
                raise self.expression_error(f"Unexpected token: {self.tok.value!r}", self.tok)
            self.advance()
            return inner
        if token.kind == "NAME":
            word = token.value.lower()
            if word in _LITERALS:
                self.advance()
                return Literal(_LITERALS[word], token.start, token.end, token.tag)
            if word in _KEYWORDS:
                raise self.expression_error(f"Unexpected token: {token.value!r}", token)
            self.advance()
            if self.at("OP", "("):
                return self.call(token)
            return Ref(None, token.value, (), False, None, token.start, token.end, token.tag)
        raise self.expression_error(f"Unexpected token: {token.value!r}", token)

    def call(self, name: Token) -> Call:
        word = name.value.lower()
        if word not in FUNCTIONS:
            raise self.expression_error(f"Unknown function: {name.value}", name)
        self.advance()  # '('
        self.deeper(name)
        args: list[Expr] = []
        if not self.at("OP", ")"):
            args.append(self.expression())
            while self.at("OP", ","):
                self.advance()
                args.append(self.expression())
        if not self.at("OP", ")"):
            raise self.expression_error(f"Unexpected token: {self.tok.value!r}", self.tok)
        end = self.advance().end
        self.nesting -= 1
        low, high = FUNCTIONS[word]
        if not low <= len(args) <= high:
            raise self.expression_error(f"Wrong number of arguments for {name.value}", name)
        return Call(word, tuple(args), name.start, end, name.tag)

"""A small, safe OData ``$filter`` parser (no eval).

Supported: ``eq ne gt ge lt le``, ``and``, ``or``, ``not``, parentheses,
``startswith(prop, 'x')`` / ``endswith`` / ``contains``, unquoted ISO datetimes,
single-quoted strings with ``''`` escaping, numbers, ``null``, ``true``/``false``.

``parse_filter(text, properties)`` returns a ``Filter``; ``properties`` maps each
filterable property name (matched case-insensitively) to its type: ``"datetime"``
(values are epoch microseconds), ``"string"``, ``"enum"`` (case-insensitive string),
``"int"`` or ``"bool"``. Anything else raises ``ODataError`` (the API answers 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_FILTER_LENGTH = 4000
MAX_DEPTH = 50

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
FUNCTIONS = ("startswith", "endswith", "contains")


class ODataError(ValueError):
    """A $filter (or other query option) the API rejects with 400."""


# -- datetimes --------------------------------------------------------------------

_DT_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_datetime_us(text: str) -> int:
    """Epoch microseconds of an ISO-8601 timestamp (any fractional digits, Z/offset)."""
    m = _DT_RE.match(text.strip())
    if not m:
        raise ODataError(f"Invalid datetime value '{text}'.")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError as exc:
        raise ODataError(f"Invalid datetime value '{text}'.") from exc
    us = int(dt.replace(tzinfo=UTC).timestamp()) * 1_000_000
    if frac:
        us += int((frac + "000000")[:6])
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        hh, mm = int(tz[1:3]), int(tz[-2:])
        us -= sign * (hh * 3600 + mm * 60) * 1_000_000
    return us


# -- tokenizer --------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?
                 (?:Z|[+-]\d{2}:\d{2})?)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_./]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    value: Any
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise ODataError(f"Syntax error at position {pos} in '{text[:200]}'.")
        kind = m.lastgroup or ""
        raw = m.group()
        pos = m.end()
        if kind == "ws":
            continue
        if kind == "string":
            tokens.append(Token("string", raw[1:-1].replace("''", "'"), m.start()))
        elif kind == "datetime":
            tokens.append(Token("datetime", raw, m.start()))
        elif kind == "number":
            value: Any = float(raw) if "." in raw else int(raw)
            tokens.append(Token("number", value, m.start()))
        else:
            tokens.append(Token(kind, raw, m.start()))
    return tokens


# -- AST ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    prop: str  # canonical property name
    op: str
    value: Any  # already converted to the property's type (None for null)


@dataclass(frozen=True)
class Func:
    name: str
    prop: str
    value: str


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    left: Any
    right: Any


@dataclass(frozen=True)
class Not:
    operand: Any


_FLIP = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


class _Parser:
    def __init__(self, tokens: list[Token], properties: dict[str, str], text: str):
        self.tokens = tokens
        self.i = 0
        self.text = text
        self.props = {k.lower(): (k, t) for k, t in properties.items()}
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise ODataError("Syntax error: unexpected end of $filter expression.")
        self.i += 1
        return tok

    def is_word(self, tok: Token | None, *words: str) -> bool:
        return tok is not None and tok.kind == "word" and tok.value.lower() in words

    def parse(self) -> Any:
        if not self.tokens:
            raise ODataError("The $filter expression is empty.")
        node = self.parse_or()
        if self.peek() is not None:
            tok = self.peek()
            raise ODataError(
                f"Syntax error at position {tok.pos}: unexpected '{tok.value}'."
            )
        return node

    def parse_or(self) -> Any:
        node = self.parse_and()
        while self.is_word(self.peek(), "or"):
            self.next()
            node = BoolOp("or", node, self.parse_and())
        return node

    def parse_and(self) -> Any:
        node = self.parse_unary()
        while self.is_word(self.peek(), "and"):
            self.next()
            node = BoolOp("and", node, self.parse_unary())
        return node

    def parse_unary(self) -> Any:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ODataError("The $filter expression is nested too deeply.")
        try:
            if self.is_word(self.peek(), "not"):
                self.next()
                return Not(self.parse_unary())
            return self.parse_primary()
        finally:
            self.depth -= 1

    def parse_primary(self) -> Any:
        tok = self.peek()
        if tok is not None and tok.kind == "lparen":
            self.next()
            node = self.parse_or()
            self.expect("rparen", ")")
            return node
        if (
            tok is not None
            and tok.kind == "word"
            and tok.value.lower() in FUNCTIONS
            and self.i + 1 < len(self.tokens)
            and self.tokens[self.i + 1].kind == "lparen"
        ):
            return self.parse_function()
        return self.parse_comparison()

    def expect(self, kind: str, shown: str) -> Token:
        tok = self.next()
        if tok.kind != kind:
            raise ODataError(
                f"Syntax error at position {tok.pos}: expected '{shown}', "
                f"found '{tok.value}'."
            )
        return tok

    def parse_function(self) -> Func:
        name = self.next().value.lower()
        self.expect("lparen", "(")
        prop_tok = self.expect("word", "property name")
        prop, ptype = self.resolve(prop_tok.value)
        self.expect("comma", ",")
        val = self.next()
        if val.kind != "string":
            raise ODataError(f"{name}() needs a quoted string as its second argument.")
        self.expect("rparen", ")")
        if ptype not in ("string", "enum"):
            raise ODataError(f"{name}() is not supported on property '{prop}'.")
        return Func(name, prop, val.value)

    def resolve(self, name: str) -> tuple[str, str]:
        hit = self.props.get(name.lower())
        if hit is None:
            raise ODataError(
                f"Could not find a property named '{name}' on type "
                f"'the queried entity'."
            )
        return hit

    def operand(self) -> Token:
        tok = self.next()
        if tok.kind in ("lparen", "rparen", "comma"):
            raise ODataError(f"Syntax error at position {tok.pos}.")
        return tok

    def parse_comparison(self) -> Compare:
        left = self.operand()
        op_tok = self.next()
        if op_tok.kind != "word" or op_tok.value.lower() not in COMPARISONS:
            raise ODataError(
                f"Syntax error at position {op_tok.pos}: expected a comparison "
                f"operator, found '{op_tok.value}'."
            )
        op = op_tok.value.lower()
        right = self.operand()
        if self._is_prop(left):
            prop_tok, lit = left, right
        elif self._is_prop(right):
            prop_tok, lit, op = right, left, _FLIP[op]
        else:
            bad = left if left.kind == "word" else right
            if bad.kind == "word":
                self.resolve(bad.value)  # raises the unknown-property error
            raise ODataError("A comparison needs a property on one side.")
        prop, ptype = self.resolve(prop_tok.value)
        return Compare(prop, op, self.convert(lit, ptype, prop))

    def _is_prop(self, tok: Token) -> bool:
        return tok.kind == "word" and tok.value.lower() not in ("null", "true", "false")

    def convert(self, tok: Token, ptype: str, prop: str) -> Any:
        if tok.kind == "word":
            low = tok.value.lower()
            if low == "null":
                return None
            if low in ("true", "false") and ptype == "bool":
                return low == "true"
            raise ODataError(f"Invalid value '{tok.value}' for property '{prop}'.")
        if ptype == "datetime":
            if tok.kind in ("datetime", "string"):
                return parse_datetime_us(str(tok.value))
            raise ODataError(f"Property '{prop}' needs a DateTimeOffset value.")
        if ptype == "int":
            if tok.kind == "number" and isinstance(tok.value, int):
                return tok.value
            if tok.kind == "string" and re.fullmatch(r"-?\d{1,19}", tok.value):
                return int(tok.value)
            raise ODataError(f"Property '{prop}' needs an integer value.")
        if ptype == "bool":
            raise ODataError(f"Property '{prop}' needs true or false.")
        if tok.kind == "string":
            return tok.value
        if tok.kind in ("number", "datetime"):
            raise ODataError(
                f"Property '{prop}' is a string; quote the value in single quotes."
            )
        raise ODataError(f"Invalid value for property '{prop}'.")


# -- evaluation --------------------------------------------------------------------


def _norm(value: Any, ptype: str) -> Any:
    if ptype in ("string", "enum") and isinstance(value, str):
        return value.lower()
    return value


def _compare(actual: Any, op: str, wanted: Any) -> bool:
    if wanted is None or actual is None:
        if op == "eq":
            return actual is None and wanted is None
        if op == "ne":
            return not (actual is None and wanted is None)
        return False
    try:
        if op == "eq":
            return actual == wanted
        if op == "ne":
            return actual != wanted
        if op == "gt":
            return actual > wanted
        if op == "ge":
            return actual >= wanted
        if op == "lt":
            return actual < wanted
        return actual <= wanted
    except TypeError:
        return False


class Filter:
    """A parsed $filter. ``matches(get)`` evaluates it with ``get(prop) -> value``."""

    def __init__(self, ast: Any, types: dict[str, str]):
        self.ast = ast
        self.types = types

    def matches(self, get: Callable[[str], Any]) -> bool:
        return self._eval(self.ast, get)

    def _eval(self, node: Any, get: Callable[[str], Any]) -> bool:
        if isinstance(node, Compare):
            t = self.types[node.prop]
            return _compare(_norm(get(node.prop), t), node.op, _norm(node.value, t))
        if isinstance(node, BoolOp):
            if node.op == "and":
                return self._eval(node.left, get) and self._eval(node.right, get)
            return self._eval(node.left, get) or self._eval(node.right, get)
        if isinstance(node, Not):
            return not self._eval(node.operand, get)
        if isinstance(node, Func):
            actual = get(node.prop)
            if not isinstance(actual, str):
                return False
            a, v = actual.lower(), node.value.lower()
            if node.name == "startswith":
                return a.startswith(v)
            if node.name == "endswith":
                return a.endswith(v)
            return v in a
        return False

    def conjuncts(self) -> list[Any]:
        """Top-level AND terms."""
        out: list[Any] = []
        stack = [self.ast]
        while stack:
            n = stack.pop()
            if isinstance(n, BoolOp) and n.op == "and":
                stack.extend((n.right, n.left))
            else:
                out.append(n)
        return out

    def range_for(self, prop: str) -> tuple[Range, Filter | None]:
        """Bounds on ``prop`` from top-level ``and`` terms, and the rest (or None).

        Lets a caller bisect a list sorted by ``prop`` and only evaluate the residual
        filter on that slice.
        """
        rng = Range()
        rest: list[Any] = []
        for term in self.conjuncts():
            if (
                isinstance(term, Compare)
                and term.prop == prop
                and term.op in ("gt", "ge", "lt", "le", "eq")
                and term.value is not None
            ):
                rng.add(term.op, term.value)
            else:
                rest.append(term)
        if not rest:
            return rng, None
        node = rest[0]
        for term in rest[1:]:
            node = BoolOp("and", node, term)
        return rng, Filter(node, self.types)


@dataclass
class Range:
    """Inclusive/exclusive bounds on one property."""

    lo: Any = None
    lo_incl: bool = True
    hi: Any = None
    hi_incl: bool = True

    def add(self, op: str, value: Any) -> None:
        if op in ("gt", "ge", "eq"):
            incl = op != "gt"
            if self.lo is None or value > self.lo or (value == self.lo and not incl):
                self.lo, self.lo_incl = value, incl
        if op in ("lt", "le", "eq"):
            incl = op != "lt"
            if self.hi is None or value < self.hi or (value == self.hi and not incl):
                self.hi, self.hi_incl = value, incl


def parse_filter(text: str | None, properties: dict[str, str]) -> Filter | None:
    """Parse ``text`` against ``properties`` (name -> type); None/blank -> None."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_FILTER_LENGTH:
        raise ODataError("The $filter expression is too long.")
    parser = _Parser(tokenize(text), properties, text)
    ast = parser.parse()
    return Filter(ast, {k: t for k, t in properties.items()})


def parse_int_option(
    value: str | None, name: str, default: int | None = None
) -> int | None:
    """A non-negative integer query option ($top, $skip) or ODataError."""
    if value is None or value == "":
        return default
    if not re.fullmatch(r"\d{1,12}", value.strip()):
        raise ODataError(
            f"Invalid value '{value}' for query option '{name}': "
            "expected a non-negative integer."
        )
    return int(value.strip())

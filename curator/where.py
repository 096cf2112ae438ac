"""A small, safe SQL-like predicate language for `curator search --where`.

    motion_tag = 'pan_left' AND clip_duration_s >= 4
    status IN ('ok', 'rejected') OR NOT (caption LIKE '%museum%')
    tags CONTAINS 'indoor' AND duplicate_of IS NULL

Grammar (case-insensitive keywords)::

    expr    := or
    or      := and ("OR" and)*
    and     := not ("AND" not)*
    not     := "NOT" not | primary
    primary := "(" expr ")" | column op literal | column "IN" "(" literal ("," literal)* ")"
             | column "IS" ["NOT"] "NULL" | column ["NOT"] "LIKE" string | column "CONTAINS" literal
    op      := = | != | <> | < | <= | > | >=
    literal := 'string' ('' escapes a quote) | number | TRUE | FALSE

The text is tokenised and parsed into a tree; nothing is ever evaluated as code. The
tree is applied to an Arrow table column by column (:func:`evaluate`). A column the table
lacks is all-null, so a predicate on it matches nothing (SQL's three-valued logic: NULL
compared to anything is not true).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class WhereError(ValueError):
    """The predicate does not parse; the message points at the offending token."""


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<op><=|>=|<>|!=|=|<|>|\(|\)|,)
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""", re.VERBOSE)
KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "CONTAINS", "TRUE", "FALSE"}


@dataclass(frozen=True)
class Tok:
    kind: str  # str | num | op | word | kw
    value: Any
    pos: int


def tokenize(text: str) -> list[Tok]:
    toks: list[Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise WhereError(f"unexpected character at {pos}: {text[pos:pos + 10]!r}")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        start = m.start(kind)
        if kind == "str":
            toks.append(Tok("str", raw[1:-1].replace("''", "'"), start))
        elif kind == "num":
            toks.append(Tok("num", float(raw) if any(c in raw for c in ".eE") else int(raw), start))
        elif kind == "word" and raw.upper() in KEYWORDS:
            toks.append(Tok("kw", raw.upper(), start))
        else:
            toks.append(Tok(kind, raw, start))
        pos = m.end()
    return toks


# nodes: ("and", a, b) ("or", a, b) ("not", a) ("cmp", col, op, lit) ("in", col, [lits])
#        ("null", col, is_null) ("like", col, pattern, negate) ("contains", col, lit)
class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Tok:
        t = self.peek()
        if t is None:
            raise WhereError("unexpected end of predicate")
        self.i += 1
        return t

    def accept(self, kind: str, value: Any = None) -> bool:
        t = self.peek()
        if t is not None and t.kind == kind and (value is None or t.value == value):
            self.i += 1
            return True
        return False

    def expect(self, kind: str, value: Any = None) -> Tok:
        t = self.peek()
        if t is None or t.kind != kind or (value is not None and t.value != value):
            where = f"at {t.pos} ({t.value!r})" if t else "at the end"
            raise WhereError(f"expected {value or kind} {where}")
        self.i += 1
        return t

    def parse(self) -> tuple:
        if not self.toks:
            raise WhereError("empty predicate")
        node = self.or_()
        if self.peek() is not None:
            t = self.peek()
            raise WhereError(f"unexpected {t.value!r} at {t.pos}")
        return node

    def or_(self) -> tuple:
        node = self.and_()
        while self.accept("kw", "OR"):
            node = ("or", node, self.and_())
        return node

    def and_(self) -> tuple:
        node = self.not_()
        while self.accept("kw", "AND"):
            node = ("and", node, self.not_())
        return node

    def not_(self) -> tuple:
        if self.accept("kw", "NOT"):
            return ("not", self.not_())
        return self.primary()

    def literal(self) -> Any:
        t = self.take()
        if t.kind in ("str", "num"):
            return t.value
        if t.kind == "kw" and t.value in ("TRUE", "FALSE"):
            return t.value == "TRUE"
        raise WhereError(f"expected a literal at {t.pos}, got {t.value!r}")

    def primary(self) -> tuple:
        if self.accept("op", "("):
            node = self.or_()
            self.expect("op", ")")
            return node
        col = self.expect("word").value
        t = self.take()
        if t.kind == "op" and t.value in ("=", "!=", "<>", "<", "<=", ">", ">="):
            return ("cmp", col, "!=" if t.value == "<>" else t.value, self.literal())
        if t.kind == "kw" and t.value == "IN":
            self.expect("op", "(")
            items = [self.literal()]
            while self.accept("op", ","):
                items.append(self.literal())
            self.expect("op", ")")
            return ("in", col, items)
        if t.kind == "kw" and t.value == "IS":
            neg = self.accept("kw", "NOT")
            self.expect("kw", "NULL")
            return ("null", col, not neg)
        if t.kind == "kw" and t.value == "NOT":
            self.expect("kw", "LIKE")
            pat = self.expect("str").value
            return ("like", col, pat, True)
        if t.kind == "kw" and t.value == "LIKE":
            return ("like", col, self.expect("str").value, False)
        if t.kind == "kw" and t.value == "CONTAINS":
            return ("contains", col, self.literal())
        raise WhereError(f"expected an operator after {col!r} at {t.pos}, got {t.value!r}")


def parse(text: str) -> tuple:
    """Parse a predicate into a tree (raises WhereError)."""
    return _Parser(text).parse()


def columns(node: tuple) -> set[str]:
    """Column names a tree refers to."""
    op = node[0]
    if op in ("and", "or"):
        return columns(node[1]) | columns(node[2])
    if op == "not":
        return columns(node[1])
    return {node[1]}


def _col(table: pa.Table, name: str) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows)
    c = table.column(name)
    return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c


def _scalar_for(arr: pa.Array, lit: Any) -> Any:
    t = arr.type
    if pa.types.is_null(t):
        return None
    if isinstance(lit, str) and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise WhereError(f"cannot compare a {t} column with the string {lit!r}")
    if not isinstance(lit, str) and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise WhereError(f"cannot compare a text column with {lit!r}; quote it: '{lit}'")
    return lit


def _like_regex(pattern: str) -> str:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return "^" + "".join(out) + "$"


def _eval(node: tuple, table: pa.Table) -> pa.Array:
    op = node[0]
    if op == "and":
        return pc.and_kleene(_eval(node[1], table), _eval(node[2], table))
    if op == "or":
        return pc.or_kleene(_eval(node[1], table), _eval(node[2], table))
    if op == "not":
        return pc.invert(_eval(node[1], table))
    arr = _col(table, node[1])
    n = table.num_rows
    if pa.types.is_null(arr.type):
        if op == "null":
            return pa.array(np.full(n, node[2]))
        return pa.nulls(n, pa.bool_())
    if op == "cmp":
        lit = _scalar_for(arr, node[3])
        fn = {"=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal, ">": pc.greater,
              ">=": pc.greater_equal}[node[2]]
        if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_map(arr.type):
            raise WhereError(f"{node[1]} is a list; use {node[1]} CONTAINS 'value'")
        return fn(arr, pa.scalar(lit).cast(arr.type) if lit is not None else pa.scalar(None, arr.type))
    if op == "in":
        vals = [_scalar_for(arr, v) for v in node[2]]
        res = pc.is_in(arr, value_set=pa.array(vals).cast(arr.type))
        return pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), res)
    if op == "null":
        return pc.is_null(arr) if node[2] else pc.is_valid(arr)
    if op == "like":
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            raise WhereError(f"LIKE needs a text column; {node[1]} is {arr.type}")
        res = pc.match_substring_regex(arr, _like_regex(node[2]))
        return pc.invert(res) if node[3] else res
    if op == "contains":
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            raise WhereError(f"CONTAINS needs a list column; {node[1]} is {arr.type}")
        flat = arr.flatten()
        hit = pc.equal(flat, pa.scalar(_scalar_for(flat, node[2])).cast(flat.type)).fill_null(False)
        parents = pc.list_parent_indices(arr).to_numpy()
        out = np.zeros(n, bool)
        out[parents[np.asarray(hit)]] = True
        return pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), pa.array(out))
    raise WhereError(f"unknown node {op}")  # pragma: no cover - the parser builds no other


def evaluate(tree: tuple, table: pa.Table) -> np.ndarray:
    """Boolean mask of the rows where the predicate is true (NULL counts as false)."""
    res = _eval(tree, table)
    if isinstance(res, pa.ChunkedArray):
        res = res.combine_chunks()
    return np.asarray(res.fill_null(False), dtype=bool)

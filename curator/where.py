"""The one condition language: `curator search --where` and shard split rules (`shard.splits[].where`).

    motion_tag = 'pan_left' AND clip_duration_s >= 4
    status IN ('ok', 'rejected') OR NOT (caption LIKE '%museum%')
    tags CONTAINS 'indoor' AND duplicate_of IS NULL
    scene_text CONTAINS 'museum'            (on text: a case-insensitive substring)

Grammar (case-insensitive keywords)::

    expr    := or
    or      := and ("OR" and)*
    and     := not ("AND" not)*
    not     := "NOT" not | primary
    primary := "(" expr ")" | column op literal | column "IN" "(" literal ("," literal)* ")"
             | column "IS" ["NOT"] "NULL" | column ["NOT"] "LIKE" string | column "CONTAINS" literal
    op      := = | == | != | <> | < | <= | > | >=
    literal := 'string' ('' escapes a quote) | number | TRUE | FALSE

The text is tokenised and parsed into a tree; nothing is ever evaluated as code. The
tree is applied to an Arrow table column by column (:func:`evaluate`) or to one row
(:func:`matches`, with a column getter: shard rules read `checks.<metric>` that way). A
column the table lacks is all-null, so a predicate on it matches nothing (SQL's
three-valued logic: NULL compared to anything is not true).

Split rules also accept their older form, ``<column> <op> <value>`` with a bare YAML
value (``video_type != talking_head``, ``has_audio == false``): :func:`parse_rule` reads
either (:func:`parse_condition` is that older form's parser).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # Arrow is imported where a table is evaluated: config.py parses rules without it
    import numpy as np
    import pyarrow as pa


class WhereError(ValueError):
    """The predicate does not parse; the message points at the offending token."""


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<op><=|>=|<>|!=|==|=|<|>|\(|\)|,)
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
        t = self.peek()
        if t is not None:
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
        if t.kind == "op" and t.value in ("=", "==", "!=", "<>", "<", "<=", ">", ">="):
            return ("cmp", col, {"<>": "!=", "==": "="}.get(t.value, t.value), self.literal())
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
    import pyarrow as pa

    if name not in table.column_names:
        return pa.nulls(table.num_rows)
    c = table.column(name)
    return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c


def _scalar_for(arr: pa.Array, lit: Any) -> Any:
    import pyarrow as pa

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
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

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
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            if not isinstance(node[2], str):
                raise WhereError(f"{node[1]} is text: CONTAINS needs a quoted string")
            return pc.match_substring(arr, node[2], ignore_case=True)
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            raise WhereError(f"CONTAINS needs a list or text column; {node[1]} is {arr.type}")
        flat = arr.flatten()
        hit = pc.equal(flat, pa.scalar(_scalar_for(flat, node[2])).cast(flat.type)).fill_null(False)
        parents = pc.list_parent_indices(arr).to_numpy()
        out = np.zeros(n, bool)
        out[parents[np.asarray(hit)]] = True
        return pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), pa.array(out))
    raise WhereError(f"unknown node {op}")  # pragma: no cover - the parser builds no other


def evaluate(tree: tuple, table: pa.Table) -> np.ndarray:
    """Boolean mask of the rows where the predicate is true (NULL counts as false)."""
    import numpy as np
    import pyarrow as pa

    res = _eval(tree, table)
    if isinstance(res, pa.ChunkedArray):
        res = res.combine_chunks()
    return np.asarray(res.fill_null(False), dtype=bool)


# ------------------------------------------------------------------ one row at a time
_ROW_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _row_eval(node: tuple, get: Callable[[str], Any]) -> bool | None:
    """Three-valued: True, False or None (NULL)."""
    op = node[0]
    if op in ("and", "or"):
        a, b = _row_eval(node[1], get), _row_eval(node[2], get)
        if op == "and":
            return False if a is False or b is False else (None if a is None or b is None else True)
        return True if a is True or b is True else (None if a is None or b is None else False)
    if op == "not":
        a = _row_eval(node[1], get)
        return None if a is None else not a
    value = get(node[1])
    if op == "null":
        return (value is None) == node[2]
    if value is None:
        return None
    try:
        if op == "cmp":
            return bool(_ROW_OPS[node[2]](value, node[3]))
        if op == "in":
            return value in node[2]
        if op == "like":
            hit = re.match(_like_regex(node[2]), value, re.S) is not None
            return hit != node[3]
        if op == "contains":
            if isinstance(value, str):  # text: a case-insensitive substring, as on a table
                return str(node[2]).casefold() in value.casefold() if isinstance(node[2], str) else None
            return node[2] in value
    except TypeError:  # e.g. a number compared with text: not true
        return None
    raise WhereError(f"unknown node {op}")  # pragma: no cover - the parser builds no other


def matches(tree: tuple, row: dict[str, Any], get: Callable[[str], Any] | None = None) -> bool:
    """Whether the predicate is true for one row (a dict); `get(column)` reads a value
    (default: `row.get`). NULL and type mismatches count as not true."""
    return _row_eval(tree, get or row.get) is True


# ------------------------------------------------------------- split rules (old form)
#: the older split-rule form: "<column> <op> <value>", e.g. "quality_score >= 0.6" or "checks.aesthetic >= 3.5"
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?)\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*$")


def parse_condition(text: str) -> tuple[str, str, Any]:
    """'quality_score >= 0.6' -> ('quality_score', '>=', 0.6). The value is read as YAML
    (numbers, true/false, quoted or bare strings); order comparisons need a number."""
    import yaml

    m = _CONDITION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not of the form '<column> <op> <value>' with op one of >=, >, <=, <, ==, != "
                         f"(or a `curator search --where` predicate)")
    column, op, raw = m.groups()
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if op in (">=", ">", "<=", "<") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{text!r}: {op} needs a number, got {raw!r}")
    if isinstance(value, (list, dict)) or value is None:
        raise ValueError(f"{text!r}: the value must be a number, a boolean or a string")
    return column, op, value


def parse_rule(text: str) -> tuple:
    """A split rule as a tree: a predicate of this language, or the older
    ``<column> <op> <value>`` form (raises ValueError naming both forms)."""
    try:
        return parse(text)
    except WhereError:
        column, op, value = parse_condition(text)
        return ("cmp", column, "=" if op == "==" else op, value)

"""One condition language: split rules use curator.where (and keep their older form)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curator import where
from curator.config import ConfigError, PipelineConfig, SplitRules
from curator.phases.shard import Selection

pytestmark = pytest.mark.unit

ROWS = [
    {"q": 0.9, "t": "nature", "tags": ["indoor", "day"], "cap": "a museum hall", "n": None},
    {"q": 0.4, "t": "talking_head", "tags": [], "cap": None, "n": 3},
    {"q": None, "t": "nature", "tags": None, "cap": "street", "n": 5},
]
PREDICATES = [
    "q >= 0.5", "q < 0.5", "t = 'nature'", "t == 'nature'", "t != 'nature'", "NOT q >= 0.5",
    "q >= 0.5 OR t = 'talking_head'", "q >= 0.5 AND tags CONTAINS 'indoor'", "cap LIKE '%museum%'",
    "cap NOT LIKE '%museum%'", "n IS NULL", "n IS NOT NULL", "t IN ('nature', 'x')", "NOT (n > 4)",
    "cap CONTAINS 'MUSEUM'", "NOT cap CONTAINS 'street'", "cap CONTAINS 'hall' AND q > 0.5",
]


@pytest.mark.parametrize("text", PREDICATES)
def test_a_row_matches_as_the_table_evaluates(text):
    tree = where.parse(text)
    table = pa.Table.from_pylist(ROWS)
    assert [where.matches(tree, r) for r in ROWS] == list(where.evaluate(tree, table))


def test_contains_on_text_is_a_case_insensitive_substring():
    table = pa.Table.from_pylist(ROWS)
    assert list(where.evaluate(where.parse("cap CONTAINS 'Museum H'"), table)) == [True, False, False]
    assert list(where.evaluate(where.parse("tags CONTAINS 'Indoor'"), table)) == [False, False, False]  # lists: exact
    with pytest.raises(where.WhereError, match="quoted string"):
        where.evaluate(where.parse("cap CONTAINS 3"), table)
    with pytest.raises(where.WhereError, match="list or text"):
        where.evaluate(where.parse("q CONTAINS 'x'"), table)


@pytest.mark.parametrize("text, tree", [
    ("video_type != talking_head", ("cmp", "video_type", "!=", "talking_head")),  # older form: bare value
    ("has_audio == false", ("cmp", "has_audio", "=", False)),
    ("quality_score >= 0.7", ("cmp", "quality_score", ">=", 0.7)),
    ("checks.aesthetic >= 3.5", ("cmp", "checks.aesthetic", ">=", 3.5)),
    ("quality_score >= 0.7 AND video_type != 'talking_head'",
     ("and", ("cmp", "quality_score", ">=", 0.7), ("cmp", "video_type", "!=", "talking_head"))),
])
def test_split_rules_read_both_forms(text, tree):
    assert where.parse_rule(text) == tree


def test_a_split_takes_a_where_predicate():
    sel = Selection({"ft": SplitRules(where=["quality_score >= 0.5 AND tags CONTAINS 'indoor'",
                                             "checks.aesthetic > 3"])},
                    columns=["quality_score", "tags", "checks"])
    ok = {"quality_score": 0.8, "tags": ["indoor"], "checks": [{"metric": "aesthetic", "value": 4.0}]}
    assert sel.select(ok, "b") == ["ft"]
    assert sel.select({**ok, "tags": ["outdoor"]}, "b") == []
    assert sel.select({**ok, "checks": []}, "b") == []
    assert sel.refused["ft"] == {"where: quality_score >= 0.5 AND tags CONTAINS 'indoor'": 1,
                                 "where: checks.aesthetic > 3": 1}
    assert SplitRules(where=["a >= 1 OR b = 'x'"]).columns() == ["a", "b"]


def test_a_bad_rule_names_both_forms():
    with pytest.raises(ConfigError, match="search --where"):
        PipelineConfig.load(None, ["shard.splits={ft: {where: ['quality_score']}}"])

"""Coverage against targets, and eval-tags, on manifests with planted tags (a run folder and an index)."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest

from curator import coverage, manifest, storage
from curator.config import ConfigError
from curator.records import schema_for, to_table
from curator.rundir import RunDir
from curator.tagging import COLUMNS

pytestmark = pytest.mark.unit

# (place, time_of_day, status, seconds, decor_elements)
CLIPS = [
    ("zoo", "day", "ok", 4.0, ["plants"]),
    ("zoo", "day", "ok", 6.0, ["plants", "signage"]),
    ("zoo", "night", "rejected", 5.0, None),  # not kept: never counted
    ("museum", "day", "ok", 3600.0, []),
    ("museum", "night", "ok", 1800.0, ["statues"]),
    ("museum", "night", "ok", 1800.0, None),
    ("city", "dusk", "ok", 10.0, ["signage"]),
    (None, "day", "ok", 2.0, None),  # not tagged
    ("city", "night", "error", 8.0, None),
]


def write_manifest(out: str) -> list[str]:
    extra = COLUMNS + [("embedding", pa.list_(pa.float16())), ("embedding_model", pa.string())]
    rng = np.random.default_rng(0)
    rows = [{"kind": "video", "video_id": "v", "status": "ok", "duration_s": 99999.0}]
    ids = []
    for i, (place, tod, status, secs, dec) in enumerate(CLIPS):
        cid = f"v-{i:05d}"
        ids.append(cid)
        rows.append({"kind": "clip", "video_id": "v", "clip_id": cid, "clip_index": i, "status": status,
                     "clip_duration_s": secs, "place": place, "time_of_day": tod, "decor_elements": dec,
                     "place_conf": 0.9 if i % 2 else 0.4, "clip_uri": RunDir.of(out).clip("v", cid),
                     "embedding": rng.standard_normal(8).tolist(), "embedding_model": "m"})
    storage.write_bytes(RunDir.of(out).manifest, manifest.table_bytes(to_table(rows, schema_for(extra))))
    return ids


TARGETS = """
targets:
  - where: {place: zoo}
    min_clips: 3
  - where: {place: museum, time_of_day: night}
    min_hours: 1.5
  - where: {place: [museum, city]}
    min_clips: 4
    min_hours: 0.5
  - where: "place = 'city' AND time_of_day IN ('dusk', 'night')"
    min_clips: 1
    name: city after dark
  - where: {decor_elements: signage}
    min_clips: 3
"""


@pytest.fixture
def run(tmp_path) -> str:
    out = str(tmp_path / "run")
    write_manifest(out)
    return out


def test_counts_and_gaps_on_a_manifest_with_planted_tags(run, tmp_path):
    (tmp_path / "t.yaml").write_text(TARGETS)
    targets = coverage.load_targets(str(tmp_path / "t.yaml"))
    cov = coverage.measure(run, ["place", "time_of_day"], targets)
    got = {k: (c.clips, c.seconds) for k, c in cov.cells.items()}
    assert got == {("zoo", "day"): (2, 10.0), ("museum", "day"): (1, 3600.0), ("museum", "night"): (2, 3600.0),
                   ("city", "dusk"): (1, 10.0), (None, "day"): (1, 2.0)}
    assert (cov.total.clips, cov.total.seconds) == (7, 7222.0)
    res = {t.target.name: (t.clips, round(t.hours, 4), t.met, t.missing_clips, round(t.missing_hours, 4))
           for t in cov.targets}
    assert res == {"place=zoo": (2, 0.0028, False, 1, 0.0),
                   "place=museum, time_of_day=night": (2, 1.0, False, 0, 0.5),
                   "place=museum|city": (4, round(7210 / 3600, 4), True, 0, 0.0),
                   "city after dark": (1, 0.0028, True, 0, 0.0),
                   "decor_elements=signage": (2, 0.0044, False, 1, 0.0)}
    assert [g.target.name for g in coverage.gaps(cov)] == ["place=zoo", "place=museum, time_of_day=night",
                                                          "decor_elements=signage"]
    doc = json.loads(coverage.to_json(cov))
    assert doc["total"] == {"clips": 7, "hours": round(7222 / 3600, 6)}
    assert {"cell": {"place": "zoo", "time_of_day": "day"}, "clips": 2, "hours": round(10 / 3600, 6)} in doc["cells"]
    assert [g["name"] for g in doc["gaps"]] == [g.target.name for g in coverage.gaps(cov)]
    assert "GAP  place=zoo" in coverage.format_text(cov)


def test_a_list_column_counts_a_clip_in_each_of_its_cells_and_once_in_totals(run):
    cov = coverage.measure(run, ["decor_elements"])
    assert {k: c.clips for k, c in cov.cells.items()} == {("plants",): 2, ("signage",): 2, ("statues",): 1,
                                                          (None,): 3}
    assert cov.total.clips == 7 and sum(c.clips for c in cov.cols.values()) == 8  # the two-element clip twice
    by2 = coverage.measure(run, ["place", "decor_elements"])
    assert by2.rows[("zoo",)].clips == 2  # once per clip, though it is in two cells


def test_where_restricts_the_clips(run):
    cov = coverage.measure(run, ["place"], where_text="place_conf >= 0.5")  # the odd clips, kept: 1, 3, 5, 7
    assert {k[0]: c.clips for k, c in cov.cells.items()} == {"zoo": 1, "museum": 2, None: 1}


def test_an_index_is_a_source_like_a_run(run, tmp_path):
    from curator import index
    from curator.config import IndexConfig

    idx = str(tmp_path / "index")
    index.add_run(run, idx, IndexConfig())
    assert coverage.source_kind(idx) == "index" and coverage.source_kind(run) == "run"
    a = coverage.measure(run, ["place", "time_of_day"])
    b = coverage.measure(idx, ["place", "time_of_day"])
    assert {k: (c.clips, c.seconds) for k, c in a.cells.items()} == {k: (c.clips, c.seconds) for k, c in b.cells.items()}
    with pytest.raises(coverage.CoverageError, match="neither"):
        coverage.measure(str(tmp_path / "nothing"), ["place"])


@pytest.mark.parametrize("doc, match", [
    ({"targets": [{"where": {"place": "zoo"}}]}, "min_clips and/or min_hours"),
    ({"targets": [{"where": {"place": "zoo"}, "min_clips": -1}]}, "min_clips"),
    ({"targets": [{"where": {"place": "zoo"}, "min_hours": "lots"}]}, "min_hours"),
    ({"targets": [{"where": {}, "min_clips": 1}]}, "where"),
    ({"targets": [{"where": "place = ", "min_clips": 1}]}, "where"),
    ({"targets": [{"where": {"place": "zoo"}, "min_clip": 1}]}, "unknown keys"),
    ({"targts": []}, "unknown top-level"),
    ({"targets": [{"where": {"place": {"a": 1}}, "min_clips": 1}]}, "where.place"),
])
def test_target_errors_name_the_problem(doc, match):
    with pytest.raises(ConfigError, match=match):
        coverage.parse_targets(doc)


def test_targets_read_from_json_too(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"targets": [{"where": {"place": "zoo"}, "min_clips": 2}]}))
    [t] = coverage.load_targets(str(p))
    assert (t.where, t.min_clips, t.min_hours, t.name) == ({"place": "zoo"}, 2, None, "place=zoo")


def test_heatmap_has_every_taxonomy_label_and_marks_gaps(run, tmp_path):
    from curator.report.heatmap import render_coverage
    from curator.taxonomy import load_places

    (tmp_path / "t.yaml").write_text(TARGETS)
    cov = coverage.measure(run, ["place", "time_of_day"], coverage.load_targets(str(tmp_path / "t.yaml")))
    html_text = render_coverage(cov, load_places(None))
    cells = {cell: cls for cls, cell in re.findall(r'<td class="([^"]*)" data-cell="([^"]*)"', html_text)}
    clips = dict(re.findall(r'data-cell="([^"]*)" data-clips="(\d+)"', html_text))
    assert clips["zoo|day"] == "2" and clips["museum|night"] == "2" and clips["hospital|night"] == "0"
    assert clips["(none)|day"] == "1" and clips["*|*"] == "7" and clips["zoo|*"] == "2"
    assert "gap" in cells["museum|night"] and "gap" in cells["zoo|*"]  # a cell target and a row target
    assert "gap" not in cells["zoo|day"] and cells["city|dusk"] == "cell"
    assert 'data-target="city after dark"' in html_text and "need +1 clips" in html_text
    assert not re.search(r'(src|href)="(https?:|//|file:)', html_text)


def test_eval_tags_against_labels_by_clip_id_and_by_uri(run, tmp_path):
    from curator import tag_eval
    from curator.taxonomy import load_places

    ids = [f"v-{i:05d}" for i in range(len(CLIPS))]
    # gold: zoo, zoo, zoo, museum, city(!), museum, city, zoo(!), (unlabelled)
    gold = ["zoo", "Zoo", "zoo", "museum", "city", "museum", "city", "zoo", ""]
    lines = ["clip_id,place,decor_elements,notes"] + [f"{c},{g},plants;signage,x" for c, g in zip(ids, gold)]
    (tmp_path / "labels.csv").write_text("\n".join(lines + ["missing-00001,zoo,,"]) + "\n")
    res = tag_eval.evaluate(run, str(tmp_path / "labels.csv"), load_places(None))
    assert res["matched"] == 9 and res["unmatched"] == ["missing-00001"] and res["ignored_columns"] == ["notes"]
    m = res["fields"]["place"]
    assert m["clips"] == 8 and m["accuracy"] == round(6 / 8, 4) and m["coverage"] == round(7 / 8, 4)
    assert m["labels"]["zoo"] == {"precision": 1.0, "recall": 0.75, "f1": round(2 * 0.75 / 1.75, 4), "support": 4,
                                  "predicted": 3}
    assert m["labels"]["city"] == {"precision": 1.0, "recall": 0.5, "f1": round(2 * 0.5 / 1.5, 4), "support": 2,
                                   "predicted": 1}
    assert m["labels"]["museum"]["precision"] == round(2 / 3, 4) and m["labels"]["museum"]["recall"] == 1.0
    assert "decor_elements" in res["fields"]
    # the same labels by clip_uri (a plain path matches the manifest's file:// URI)
    uri_lines = ["clip_uri,place"] + [f"{RunDir.of(run).clip('v', c).removeprefix('file://')},{g}"
                                      for c, g in zip(ids, gold)]
    (tmp_path / "by_uri.csv").write_text("\n".join(uri_lines) + "\n")
    res2 = tag_eval.evaluate(run, str(tmp_path / "by_uri.csv"), load_places(None))
    assert res2["key"] == "clip_uri" and res2["fields"]["place"] == m
    assert "zoo" in tag_eval.format_text(res)
    (tmp_path / "none.csv").write_text("clip_id,colour\nv-00000,red\n")
    with pytest.raises(ConfigError, match="no column names a tag field"):
        tag_eval.evaluate(run, str(tmp_path / "none.csv"))

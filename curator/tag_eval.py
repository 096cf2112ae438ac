"""`curator eval-tags SOURCE LABELS`: how well a run's place tags match a user's labelled clips.

LABELS is a CSV (or Parquet) with a key column — ``clip_id`` or ``clip_uri`` — and one column
per field to measure, named like the manifest's (``place``, ``place_sub``, ``setting``,
``time_of_day``, ``weather``, ``crowd``, ``decor``, ``decor_elements``, ``city``, ``region``);
an empty cell means "not labelled in that field". Labels go through the taxonomy's aliases;
several labels of ``decor_elements`` are separated by ``;`` or ``|``; city and region compare
case-insensitively.

Per field: for every label (those labelled or predicted) precision = tp / (tp + fp), recall =
tp / (tp + fn) and F1 (0 where undefined, as scikit-learn's zero_division=0), support and how
often it was predicted; macro averages over those labels; accuracy (exact match, a missing
prediction counts as wrong) and coverage (labelled clips that got a prediction). SOURCE is a
run folder or a clip index (all clips, kept or not, are matched).
"""

from __future__ import annotations

import json
from typing import Any

from curator import storage
from curator.config import ConfigError
from curator.taxonomy import MULTI_FIELDS, PLACE_FIELDS, SUB_FIELD, TEXT_FIELDS, PlaceTaxonomy, norm_label

#: fields eval-tags measures (the manifest's tag columns)
FIELDS = ("place", SUB_FIELD) + tuple(f for f in PLACE_FIELDS if f != "place")


def _norm(field: str, value: Any, tax: PlaceTaxonomy | None) -> Any:
    """A label (or, for a multi-label field, a set of labels) in comparable form; None: no label."""
    if value is None:
        return None
    if field in MULTI_FIELDS:
        items = value if isinstance(value, list) else str(value).replace("|", ";").split(";")
        return frozenset(k for k in (_one(field, str(v), tax) for v in items) if k)
    return _one(field, str(value), tax)


def _one(field: str, value: str, tax: PlaceTaxonomy | None) -> str | None:
    text = value.strip()
    if not text:
        return None
    if field in TEXT_FIELDS:
        return " ".join(text.lower().split())
    f = tax.fields.get(field) if tax is not None else None
    return (f.lookup(text) if f is not None else None) or norm_label(text)


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def score_field(field: str, pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Metrics of one field from (gold, predicted) pairs (gold never None)."""
    multi = field in MULTI_FIELDS
    per: dict[str, dict[str, int]] = {}

    def slot(label: str) -> dict[str, int]:
        return per.setdefault(label, {"tp": 0, "fp": 0, "fn": 0, "support": 0, "predicted": 0})

    exact = covered = 0
    for gold, pred in pairs:
        g = set(gold) if multi else {gold}
        p = set(pred or ()) if multi else ({pred} if pred is not None else set())
        exact += g == p
        covered += pred is not None
        for lab in g | p:
            s = slot(lab)
            s["support"] += lab in g
            s["predicted"] += lab in p
            s["tp"] += lab in g and lab in p
            s["fp"] += lab in p and lab not in g
            s["fn"] += lab in g and lab not in p
    labels = {}
    for lab in sorted(per, key=lambda k: (-per[k]["support"], k)):
        s = per[lab]
        prec, rec, f1 = _prf(s["tp"], s["fp"], s["fn"])
        labels[lab] = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4),
                       "support": s["support"], "predicted": s["predicted"]}
    n = len(pairs)
    macro = {k: round(sum(v[k] for v in labels.values()) / len(labels), 4) if labels else 0.0
             for k in ("precision", "recall", "f1")}
    return {"clips": n, "accuracy": round(exact / n, 4) if n else 0.0, "coverage": round(covered / n, 4) if n else 0.0,
            "macro": macro, "labels": labels}


def evaluate(source: str, labels_path: str, tax: PlaceTaxonomy | None = None,
             fields: list[str] | None = None) -> dict[str, Any]:
    """Join the labelled clips with SOURCE's tags and score every labelled field."""
    from curator.coverage import read_clips
    from curator.type_head import _clip_key, read_label_table

    key, table = read_label_table(labels_path)
    present = [c for c in (table[0].keys() if table else []) if c != key]
    wanted = [f for f in FIELDS if f in present and (fields is None or f in fields)]
    if fields:
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise ConfigError(f"--fields: {unknown} are not tag fields ({', '.join(FIELDS)})")
    if not wanted:
        raise ConfigError(f"{labels_path}: no column names a tag field ({', '.join(FIELDS)}); it has "
                          f"{', '.join(present) or 'no other columns'}")
    gold = {_clip_key(key, r[key]): r for r in table}
    preds: dict[str, dict[str, Any]] = {}
    for t in read_clips(source, [key, *wanted], kept_only=False):
        for r in t.to_pylist():
            if r[key] is not None:
                k = _clip_key(key, r[key])
                if k in gold:
                    preds[k] = r
    result: dict[str, Any] = {"source": storage.normalize(source), "labels": labels_path, "key": key,
                              "labelled": len(gold), "matched": len(preds),
                              "unmatched": sorted(k for k in gold if k not in preds)[:10],
                              "ignored_columns": [c for c in present if c not in FIELDS], "fields": {}}
    for f in wanted:
        pairs = []
        for k, row in gold.items():
            g = _norm(f, row.get(f), tax)
            if g is None or k not in preds:
                continue
            p = _norm(f, preds[k].get(f), tax)
            pairs.append((g, p))
        if pairs:
            result["fields"][f] = score_field(f, pairs)
    return result


def format_text(res: dict[str, Any]) -> str:
    lines = [f"{res['matched']} of {res['labelled']} labelled clips found in {storage.display(res['source'])} "
             f"(by {res['key']})"]
    if res["unmatched"]:
        lines.append("not found: " + ", ".join(res["unmatched"]) + (" ..." if res["labelled"] - res["matched"] > 10
                                                                     else ""))
    if res["ignored_columns"]:
        lines.append("ignored columns (not tag fields): " + ", ".join(res["ignored_columns"]))
    for f, m in res["fields"].items():
        lines.append("")
        lines.append(f"{f}: {m['clips']} clips, accuracy {m['accuracy']:.3f}, coverage {m['coverage']:.3f}, "
                     f"macro precision {m['macro']['precision']:.3f} recall {m['macro']['recall']:.3f} "
                     f"F1 {m['macro']['f1']:.3f}")
        w = max([len("label")] + [len(k) for k in m["labels"]])
        lines.append(f"  {'label':{w}s}  precision  recall     f1  support  predicted")
        for lab, s in m["labels"].items():
            lines.append(f"  {lab:{w}s}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['f1']:5.3f}  "
                         f"{s['support']:7d}  {s['predicted']:9d}")
    return "\n".join(lines)


def to_json(res: dict[str, Any]) -> str:
    return json.dumps(res, indent=1)

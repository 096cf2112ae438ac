"""Prompts for coverage gaps: a target's cell -> text prompts built from the place taxonomy.

A *cell* is a mapping column -> value (``{"place": "zoo", "time_of_day": "night"}``): the
equality constraints of a target's ``where`` (a mapping, or a predicate made of ``=``,
``IN`` and ``CONTAINS`` joined by ``AND``; a list value or an ``IN`` expands into one cell
per value). Other predicates (``OR``, ``<``, ``LIKE`` ...) name no cell to generate for:
:func:`cells_of` returns none and the loop reports the target as not generatable.

A prompt is deterministic in (cell, variant): the subject is a prompt of the most specific
place label (the sub-kind's, else the place's), the other fields add the first words of
their labels' prompts, and the variant picks among each label's prompts in turn and sets the
seed. Its id is a digest of the cell, the text, the negative prompt and the seed, so the
same prompt is never made twice and a rerun finds it in the ledger.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from typing import Any

from curator import where
from curator.taxonomy import SUB_FIELD, TEXT_FIELDS, PlaceTaxonomy

#: the order fields appear in a prompt after the subject
ORDER = ("setting", "time_of_day", "weather", "crowd", "decor", "decor_elements", "city", "region")

DEFAULT_TEMPLATE = "Realistic video footage of {subject}{details}. Smooth camera motion, natural light, high detail."


@dataclass(frozen=True)
class Prompt:
    id: str
    cell: dict[str, Any]
    text: str
    negative_prompt: str
    seed: int
    variant: int

    @property
    def cell_json(self) -> str:
        return cell_key(self.cell)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Prompt":
        return cls(d["id"], dict(d["cell"]), d["text"], d["negative_prompt"], int(d["seed"]), int(d["variant"]))


def cell_key(cell: dict[str, Any]) -> str:
    """The canonical JSON of a cell (the manifest's ``target_cell``)."""
    return json.dumps(cell, sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------------------------ cells
def _constraints(node: tuple) -> list[dict[str, list[Any]]] | None:
    """column -> allowed values for an AND of =, IN and CONTAINS; None when not of that form."""
    kind = node[0]
    if kind == "and":
        a, b = _constraints(node[1]), _constraints(node[2])
        if a is None or b is None:
            return None
        merged = dict(a[0])
        for k, v in b[0].items():
            merged[k] = [x for x in merged[k] if x in v] if k in merged else v
        return [merged]
    if kind == "cmp" and node[2] == "=":
        return [{node[1]: [node[3]]}]
    if kind == "in":
        return [{node[1]: list(node[2])}]
    if kind == "contains":
        return [{node[1]: [node[2]]}]
    return None


def cells_of(w: dict[str, Any] | str) -> list[dict[str, Any]]:
    """The cells a target's ``where`` names (a list value or IN: one cell per value, in order)."""
    if isinstance(w, str):
        got = _constraints(where.parse(w))
        if got is None:
            return []
        spec = got[0]
    else:
        spec = {k: (v if isinstance(v, list) else [v]) for k, v in w.items()}
    if any(not vals for vals in spec.values()):
        return []
    keys = list(spec)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec[k] for k in keys))]


def cell_matches(cell: dict[str, Any], row: dict[str, Any]) -> bool:
    """Does a clip's row carry the cell's values (a list column: contains)?"""
    for k, v in cell.items():
        got = row.get(k)
        if isinstance(got, list):
            if v not in got:
                return False
        elif got != v:
            return False
    return True


# ------------------------------------------------------------------------------ text
def _label_prompts(tax: PlaceTaxonomy, field: str, key: Any) -> list[str]:
    f = tax.fields.get(field)
    if f is None:
        return []
    for lab in f.labels:
        if lab.key == key:
            return list(lab.prompts)
    return []


def _pick(options: list[str], variant: int) -> str:
    return options[variant % len(options)] if options else ""


def prompt_text(cell: dict[str, Any], variant: int, tax: PlaceTaxonomy, template: str = DEFAULT_TEMPLATE) -> str:
    """The text of one prompt for a cell: the subject from the place (sub-kind) label, details
    from the other fields' labels; `variant` rotates through each label's prompts."""
    sub = cell.get(SUB_FIELD)
    place = cell.get("place") or (tax.parent(str(sub)) if sub else None)
    subject = ""
    if sub:
        subject = _pick(_label_prompts(tax, SUB_FIELD, sub), variant) or str(sub).replace("_", " ")
    elif place:
        subject = _pick(_label_prompts(tax, "place", place), variant) or str(place).replace("_", " ")
    details: list[str] = []
    for field in ORDER:
        if field not in cell:
            continue
        v = cell[field]
        if field in TEXT_FIELDS:
            details.append(f"in {v}")
        elif field == "decor_elements":
            details.append(f"with {str(v).replace('_', ' ')}")
        else:
            details.append(_pick(_label_prompts(tax, field, v), variant) or f"{field.replace('_', ' ')} {v}")
    # columns that are not taxonomy fields (e.g. a target on clip_height) add nothing to the text
    if not subject:
        subject = details.pop(0) if details else "a real place"
    return template.format(subject=subject, details="".join(f", {d}" for d in details), **_fmt(cell))


def _fmt(cell: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cell.items() if k not in ("subject", "details")}


def seed_for(cell: dict[str, Any], variant: int, base_seed: int = 0) -> int:
    h = hashlib.sha256(f"{cell_key(cell)}|{variant}|{base_seed}".encode()).digest()
    return int.from_bytes(h[:4], "big") % 2_000_000_000


def prompt_id(cell: dict[str, Any], text: str, negative: str, seed: int) -> str:
    blob = json.dumps([cell_key(cell), text, negative, seed], separators=(",", ":")).encode()
    return "g" + hashlib.sha256(blob).hexdigest()[:15]


def make_prompt(cell: dict[str, Any], variant: int, tax: PlaceTaxonomy, *, negative: str = "",
                template: str = DEFAULT_TEMPLATE, base_seed: int = 0) -> Prompt:
    text = prompt_text(cell, variant, tax, template)
    seed = seed_for(cell, variant, base_seed)
    return Prompt(prompt_id(cell, text, negative, seed), dict(cell), text, negative, seed, variant)


def prompts_for(cell: dict[str, Any], n: int, tax: PlaceTaxonomy, *, skip: set[str], negative: str = "",
                template: str = DEFAULT_TEMPLATE, base_seed: int = 0, start: int = 0) -> list[Prompt]:
    """`n` new prompts for a cell: variants from `start` on whose ids are not in `skip`
    (deduplicated: a variant whose text and seed repeat an earlier one is passed over)."""
    out: list[Prompt] = []
    seen = set(skip)
    variant = start
    while len(out) < n and variant < start + 100 * (n + len(skip) + 1):
        p = make_prompt(cell, variant, tax, negative=negative, template=template, base_seed=base_seed)
        if p.id not in seen:
            seen.add(p.id)
            out.append(p)
        variant += 1
    return out

"""Dedup's shared names: manifest columns, thresholds, the error type, the serial map."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

from curator.config import DedupConfig
from curator.rundir import DEDUP_REPORT

log = logging.getLogger("curator.dedup")

STAGE = "dedup"
REASON = "duplicate"
#: columns dedup adds to the manifest
COLUMNS: list[tuple[str, pa.DataType]] = [
    ("dup_group", pa.string()),
    ("duplicate_of", pa.string()),
    ("similarity", pa.float32()),
]
REPORT_NAME = DEDUP_REPORT
#: default thresholds by embedding model (dedup.threshold unset); others get DEFAULT_THRESHOLD
MODEL_THRESHOLDS = {"perceptual-dct-v1": 0.8}
DEFAULT_THRESHOLD = 0.9


def threshold_for(cfg: DedupConfig, model: str | None) -> float:
    if cfg.threshold is not None:
        return float(cfg.threshold)
    return MODEL_THRESHOLDS.get(model or "", DEFAULT_THRESHOLD)
#: slack on the threshold for the border test (embeddings are float16 in the manifest)
BORDER_SLACK = 2e-3

MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


class DedupError(RuntimeError):
    """Dedup cannot run on this manifest; the message says why."""


def _serial_map(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        yield fn(item)

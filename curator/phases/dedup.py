"""Phase `dedup`: exact and semantic duplicates marked in the manifest (curator.dedup)."""

from __future__ import annotations

import logging
from typing import Any

from curator.phases.base import PhaseError, PhaseState

NAME = "dedup"
REQUIRES = ("manifest",)
POPULATES = ("dedup",)

log = logging.getLogger("curator")


def run(state: PhaseState, always: bool = False) -> Any:
    """`curator.dedup.run_phase` over the run folder; None when dedup is disabled (unless
    `always`: `curator dedup`)."""
    if not (always or state.config.dedup.enabled or state.config.dedup.reference_index):
        return None
    from curator import dedup

    try:
        res = dedup.run_phase(state.rundir.uri, state.config, state.runner)
    except dedup.DedupError as exc:
        raise PhaseError(f"dedup: {exc}") from None
    log.info("dedup: %d duplicates marked in %d groups", res.stats.removed, res.stats.groups)
    if res.stats.reference_index:
        log.info("dedup: %d near-copies of clips in %s", res.stats.reference_removed, res.stats.reference_index)
    return res

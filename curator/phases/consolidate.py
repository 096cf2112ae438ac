"""Phase `consolidate`: the per-video manifest parts into one sorted manifest.parquet."""

from __future__ import annotations

from curator import manifest
from curator.phases.base import PhaseError, PhaseState

NAME = "consolidate"
REQUIRES = ("parts",)
POPULATES = ("manifest",)


def run(state: PhaseState) -> str:
    """Merge staging/videos/*.parquet in key order (one part in memory at a time)."""
    if state.schema is None:
        raise PhaseError("consolidate needs the pipeline's manifest schema")
    return manifest.consolidate(state.rundir.uri, state.schema)

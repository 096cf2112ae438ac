"""Phase `index`: the run's clips added to the Parquet + faiss clip index (curator.index)."""

from __future__ import annotations

import logging
from typing import Any

from curator import storage
from curator.phases.base import PhaseState

NAME = "index"
REQUIRES = ("manifest",)
POPULATES = ("index",)

log = logging.getLogger("curator")


def run(state: PhaseState, index_uri: str | None = None) -> dict[str, Any] | None:
    """Add the run's clips with an embedding to `index_uri` (default: index.uri, or
    <run>/index); None when the index is disabled and no target is given."""
    from curator import index

    cfg = state.config.index
    if index_uri is None and not cfg.enabled:
        return None
    target = storage.normalize(index_uri) if index_uri else index.index_uri_for(state.rundir.uri, cfg)
    res = index.add_run(state.rundir.uri, target, cfg)
    if res["added"] or res["skipped"]:
        log.info("index: %d clips added to %s", res["added"], storage.display(res["index"]))
    else:
        log.info("index: no clip with an embedding to add")
    return res

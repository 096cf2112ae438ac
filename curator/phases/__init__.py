"""Run-level phases: the steps over a whole run folder, after the per-clip stages.

    consolidate -> refilter -> dedup -> index -> shard -> summary      (`curator run`)

Each is a module with one entry point ``run(state)`` over a :class:`PhaseState` (a
:class:`~curator.rundir.RunDir`, the config, the runner) and declares what it
``REQUIRES`` and ``POPULATES``; :func:`build` returns phases by name after checking that
order. The CLI's `refilter`, `dedup`, `index`, `shard` and `report` commands run the same
modules. Phase modules import the engine, never a stage and never each other.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Iterable

from curator.phases.base import PhaseError, PhaseState, check_order, run_phases

NAMES = ("consolidate", "refilter", "dedup", "index", "shard", "summary", "report")

__all__ = ["NAMES", "PhaseError", "PhaseState", "build", "check_order", "run_phases"]


def build(names: Iterable[str], available: Iterable[str] = ()) -> list[ModuleType]:
    """The phase modules `names`, in that order, after checking that each one's
    requirements are populated by `available` or an earlier phase."""
    mods = []
    for name in names:
        if name not in NAMES:
            raise PhaseError(f"unknown phase {name!r}; phases are {', '.join(NAMES)}")
        mods.append(importlib.import_module(f"curator.phases.{name}"))
    check_order(mods, available)
    return mods

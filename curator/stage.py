"""The stage contract.

A stage is small: a cheap ``__init__`` (config only), a heavy :meth:`Stage.setup` that runs
once in the worker (models, decoders), and :meth:`Stage.process` from a batch of rows to
a batch of rows. It declares its resources (from its config) and the columns it adds.
The runner, not the stage, decides where it runs; the same class runs under the local
runner and the Ray runner unchanged.

Rows that are not active (rejected or failed earlier, or of the other kind) pass
through untouched: later stages never see them, and they still reach the manifest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable

import pyarrow as pa

from curator.config import PipelineConfig, Resources, StageConfig
from curator.deadline import ItemTimeout, deadline
from curator.records import Reason, Row, add_timing, is_active, stop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """What a stage may know about the run; picklable, shipped to every worker."""

    config: PipelineConfig
    input_uri: str
    output_uri: str
    run_id: str
    config_hash: str
    #: string columns an input list brings (source_caption, license, ...): on video and clip rows
    extra_columns: tuple[str, ...] = ()

    @property
    def staging_uri(self) -> str:
        from curator.rundir import RunDir

        return RunDir(self.output_uri).staging

    @property
    def model_dir(self) -> str:
        return self.config.models.dir


@dataclass
class Requirement:
    """Something a stage needs that may be missing (weights, a package, a device)."""

    what: str
    path: str | None = None
    fix: str | None = None

    def describe(self) -> str:
        s = self.what
        if self.path:
            s += f" (expected at {self.path})"
        if self.fix:
            s += f"; fix: {self.fix}"
        return s


@dataclass
class StageStats:
    rows_in: int = 0
    rows_out: int = 0
    busy_s: float = 0.0
    stopped: dict[str, int] = field(default_factory=dict)


class Stage:
    """Base class. Subclasses set `name`, override `process_row` or `process_rows`."""

    #: unique stage name; also the key of its config under `stages:`
    name: ClassVar[str] = ""
    #: which rows it acts on: "video", "clip" or None for both
    kind: ClassVar[str | None] = "clip"
    #: columns it adds to the manifest schema
    columns: ClassVar[list[tuple[str, pa.DataType]]] = []
    #: load something heavy in setup(): run as an autoscaling actor pool under Ray
    stateful: ClassVar[bool] = False
    #: may share a Ray operator with its neighbours (see pipeline.group_stages)
    fusable: ClassVar[bool] = True
    #: enabled but its requirements are missing: skipped with a start-up note (True), or the
    #: start-up fails (False: a stage a run must not silently go without, e.g. privacy blur)
    skip_if_missing: ClassVar[bool] = True

    def __init__(self, config: StageConfig | Any, ctx: RunContext):
        self.config = config
        self.ctx = ctx
        self.stats = StageStats()
        self._ready = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def resources(self) -> Resources:
        res = getattr(self.config, "resources", None)
        return res if isinstance(res, Resources) else Resources()

    def requirements(self) -> list[Requirement]:
        """What is missing for this stage to run here (checked at start-up, on the driver)."""
        return []

    def setup(self) -> None:
        """Heavy initialisation, once per worker process / actor."""

    def ensure_setup(self) -> None:
        if not self._ready:
            from curator import storage

            # process-level default: a stage runs in a worker process, whose storage
            # backends are built from one config; the run's options travel in its ctx
            storage.configure(self.ctx.config.storage)
            self.setup()
            self._ready = True

    # ------------------------------------------------------------------ processing
    def process(self, batch: list[Row]) -> list[Row]:
        """Active rows go through `process_rows`; the rest pass through in place."""
        self.ensure_setup()
        self.stats.rows_in += len(batch)
        active_idx = [i for i, r in enumerate(batch) if is_active(r, self.kind)]
        if not active_idx:
            self.stats.rows_out += len(batch)
            return batch
        t0 = time.perf_counter()
        active = [batch[i] for i in active_idx]
        try:
            with deadline(self.ctx.config.run.item_timeout_s * len(active)):
                results = self.process_rows(active)
        except ItemTimeout as exc:  # a batch-level stage ran out of time
            results = [[stop(r, self.name, Reason.TIMEOUT, str(exc))] for r in active]
        except Exception as exc:  # a whole-batch failure: every active row gets the reason
            log.exception("stage %s failed on a batch of %d", self.name, len(active))
            results = [[stop(r, self.name, Reason.STAGE_FAILED, f"{type(exc).__name__}: {exc}")] for r in active]
        elapsed = time.perf_counter() - t0
        self.stats.busy_s += elapsed
        per_row = elapsed / max(1, len(active))
        now = time.time()
        out: list[Row] = []
        by_pos = dict(zip(active_idx, results))
        for i, row in enumerate(batch):
            produced = by_pos.get(i)
            if produced is None:
                out.append(row)
                continue
            for r in produced:
                add_timing(r, self.name, per_row / max(1, len(produced)), now)
                if r.get("status") != "ok" and r.get("stage") == self.name:
                    key = r.get("reason") or "unknown"
                    self.stats.stopped[key] = self.stats.stopped.get(key, 0) + 1
                out.append(r)
        self.stats.rows_out += len(out)
        return out

    def process_rows(self, rows: list[Row]) -> list[list[Row]]:
        """One list of output rows per input row. Default: `process_row` per row with
        per-row error capture, so one bad item never fails its neighbours."""
        return self.per_item(rows, lambda row, _i: self.process_row(row))

    def per_item(self, rows: list[Row], fn: Callable[[Row, int], Row | list[Row]]) -> list[list[Row]]:
        """The per-item loop every stage shares: ``fn(row, index)`` under the per-item
        deadline (``run.item_timeout_s``); a timeout or an exception stops that row alone
        (``timeout``, its transient bytes dropped, or ``stage_failed``) and the loop goes on."""
        out: list[list[Row]] = []
        limit = self.ctx.config.run.item_timeout_s if self.ctx else None
        for i, row in enumerate(rows):
            item = row.get("clip_id") or row.get("video_id")
            try:
                with deadline(limit):
                    res = fn(row, i)
            except ItemTimeout as exc:
                log.warning("stage %s: %s timed out", self.name, item)
                row.pop("video_bytes", None)
                row.pop("mp4", None)
                res = stop(row, self.name, Reason.TIMEOUT, str(exc))
            except Exception as exc:
                log.warning("stage %s failed on %s: %s", self.name, item, exc)
                res = stop(row, self.name, Reason.STAGE_FAILED, f"{type(exc).__name__}: {exc}")
            out.append(res if isinstance(res, list) else [res])
        return out

    def process_row(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError(f"{type(self).__name__} must implement process_row or process_rows")

    def __repr__(self) -> str:
        return f"<stage {self.name}>"


def stage_columns(stages: Iterable[Stage]) -> list[tuple[str, pa.DataType]]:
    cols: list[tuple[str, pa.DataType]] = []
    for s in stages:
        cols.extend(s.columns)
    return cols

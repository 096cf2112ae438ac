"""Builds the stage graph from a config, in one place.

    ingest -> split -> transcode -> [blur] -> [filters, cheapest first] -> [embed] -> [caption] -> staging
    then, globally: consolidate manifest -> [dedup] -> shard

Each stage is named by a :class:`StageSpec` (its class path and config) so that the
runner can build it wherever it runs. Stages whose requirements are missing (model
weights, optional packages) are reported at start-up and skipped; stages that the
pipeline cannot do without fail the start-up instead, with the fix.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from curator.config import PipelineConfig, Resources
from curator.records import schema_for
from curator.stage import Requirement, RunContext, Stage, stage_columns

log = logging.getLogger(__name__)

#: stage name -> "module:Class"; the order of the streaming graph
STAGES: dict[str, str] = {
    "ingest": "stages.ingest:IngestStage",
    "split": "stages.split:SplitStage",
    "transcode": "stages.transcode:TranscodeStage",
    "blur": "stages.blur:BlurStage",
    "embed": "stages.embed:EmbedStage",
    "caption": "stages.caption:CaptionStage",
    "motion": "stages.motion:MotionStage",
    "quality": "stages.quality:QualityStage",
    "aesthetic": "stages.quality:AestheticStage",
    "dover": "stages.quality:DoverStage",
    "text_overlay": "stages.text_overlay:TextOverlayStage",
    "video_type": "stages.video_type:VideoTypeStage",
    "place_tag": "stages.place_tag:PlaceTagStage",
    "staging": "stages.staging:StagingStage",
}

#: the fixed head and tail of the graph; `stages.order` (config) is the middle. Privacy blur
#: (off by default) sits right after transcode, before any model sees a clip or it is written.
HEAD = ["ingest", "split", "transcode", "blur"]
TAIL = ["staging"]

#: stages the pipeline cannot run without
REQUIRED = {"ingest", "transcode", "staging"}


class PipelineError(RuntimeError):
    """The pipeline cannot start; the message says what to fix."""


@dataclass(frozen=True)
class StageSpec:
    name: str
    target: str  # "module:Class"
    config: Any

    def stage_class(self) -> type[Stage]:
        mod, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(mod), cls)

    def build(self, ctx: RunContext) -> Stage:
        return self.stage_class()(self.config, ctx)


@dataclass
class Pipeline:
    ctx: RunContext
    specs: list[StageSpec]
    skipped: list[tuple[str, list[Requirement]]] = field(default_factory=list)

    @property
    def schema(self) -> pa.Schema:
        """The manifest schema (no transient byte columns)."""
        return schema_for(self._columns())

    @property
    def flow_schema(self) -> pa.Schema:
        """The schema of rows between stages (with the transient byte columns)."""
        return schema_for(self._columns(), transient=True)

    def _columns(self) -> list[tuple[str, pa.DataType]]:
        return (stage_columns(s.stage_class()(s.config, self.ctx) for s in self.specs)
                + [(name, pa.string()) for name in self.ctx.extra_columns])

    def describe(self) -> str:
        """The stage graph in one line (skipped stages: :meth:`skipped_table`)."""
        line = "stages: " + " -> ".join(s.name for s in self.specs)
        if self.skipped:
            line += " (skipped: " + ", ".join(name for name, _ in self.skipped) + ")"
        return line

    def skipped_table(self) -> str:
        """Skipped stages, one line each with what is missing and the fix; '' when none."""
        if not self.skipped:
            return ""
        width = max(len(name) for name, _ in self.skipped)
        lines = [f"{len(self.skipped)} optional stage(s) skipped (what is missing, and the fix):"]
        for name, reqs in self.skipped:
            lines.append(f"  {name:{width}s}  " + "; ".join(r.describe() for r in reqs))
        return "\n".join(lines)


@dataclass
class StageGroup:
    """Neighbouring stages that one runner operator runs in turn on each batch."""

    specs: list[StageSpec]
    stages: list[Stage]

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.specs)

    @property
    def stateful(self) -> bool:
        return any(s.stateful for s in self.stages)

    @property
    def resources(self) -> Resources:
        """The first stage's batch size and placement; the largest CPU, memory and pool sizes."""
        first = self.stages[0].resources
        pools = [s.resources for s in self.stages if s.stateful] or [first]
        return first.model_copy(update={
            "num_cpus": max(s.resources.num_cpus for s in self.stages),
            "memory_gb": max((s.resources.memory_gb or 0) for s in self.stages) or first.memory_gb,
            "min_actors": max(r.min_actors for r in pools),
            "max_actors": max(r.max_actors for r in pools),
        })


def _placement(stage: Stage) -> tuple:
    res = stage.resources
    return (res.num_gpus, tuple(sorted((k, v) for k, v in res.custom.items() if v)))


def group_stages(specs: list[StageSpec], ctx: RunContext, fuse: bool = True) -> list[StageGroup]:
    """Group neighbouring stages that need the same kind of node, with at most one
    model-loading (stateful) stage per group; without `fuse`, one group per stage.

    A group is one Ray operator: its stages run one after the other on each batch in one
    worker, so rows (and the clips they carry) are not shipped between processes at
    every stage. Model stages keep a pool each, so each still scales on its own."""
    groups: list[StageGroup] = []
    for spec in specs:
        stage = spec.build(ctx)
        last = groups[-1] if groups else None
        if (fuse and last is not None and stage.fusable and all(s.fusable for s in last.stages)
                and _placement(last.stages[0]) == _placement(stage) and not (stage.stateful and last.stateful)):
            last.specs.append(spec)
            last.stages.append(stage)
        else:
            groups.append(StageGroup([spec], [stage]))
    return groups


def stage_order(config: PipelineConfig) -> list[str]:
    middle = list(config.stages.order)
    for name in middle:
        if name not in STAGES or name in HEAD or name in TAIL:
            known = sorted(set(STAGES) - set(HEAD) - set(TAIL))
            raise PipelineError(f"stages.order: unknown stage {name!r} (known: {', '.join(known) or 'none'})")
    if len(set(middle)) != len(middle):
        raise PipelineError("stages.order lists a stage twice")
    return HEAD + middle + TAIL


def build(config: PipelineConfig, run_id: str | None = None) -> Pipeline:
    if not config.input and not config.input_list:
        raise PipelineError("no input: pass --input URI (a folder or bucket prefix of videos) or --input-list FILE")
    if not config.output:
        raise PipelineError("no output: pass --output URI (a folder or bucket prefix)")
    from curator import storage

    ctx = RunContext(
        config=config,
        input_uri=storage.normalize(config.input) if config.input else "",
        output_uri=storage.normalize(config.output),
        run_id=run_id or uuid.uuid4().hex[:12],
        config_hash=config.content_hash(),
        extra_columns=tuple(_input_list_columns(config)),
    )
    specs: list[StageSpec] = []
    skipped: list[tuple[str, list[Requirement]]] = []
    for name in stage_order(config):
        stage_cfg = getattr(config.stages, name)
        if not getattr(stage_cfg, "enabled", True):
            if name in REQUIRED:
                raise PipelineError(f"stages.{name}.enabled=false: the pipeline cannot run without {name}")
            continue
        spec = StageSpec(name, STAGES[name], stage_cfg)
        missing = spec.build(ctx).requirements()
        if missing:
            if name in REQUIRED or not spec.stage_class().skip_if_missing:
                raise PipelineError(f"stage {name} cannot run: " + "; ".join(r.describe() for r in missing))
            skipped.append((name, missing))
            continue
        specs.append(spec)
    if config.run.shard and "latent" in config.shard.profile:  # shards are the output: fail now, not after curating
        from curator.models.tokenizer import requirement

        req = requirement(config.shard.latent.model, config.models.dir)
        if req is not None:
            raise PipelineError("cannot start: " + req.describe())
    pipeline = Pipeline(ctx, specs, skipped)
    if ctx.extra_columns:
        taken = set(schema_for(stage_columns(s.build(ctx) for s in specs), transient=True).names)
        clash = [c for c in ctx.extra_columns if c in taken]
        if clash:
            raise PipelineError(f"input list {config.input_list}: column(s) {', '.join(clash)} are also manifest "
                                "columns; rename them in the list (its other columns become manifest columns)")
    return pipeline


def _input_list_columns(config: PipelineConfig) -> list[str]:
    """The extra columns of the config's input list (they become string manifest columns)."""
    if not config.input_list:
        return []
    from curator.listing import InputNotFound, input_list_columns

    try:
        return input_list_columns(config.input_list)
    except InputNotFound as exc:
        raise PipelineError(str(exc)) from None

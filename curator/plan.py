"""`curator plan`: what a run over these inputs will do and what it will cost, measured.

    inputs   count and bytes (the run's own listing: folder or input list, sample, limit)
    probe    a deterministic sample of the inputs (headers and first frame): hours of
             footage, resolutions, codecs, unreadable files
    stages   which run, which are skipped and why, and where (CPUs, GPUs, actor pool or
             tasks, the Ray operator they share)
    trial    the real pipeline, with this config and runner, on K videos of the sample, into
             a temporary output (deleted afterwards)
    estimate wall time, CPU- and GPU-hours, clips and output size for the whole input

The trial's videos are spread over the sample's pixel rates (small and large footage).
The estimate scales what the trial measured by the amount of footage, not by video count:
the video-level stages' busy seconds (from the manifest's `timings`) by decoded pixels
(width x height x frames: decoding, shot detection, encoding), the clip-level stages' by
footage seconds (their work is per clip). The stream's compute is their sum in the local runner; under
Ray the busiest of: each operator's busy time over the workers it may run at once, and
the CPU- and GPU-seconds over the cluster's CPUs and GPUs. The trial runs its first video
alone, then the others on the same (now warm) workers, so what the stream took beyond
that compute splits into a cost paid once per run (worker start, imports) and one per
video (scheduling, row conversion, manifest parts), spread over the videos in flight.
Counted once: process start, the stages' set-up (models), the run-level phases except
those that read every clip (shard; dedup when it embeds the clips itself), which scale
with the footage at the warm part's rate. The probe sample is the inputs with the lowest sample keys
(:func:`curator.listing.sample_key`), so it is the same on every call and is what
`--sample` picks first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator

from curator import storage
from curator.config import PipelineConfig
from curator.listing import InputNotFound, inputs_for, lowest_keys
from curator.records import Row

log = logging.getLogger("curator")

#: how long a cluster's work may be spread: a video-level operator cannot run more videos at once than exist
VIDEO_KIND = "video"


@dataclass
class InputStats:
    source: str
    videos: int = 0
    bytes: int = 0
    probed: int = 0
    probed_s: float = 0.0  # footage seconds of the probed videos
    probed_bytes: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # probe failure reason -> count
    resolutions: dict[str, int] = field(default_factory=dict)  # "1280x720" -> probed videos
    codecs: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0  # the whole input's footage seconds (exact when every input was probed)
    probed_pixels: float = 0.0  # decoded pixels (width x height x frames) of the probed videos
    pixels: float = 0.0  # ... of the whole input (estimated like duration_s)
    duration_exact: bool = False


@dataclass
class StagePlan:
    name: str
    runs: bool
    why: str = ""  # why it is skipped
    acts_on: str = ""
    where: str = ""
    num_cpus: float = 0.0
    num_gpus: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)


@dataclass
class TrialPart:
    """One `execute` of the trial: the first video alone (cold: workers, imports, models), then
    the others (warm)."""

    videos: int = 0
    video_s: float = 0.0  # footage seconds
    pixels: float = 0.0  # decoded pixels: width x height x frames
    wall_s: float = 0.0
    stream_s: float = 0.0
    phases_s: dict[str, float] = field(default_factory=dict)
    busy_s: dict[str, float] = field(default_factory=dict)  # per stage, from the manifest's timings
    clips: int = 0
    clips_kept: int = 0
    clip_bytes: int = 0


@dataclass
class Trial:
    videos: int = 0
    video_s: float = 0.0  # footage seconds of the trial's videos
    pixels: float = 0.0  # their decoded pixels
    wall_s: float = 0.0
    prepare_s: float = 0.0  # stage set-up (local) or connecting to / starting Ray
    stream_s: float = 0.0
    phases_s: dict[str, float] = field(default_factory=dict)  # of the cold part: a run pays them once, cold
    other_s: float = 0.0  # listing, config, summary (cold part)
    busy_s: dict[str, float] = field(default_factory=dict)
    clips: int = 0
    clips_kept: int = 0
    clip_bytes: int = 0
    cold_s: float = 0.0  # once per run: the stream's start beyond the first video's own cost
    per_video_s: float = 0.0  # each video's cost outside the stages' busy time (slot-seconds)
    sources: list[str] = field(default_factory=list)
    parts: list[TrialPart] = field(default_factory=list)


@dataclass
class Estimate:
    wall_s: float = 0.0
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    clips: int = 0
    clips_kept: int = 0
    output_bytes: int = 0
    parts: dict[str, float] = field(default_factory=dict)  # seconds: startup, prepare, stream, phases, other
    stage_busy_h: dict[str, float] = field(default_factory=dict)
    phases_s: dict[str, float] = field(default_factory=dict)
    scale: float = 0.0  # whole input's footage seconds over the trial's (clip stages, clips, bytes)
    pixel_scale: float = 0.0  # ... decoded pixels (video stages)


@dataclass
class Plan:
    runner: str
    capacity: dict[str, float]
    inputs: InputStats
    stages: list[StagePlan]
    trial: Trial | None
    estimate: Estimate | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        return format_plan(self)


# ------------------------------------------------------------------------- inputs
def _fill_sizes(rows: Iterable[Row], workers: int = 16, chunk: int = 256) -> Iterator[Row]:
    """Rows with `size_bytes` (a folder listing has it; an input list's rows are stat'ed, in parallel)."""
    def stat(row: Row) -> Row:
        if row.get("size_bytes") is None:
            try:
                row["size_bytes"] = storage.stat(row["source_uri"]).size
            except storage.StorageError:
                row["size_bytes"] = None
        return row

    with ThreadPoolExecutor(workers) as pool:
        buf: list[Row] = []
        for row in rows:
            buf.append(row)
            if len(buf) >= chunk:
                yield from pool.map(stat, buf)
                buf = []
        yield from pool.map(stat, buf)


def scan_inputs(config: PipelineConfig, probe_videos: int, seed: int) -> tuple[InputStats, list[Row]]:
    """Count and size the inputs in one pass over the listing; keep the `probe_videos`
    with the lowest sample keys. Returns the counts and that sample (lowest key first)."""
    stats = InputStats(source=config.input_list or config.input or "")
    sample: list[Row] = []

    def counted() -> Iterator[Row]:
        for row in _fill_sizes(inputs_for(config)):
            stats.videos += 1
            stats.bytes += int(row.get("size_bytes") or 0)
            yield row

    sample = lowest_keys(counted(), probe_videos, seed)
    return stats, sample


def probe_sample(stats: InputStats, sample: list[Row], config: PipelineConfig) -> list[tuple[Row, float, float]]:
    """Probe the sample (headers and first frame, as ingest does); fill the stats and
    estimate the whole input's footage seconds and decoded pixels. Returns (row, seconds,
    pixels per second) per probed video."""
    from curator.media.probe import Limits, ProbeError, probe

    cfg = config.stages.ingest
    limits = Limits(cfg.max_pixels, cfg.max_duration_s, cfg.max_fps)
    out: list[tuple[Row, float, float]] = []
    res: Counter[str] = Counter()
    codecs: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for row in sample:
        uri = row["source_uri"]
        seconds = rate = 0.0
        try:
            local = storage.local_path(uri)
            info = probe(local if local is not None else storage.read_bytes(uri), limits=limits)
            seconds = float(info.duration_s or 0.0)
            rate = float(info.width * info.height * (info.fps or 0.0))
            res[f"{info.width}x{info.height}"] += 1
            codecs[info.codec] += 1
        except ProbeError as exc:
            failed[exc.reason] += 1
        except (OSError, storage.StorageError):  # gone, unreadable, or a storage error
            failed["storage_error"] += 1
        stats.probed += 1
        stats.probed_s += seconds
        stats.probed_pixels += seconds * rate
        stats.probed_bytes += int(row.get("size_bytes") or 0)
        out.append((row, seconds, rate))
    stats.resolutions = dict(res.most_common())
    stats.codecs = dict(codecs.most_common())
    stats.failed = dict(failed)
    if stats.probed >= stats.videos:
        factor, stats.duration_exact = 1.0, True
    elif stats.probed_bytes and stats.bytes:  # ratio estimator: footage per byte of the sample
        factor = stats.bytes / stats.probed_bytes
    else:
        factor = stats.videos / max(stats.probed, 1)
    stats.duration_s = stats.probed_s * factor
    stats.pixels = stats.probed_pixels * factor
    return out


def pick_trial(probed: list[tuple[Row, float, float]], k: int) -> list[Row]:
    """K videos for the trial, spread over the sample's range of pixel rates (width x height x
    fps; ties in sample-key order): a small trial then sees small and large footage alike.
    Videos that did not probe are taken only when none did."""
    good = [(rate, i, row) for i, (row, seconds, rate) in enumerate(probed) if seconds > 0]
    if not good:
        return [row for row, _, _ in probed[:k]]
    good.sort(key=lambda t: (t[0], t[1]))
    if k >= len(good):
        return [row for _, _, row in good]
    picks = sorted({min(len(good) - 1, int((j + 0.5) * len(good) / k)) for j in range(k)})
    return [good[i][2] for i in picks]


# ------------------------------------------------------------------------- stages
def stage_plans(config: PipelineConfig, pipeline: Any, runner_name: str) -> list[StagePlan]:
    """Every stage of the configured order: runs or not (and why), what it acts on, where."""
    from curator.pipeline import group_stages, stage_order

    built = {s.name: s.build(pipeline.ctx) for s in pipeline.specs}
    skipped = dict(pipeline.skipped)
    groups = {}
    if runner_name == "ray":
        for g in group_stages(pipeline.specs, pipeline.ctx, fuse=config.run.fuse_stages):
            res = g.resources
            kind = (f"actor pool {res.min_actors}-{max(res.min_actors, res.max_actors)}" if g.stateful
                    else "tasks")
            for spec in g.specs:
                groups[spec.name] = f"Ray operator {g.name} ({kind})"
    out = []
    for name in stage_order(config):
        cfg = getattr(config.stages, name)
        if not getattr(cfg, "enabled", True):
            out.append(StagePlan(name, False, why=f"disabled (stages.{name}.enabled=false)"))
            continue
        if name in skipped:
            out.append(StagePlan(name, False, why="; ".join(r.describe() for r in skipped[name])))
            continue
        stage = built[name]
        res = stage.resources
        where = groups.get(name, "this process (local runner)")
        out.append(StagePlan(name, True, acts_on=stage.kind or "both", where=where, num_cpus=res.num_cpus,
                             num_gpus=res.num_gpus, custom={k: v for k, v in res.custom.items() if v}))
    return out


# ------------------------------------------------------------------------- trial
def _run_part(pipeline: Any, runner: Any, rows: list[Row], progress: Any) -> TrialPart:
    from curator.driver import execute
    from curator.rundir import RunDir

    part = TrialPart(videos=len(rows))
    t0 = time.monotonic()
    execute(pipeline, runner, progress=progress, inputs=[dict(r) for r in rows])
    part.wall_s = time.monotonic() - t0
    rundir = RunDir.of(pipeline.ctx.output_uri)
    metrics = rundir.read_metrics() or {}
    part.stream_s = float(metrics.get("stream_s") or 0.0)
    part.phases_s = {k: float(v) for k, v in (metrics.get("phases_s") or {}).items()}
    part.busy_s = {k: float(v.get("busy_s") or 0.0) for k, v in (metrics.get("stages") or {}).items()}
    with rundir.open_manifest("plan") as mf:
        for r in mf.rows(["kind", "status", "duration_s", "clip_bytes", "width", "height", "fps"]):
            if r["kind"] == "video":
                seconds = float(r.get("duration_s") or 0.0)
                part.video_s += seconds
                part.pixels += seconds * (r.get("width") or 0) * (r.get("height") or 0) * (r.get("fps") or 0.0)
            else:
                part.clips += 1
                part.clips_kept += r["status"] == "ok"
                part.clip_bytes += int(r.get("clip_bytes") or 0)
    return part


def run_trial(config: PipelineConfig, rows: list[Row], progress: Any = None,
              model: Any = None) -> tuple[Trial, dict[str, float], Any]:
    """The pipeline on `rows` with this config and runner, into temporary outputs: the
    first video alone (cold), then the others (warm: same workers and models). `model(busy,
    videos, capacity, pipeline)` is the stream's compute time for busy seconds per stage;
    what each part took beyond it is split into a once-per-run cost and a per-video one.
    Returns what it measured, the runner's capacity and the trial's pipeline."""
    from curator import pipeline as pl
    from curator.runners import make_runner

    tmp = tempfile.mkdtemp(prefix="curator-plan-")
    try:
        def build(name: str) -> Any:
            cfg = config.model_copy(update={"output": os.path.join(tmp, name), "run": config.run.model_copy(
                update={"limit": None, "sample": None})})
            return pl.build(cfg)

        first = build("cold")
        runner = make_runner(first.ctx.config)
        trial = Trial(videos=len(rows), sources=[r["source_key"] for r in rows])
        t0 = time.monotonic()
        runner.prepare(first)
        trial.prepare_s = time.monotonic() - t0
        capacity = runner.capacity()
        trial.parts.append(_run_part(first, runner, rows[:1], progress))
        if len(rows) > 1:
            trial.parts.append(_run_part(build("warm"), runner, rows[1:], progress))
        runner.close()
        cold = trial.parts[0]
        trial.phases_s = dict(cold.phases_s)
        trial.other_s = max(0.0, cold.wall_s - cold.stream_s - sum(cold.phases_s.values()))
        for part in trial.parts:
            trial.wall_s += part.wall_s
            trial.stream_s += part.stream_s
            trial.video_s += part.video_s
            trial.pixels += part.pixels
            trial.clips += part.clips
            trial.clips_kept += part.clips_kept
            trial.clip_bytes += part.clip_bytes
            for k, v in part.busy_s.items():
                trial.busy_s[k] = trial.busy_s.get(k, 0.0) + v
        if model is not None:
            rest = [max(0.0, p.stream_s - model(p.busy_s, p.videos, capacity, first)) for p in trial.parts]
            slots = max(1.0, min(_video_slots(capacity, first), trial.parts[-1].videos))
            trial.per_video_s = rest[-1] * slots / max(trial.parts[-1].videos, 1)
            trial.cold_s = max(0.0, rest[0] - trial.per_video_s) if len(rest) > 1 else 0.0
        return trial, capacity, first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------- estimate
def _groups(pipeline: Any) -> list[Any]:
    from curator.pipeline import group_stages

    if pipeline.ctx.config.run.runner != "ray":
        return []
    return group_stages(pipeline.specs, pipeline.ctx, fuse=pipeline.ctx.config.run.fuse_stages)


def _at_once(group: Any, capacity: dict[str, float]) -> float:
    """How many workers of a Ray operator can run at once: its pool's maximum (actors), the
    cluster's CPUs and GPUs over what each worker asks for."""
    res = group.resources
    n = float(max(res.min_actors, res.max_actors)) if group.stateful else float("inf")
    if res.num_cpus:
        n = min(n, capacity.get("CPU", 1.0) / res.num_cpus)
    if res.num_gpus:
        n = min(n, capacity.get("GPU", 0.0) / res.num_gpus) if capacity.get("GPU") else 1.0
    return max(n, 1e-9)


def _video_slots(capacity: dict[str, float], pipeline: Any) -> float:
    """Videos in flight at once: 1 in the local runner; under Ray the narrowest video-level operator."""
    groups = [g for g in _groups(pipeline) if g.stages[0].kind == VIDEO_KIND]
    return min((_at_once(g, capacity) for g in groups), default=1.0)


def stream_model(busy: dict[str, float], videos: int, capacity: dict[str, float], pipeline: Any) -> float:
    """Wall seconds of the stream's compute for these busy seconds per stage: their sum in
    the local runner (one stage at a time); under Ray the busiest of each operator's busy
    time over the workers it may run at once (a video-level one: at most `videos`), and
    the CPU- and GPU-seconds over the cluster's CPUs and GPUs."""
    groups = _groups(pipeline)
    if not groups:
        return sum(busy.values())
    bounds, cpu_s, gpu_s = [], 0.0, 0.0
    for g in groups:
        g_busy = sum(busy.get(s.name, 0.0) for s in g.specs)
        at_once = _at_once(g, capacity)
        if g.stages[0].kind == VIDEO_KIND:
            at_once = min(at_once, max(1, videos))
        bounds.append(g_busy / at_once)
        cpu_s += g_busy * g.resources.num_cpus
        gpu_s += g_busy * g.resources.num_gpus
    bounds.append(cpu_s / max(capacity.get("CPU", 1.0), 1e-9))
    if capacity.get("GPU"):
        bounds.append(gpu_s / capacity["GPU"])
    return max(bounds)


def scaled_phases(config: PipelineConfig, stage_names: list[str]) -> set[str]:
    """The run-level phases that read every kept clip's bytes, so their time grows with the
    footage: shard (copies or re-encodes clips) and dedup when it embeds the staged clips
    itself (semantic dedup without an embed stage, or dedup.embeddings=perceptual)."""
    out = {"shard"}
    d = config.dedup
    if d.enabled and d.semantic and (d.embeddings == "perceptual"
                                     or (d.embeddings == "auto" and "embed" not in stage_names)):
        out.add("dedup")
    return out


def _phase_estimate(name: str, trial: Trial, scale: float, scaled: set[str], duration_s: float) -> float:
    """A phase's seconds for the whole input: measured once (cold part), or, for a phase that
    grows with the footage, its warm part's seconds per footage second times the input's,
    plus what the cold part spent beyond that (imports)."""
    cold = trial.parts[0].phases_s.get(name, 0.0) if trial.parts else trial.phases_s.get(name, 0.0)
    if name not in scaled:
        return cold
    warm = trial.parts[1] if len(trial.parts) > 1 else None
    if warm is None or warm.video_s <= 0 or name not in warm.phases_s:
        return cold * scale
    rate = warm.phases_s[name] / warm.video_s
    return max(0.0, cold - rate * trial.parts[0].video_s) + rate * duration_s


def estimate(inputs: InputStats, trial: Trial, stages: list[StagePlan], capacity: dict[str, float],
             pipeline: Any, startup_s: float) -> Estimate:
    """Scale the trial to the whole input (see the module docstring): video-level stages by
    decoded pixels, clip-level stages, clips and bytes by footage seconds."""
    est = Estimate()
    if trial.video_s > 0:
        scale = inputs.duration_s / trial.video_s
    else:  # nothing in the sample decoded: by video count
        scale = inputs.videos / max(trial.videos, 1)
    pixel_scale = inputs.pixels / trial.pixels if trial.pixels > 0 and inputs.pixels > 0 else scale
    est.scale, est.pixel_scale = round(scale, 4), round(pixel_scale, 4)
    kinds = {s.name: s.acts_on for s in stages}
    busy_full = {k: v * (pixel_scale if kinds.get(k) == VIDEO_KIND else scale) for k, v in trial.busy_s.items()}
    slots = max(1.0, min(_video_slots(capacity, pipeline), inputs.videos))
    stream = (trial.cold_s + stream_model(busy_full, inputs.videos, capacity, pipeline)
              + trial.per_video_s * inputs.videos / slots)
    scaled = scaled_phases(pipeline.ctx.config, [s.name for s in pipeline.specs])
    phases = {k: _phase_estimate(k, trial, scale, scaled, inputs.duration_s) for k in trial.phases_s}
    est.phases_s = {k: round(v, 3) for k, v in phases.items()}
    est.parts = {"startup_s": round(startup_s, 3), "prepare_s": round(trial.prepare_s, 3),
                 "stream_s": round(stream, 3), "phases_s": round(sum(phases.values()), 3),
                 "other_s": round(trial.other_s, 3)}
    est.wall_s = round(sum(est.parts.values()), 3)
    by_name = {s.name: s for s in stages}
    cpu_s = sum(v * (by_name[k].num_cpus if k in by_name else 1.0) for k, v in busy_full.items())
    gpu_s = sum(v * (by_name[k].num_gpus if k in by_name else 0.0) for k, v in busy_full.items())
    est.cpu_hours = round((cpu_s + sum(phases.values())) / 3600, 4)
    est.gpu_hours = round(gpu_s / 3600, 4)
    est.stage_busy_h = {k: round(v / 3600, 5) for k, v in busy_full.items()}
    est.clips = round(trial.clips * scale)
    est.clips_kept = round(trial.clips_kept * scale)
    est.output_bytes = round(trial.clip_bytes * scale)
    return est


def _process_age_s() -> float:
    """Seconds since this process started (its imports: a `curator run` pays them too)."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:
        return 0.0


def make_plan(config: PipelineConfig, *, sample_videos: int = 2, probe_videos: int = 32, trial: bool = True,
              progress: Any = None, say: Callable[[str], None] | None = None) -> Plan:
    """Plan a run of `config` (its input or input list, sample and limit; any output is ignored).
    `say`: where the one status line before the trial goes (default: the log)."""
    from curator import pipeline as pl
    from curator.pipeline import PipelineError
    from curator.runners import make_runner

    startup_s = _process_age_s()
    seed = config.run.sample_seed
    storage.configure(config.storage)
    try:
        inputs, sample = scan_inputs(config, max(probe_videos, sample_videos), seed)
    except InputNotFound as exc:
        raise PipelineError(str(exc)) from None
    if not inputs.videos:
        raise PipelineError(f"no input videos in {inputs.source or 'the input'}: nothing to plan")
    probed = probe_sample(inputs, sample, config)
    runner_name = config.run.runner
    shaped = config.model_copy(update={"output": config.output or tempfile.gettempdir()})
    pipeline = pl.build(shaped)
    stages = stage_plans(config, pipeline, runner_name)
    notes = []
    if not inputs.duration_exact:
        notes.append(f"footage hours estimated from {inputs.probed} probed videos of {inputs.videos} "
                     "(their seconds per byte, times the input's bytes)")
    capacity = make_runner(config).capacity() if runner_name == "local" else {}
    result = Plan(runner=runner_name, capacity=capacity, inputs=inputs, stages=stages, trial=None, estimate=None,
                  notes=notes)
    if not trial or sample_videos < 1:
        return result
    rows = pick_trial(probed, sample_videos)
    (say or log.info)(f"plan: {inputs.videos} inputs listed, {inputs.probed} probed; a trial run of {len(rows)} of "
                      f"them with the {runner_name} runner")
    measured, capacity, trial_pipeline = run_trial(config, rows, progress, model=stream_model)
    result.trial, result.capacity = measured, capacity
    result.estimate = estimate(inputs, measured, stages, capacity, trial_pipeline, startup_s)
    if measured.video_s <= 0:
        notes.append("no video of the trial decoded: the estimate scales by video count")
    if measured.videos >= inputs.videos:
        notes.append("the trial covered the whole input: the estimate is the trial itself, plus start-up")
    notes.append("wall time is a model (see docs/first-hour.md): expect it within about 2x on an idle machine; "
                 "other load on the same CPUs or a cluster that scales up or down moves it")
    return result


# ------------------------------------------------------------------------- output
def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def format_plan(plan: Plan) -> str:
    i = plan.inputs
    hours = i.duration_s / 3600
    lines = [f"inputs:      {i.videos} videos, {_size(i.bytes)} ({storage.display(i.source) if i.source else '-'})",
             f"footage:     {hours:.2f} h, {_size(i.pixels).removesuffix('B')}pixels to decode"
             f"{'' if i.duration_exact else ' (estimated)'}; probed {i.probed} videos ({i.probed_s / 3600:.2f} h)"]
    if i.resolutions:
        lines.append("resolutions: " + ", ".join(f"{k} x{v}" for k, v in list(i.resolutions.items())[:6]))
    if i.codecs:
        lines.append("codecs:      " + ", ".join(f"{k} x{v}" for k, v in i.codecs.items()))
    if i.failed:
        lines.append("unreadable:  " + ", ".join(f"{k} x{v}" for k, v in sorted(i.failed.items())))
    cap = plan.capacity
    lines.append(f"runner:      {plan.runner}" + (f" ({cap.get('CPU', 0):g} CPUs, {cap.get('GPU', 0):g} GPUs)"
                                                 if plan.runner == "ray" and cap else ""))
    lines.append("")
    width = max(len(s.name) for s in plan.stages)
    lines.append(f"  {'stage':{width}s}  {'runs':4s}  {'on':5s}  {'CPU':>4s}  {'GPU':>4s}  where / why not")
    for s in plan.stages:
        if s.runs:
            extra = "".join(f", {k}={v:g}" for k, v in s.custom.items())
            lines.append(f"  {s.name:{width}s}  {'yes':4s}  {s.acts_on:5s}  {s.num_cpus:4g}  {s.num_gpus:4g}  "
                         f"{s.where}{extra}")
        else:
            lines.append(f"  {s.name:{width}s}  {'no':4s}  {'':5s}  {'':4s}  {'':4s}  {s.why}")
    t, e = plan.trial, plan.estimate
    if t is not None:
        lines.append("")
        lines.append(f"trial:       {t.videos} videos, {t.video_s:.1f} s of footage, {t.wall_s:.1f} s wall "
                     f"(set-up {t.prepare_s:.1f} s, stages {t.stream_s:.1f} s, phases {sum(t.phases_s.values()):.1f} s); "
                     f"{t.clips} clips, {t.clips_kept} kept")
        busy = ", ".join(f"{k} {v:.2f}" for k, v in t.busy_s.items() if v)
        lines.append(f"             stage busy s: {busy}")
        lines.append(f"             beyond the stages: {t.cold_s:.1f} s once (cold start), {t.per_video_s:.2f} s "
                     "per video")
    if e is not None:
        lines.append("")
        lines.append(f"estimate:    wall {_hms(e.wall_s)} ({e.wall_s:.0f} s), {e.cpu_hours:.3g} CPU-h, "
                     f"{e.gpu_hours:.3g} GPU-h")
        lines.append(f"             ~{e.clips} clips, ~{e.clips_kept} kept, ~{_size(e.output_bytes)} of clips")
        parts = e.parts
        lines.append("             " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in parts.items()))
    for n in plan.notes:
        lines.append(f"note:        {n}")
    return "\n".join(lines)


def write_json(plan: Plan, path: str) -> None:
    data = json.dumps(plan.to_json(), indent=1, sort_keys=True).encode()
    if "://" in path:
        storage.write_bytes(storage.normalize(path), data)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)

"""Phase `summary`: summary.json and metrics.json, from one read of the manifest."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from curator import metrics, storage
from curator.phases.base import PhaseState
from curator.records import ERROR, OK
from curator.rundir import ManifestFile, RunDir

NAME = "summary"
REQUIRES = ("manifest",)
POPULATES = ("summary", "metrics")


@dataclass
class Summary:
    videos: int = 0
    videos_ok: int = 0
    videos_resumed: int = 0
    videos_lost: int = 0
    videos_failed: int = 0  # status `error`: unreadable, broken or lost (rejections by a filter are not errors)
    clips: int = 0
    clips_kept: int = 0
    clips_failed: int = 0
    rejects: dict[str, int] = field(default_factory=dict)  # "stage/reason" -> count
    shards: int = 0
    shard_samples: int = 0
    elapsed_s: float = 0.0
    output: str = ""

    @property
    def error_rate(self) -> float:
        """Failed videos over all videos in the manifest (those finished by earlier runs too)."""
        return self.videos_failed / self.videos if self.videos else 0.0

    def format(self) -> str:
        lines = [
            f"videos in:   {self.videos} ({self.videos_ok} produced clips"
            + (f", {self.videos_resumed} finished earlier" if self.videos_resumed else "")
            + (f", {self.videos_lost} lost by workers" if self.videos_lost else "") + ")",
            f"clips:       {self.clips} cut, {self.clips_kept} kept",
            f"shards:      {self.shards} ({self.shard_samples} samples)",
        ]
        if self.rejects:
            lines.append("rejects by reason:")
            for k, v in sorted(self.rejects.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {v:6d}  {k}")
        if self.videos_failed or self.clips_failed:
            lines.append(f"errors:      {self.videos_failed} videos, {self.clips_failed} clips")
        lines.append(f"time:        {self.elapsed_s:.1f} s")
        lines.append(f"output:      {storage.display(self.output)}")
        return "\n".join(lines)


def summarize(rundir: RunDir, elapsed: float, resumed: int, shard_results: list[dict[str, Any]],
              mf: ManifestFile | None = None) -> Summary:
    """Counts of videos, clips, kept clips and rejects by reason (`mf`: an open manifest)."""
    if mf is None:
        with rundir.open_manifest(NAME) as mf:
            return summarize(rundir, elapsed, resumed, shard_results, mf)
    s = Summary(output=rundir.uri, elapsed_s=round(elapsed, 3), videos_resumed=resumed)
    rejects: Counter[str] = Counter()
    for r in mf.rows(["kind", "status", "stage", "reason", "num_clips"]):
        failed = r["status"] == ERROR
        if r["kind"] == "video":
            s.videos += 1
            s.videos_ok += (r.get("num_clips") or 0) > 0
            s.videos_failed += failed
        else:
            s.clips += 1
            s.clips_failed += failed
            if r["status"] == OK:
                s.clips_kept += 1
        if r["status"] != OK:
            rejects[f"{r['kind']}: {r['stage']}/{r['reason']}"] += 1
    s.rejects = dict(rejects)
    s.shards = len(shard_results)
    s.shard_samples = sum(r["samples"] for r in shard_results)
    return s


def run(state: PhaseState) -> Summary:
    """At the end of `curator run`: summary.json and metrics.json (with the stages'
    placement when the state has it), from one open of the manifest."""
    wall = time.monotonic() - state.started
    with state.rundir.open_manifest(NAME) as mf:
        summary = summarize(state.rundir, wall, state.counts.get("videos_resumed", 0),
                            state.results.get("shard") or [], mf)
        summary.videos_lost = state.counts.get("videos_lost", 0)
        timing = {"stream_s": None if state.stream_s is None else round(state.stream_s, 3),
                  "phases_s": dict(state.seconds)}
        doc = metrics.compute(state.rundir.uri, state.stages, wall, {"summary": asdict(summary), **timing}, mf)
    state.rundir.write_metrics(state.placement(doc) if state.placement else doc)
    state.rundir.write_summary({**asdict(summary), "error_rate": round(summary.error_rate, 6)})
    return summary

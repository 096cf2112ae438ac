"""Stage.per_item: the one per-item loop of stages and filters (deadline, timeout, failure)."""
import pytest

from curator.config import PipelineConfig
from curator.filters import Filter, Rule
from curator.records import OK
from curator.stage import RunContext, Stage

pytestmark = pytest.mark.unit


def _ctx(timeout: float = 0.1) -> tuple[PipelineConfig, RunContext]:
    cfg = PipelineConfig.load(None, [f"run.item_timeout_s={timeout}"])
    return cfg, RunContext(cfg, "file:///i", "file:///o", "t", "h")


def _clip(clip_id: str) -> dict:
    return {"kind": "clip", "video_id": "v", "clip_id": clip_id, "status": OK, "mp4": b"x", "video_bytes": b"y"}


class _Rows(Stage):
    name = "rows"

    def process_row(self, row):
        from curator.deadline import check

        if row["clip_id"] == "bad":
            raise RuntimeError("boom")
        if row["clip_id"] == "slow":
            import time

            time.sleep(0.3)
            check()
        if row["clip_id"] == "two":
            return [dict(row, clip_id="two-a"), dict(row, clip_id="two-b")]
        return row


def test_stage_rows_fail_alone_and_may_fan_out():
    cfg, ctx = _ctx()
    out = _Rows(cfg.stages.quality, ctx).process_rows([_clip(c) for c in ("ok", "bad", "slow", "two")])
    assert [[r["clip_id"] for r in rs] for rs in out] == [["ok"], ["bad"], ["slow"], ["two-a", "two-b"]]
    assert (out[1][0]["status"], out[1][0]["reason"]) == ("error", "stage_failed") and "boom" in out[1][0]["detail"]
    slow = out[2][0]
    assert (slow["status"], slow["reason"]) == ("error", "timeout") and "mp4" not in slow and "video_bytes" not in slow


class _BadDerive(Filter):
    name = "bad_derive"
    columns = []

    @classmethod
    def rules(cls, config):
        return [Rule("s", ">=", 0.5, "low")]

    @classmethod
    def derive(cls, row, config):
        if row["clip_id"] == "odd":
            raise KeyError("no such column")

    def measure(self, row):
        return {"s": 0.9}


def test_a_filter_decision_that_fails_stops_that_clip_only():
    cfg, ctx = _ctx(5.0)
    out = {r["clip_id"]: r for r in _BadDerive(cfg.stages.quality, ctx).process([_clip("even"), _clip("odd")])}
    assert out["even"]["status"] == OK and out["even"]["checks"][0]["passed"]
    assert (out["odd"]["status"], out["odd"]["reason"]) == ("error", "stage_failed")

"""Staging: write each clip's mp4 under the output and drop the bytes from the row.

Clips that a filter rejected are staged too (unless `keep_rejected_clips` is off) so
that `curator refilter` can re-admit them without decoding anything again; shards
only ever hold kept clips.

Clips upload in the background (``storage.upload_threads`` at a time, at most
``storage.upload_queue_mb`` queued), so a batch's clips go up together; the batch is
returned only once all of them are stored (or marked with the storage error), because
the driver then writes the video's manifest part — its completion marker.
"""

from __future__ import annotations

from curator import storage
from curator.config import StagingConfig
from curator.records import ERROR, Row
from curator.rundir import RunDir
from curator.stage import Stage


def clip_uri(output_uri: str, video_id: str, clip_id: str) -> str:
    return RunDir(output_uri).clip(video_id, clip_id)


class StagingStage(Stage):
    name = "staging"
    kind = "clip"
    config: StagingConfig

    def setup(self) -> None:
        cfg = storage.current_config()
        self.uploader = storage.BackgroundUploader(cfg.upload_threads, cfg.upload_queue_mb)

    def process(self, batch: list[Row]) -> list[Row]:
        self.ensure_setup()
        staged: list[tuple[Row, str]] = []
        for row in batch:
            row.pop("video_bytes", None)
            data = row.pop("mp4", None)
            if row.get("kind") != "clip" or data is None:
                continue
            if row.get("status") != "ok" and not self.config.keep_rejected_clips:
                continue
            uri = clip_uri(self.ctx.output_uri, row["video_id"], row["clip_id"])
            self.uploader.submit(uri, data)
            staged.append((row, uri))
        failed = self.uploader.flush()  # nothing is reported done before it is stored
        for row, uri in staged:
            exc = failed.get(uri)
            if exc is not None:
                row.update(status=ERROR, stage=self.name, reason="storage_error", detail=str(exc)[:1000])
            else:
                row["clip_uri"] = uri
        return batch

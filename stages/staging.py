"""Staging: write each clip's mp4 under the output and drop the bytes from the row.

Clips that a filter rejected are staged too (unless `keep_rejected_clips` is off) so
that `curator refilter` can re-admit them without decoding anything again; shards
only ever hold kept clips.
"""

from __future__ import annotations

from curator import storage
from curator.config import StagingConfig
from curator.records import ERROR, Row
from curator.stage import Stage


def clip_uri(output_uri: str, video_id: str, clip_id: str) -> str:
    return storage.join(output_uri, "staging", "clips", video_id, f"{clip_id}.mp4")


class StagingStage(Stage):
    name = "staging"
    kind = "clip"
    config: StagingConfig

    def process(self, batch: list[Row]) -> list[Row]:
        self.ensure_setup()
        for row in batch:
            row.pop("video_bytes", None)
            data = row.pop("mp4", None)
            if row.get("kind") != "clip" or data is None:
                continue
            if row.get("status") != "ok" and not self.config.keep_rejected_clips:
                continue
            uri = clip_uri(self.ctx.output_uri, row["video_id"], row["clip_id"])
            try:
                storage.write_bytes(uri, data)
            except storage.StorageError as exc:
                row.update(status=ERROR, stage=self.name, reason="storage_error", detail=str(exc)[:1000])
                continue
            row["clip_uri"] = uri
        return batch

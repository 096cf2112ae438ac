"""The dataset card of the shards (shards/README.md) and the manifest tally it reports."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from curator import storage
from curator.config import ShardConfig
from curator.phases.shard.plan import Planner
from curator.rundir import RunDir


# -------------------------------------------------------------------------- the card
@dataclass
class ManifestStats:
    """What the card says about the whole manifest, tallied while the plan streams."""

    videos: int = 0
    clips: int = 0
    kept: int = 0
    rejects: Counter[str] = field(default_factory=Counter)  # "kind: stage/reason"
    checks: dict[tuple[str, str, str, float | None], list[int]] = field(default_factory=dict)  # -> [passed, failed]
    #: kept generated clips per (generator, gen_model) -> [clips, seconds]
    generators: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def tally(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Count every row, pass on kept clips (with a staged mp4)."""
        for r in rows:
            if r["kind"] == "video":
                self.videos += 1
            else:
                self.clips += 1
                for c in r.get("checks") or []:
                    k = (c.get("stage") or "", c.get("metric") or "", c.get("op") or "", c.get("threshold"))
                    self.checks.setdefault(k, [0, 0])[0 if c.get("passed") else 1] += 1
            if r["status"] != "ok":
                self.rejects[f"{r['kind']}: {r.get('stage')}/{r.get('reason')}"] += 1
            elif r["kind"] == "clip" and r.get("clip_uri"):
                self.kept += 1
                if r.get("origin") == "generated":
                    g = self.generators.setdefault((str(r.get("generator") or "-"), str(r.get("gen_model") or "-")),
                                                   [0, 0.0])
                    g[0] += 1
                    g[1] += float(r.get("clip_duration_s") or 0.0)
                yield r


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return out


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def card(indexes: dict[tuple[str, str], dict[str, Any]], cfg: ShardConfig, planner: Planner,
         stats: ManifestStats, info: dict[str, Any]) -> str:
    """The dataset card (shards/README.md): what is in the shards and how it was chosen."""
    L: list[str] = ["# Curated video shards", ""]
    L.append("Written by curator from a run's `manifest.parquet`: webdataset tars of kept clips, per training "
             "split, output profile and bucket.")
    L.append("")
    L += _table(["", ""], [
        ["run config hash", f"`{info.get('run_config_hash') or 'unknown'}`"],
        ["shard config hash", f"`{info.get('shard_config_hash')}`"],
        ["stages", ", ".join(info.get("stages") or []) or "unknown"],
        ["videos in manifest", stats.videos],
        ["clips cut", stats.clips],
        ["clips kept", stats.kept],
        ["profiles", ", ".join(cfg.profile)],
    ])
    L += ["", "## Splits", ""]
    for split, rules in cfg.splits.items():
        L.append(f"### `{split}`")
        L.append("")
        sel = planner.selection
        L.append(f"{sel.admitted[split]} of {sel.considered} kept clips selected.")
        conds = list(rules.where)
        if rules.type_max_fraction:
            conds += [f"at most {f:g} of the split is `{rules.type_column}` = {t}" for t, f in
                      sorted(rules.type_max_fraction.items())]
        if rules.type_max_count:
            conds += [f"at most {n} clips with `{rules.type_column}` = {t}" for t, n in
                      sorted(rules.type_max_count.items())]
        if rules.bucket_max is not None:
            conds.append(f"at most {rules.bucket_max} clips per bucket")
        conds += [f"at most {n} clips in bucket `{b}`" for b, n in sorted(rules.bucket_caps.items())]
        L.append("Rules: " + ("; ".join(f"`{c}`" for c in conds) if conds else "none (every kept clip)") + ".")
        refused = sel.refused[split]
        if refused:
            L.append("")
            L += _table(["not selected because", "clips"], sorted(refused.items(), key=lambda kv: (-kv[1], kv[0])))
        for profile in cfg.profile:
            doc = indexes[(split, profile)]
            st = planner.stats[(split, profile)]
            L += ["", f"#### `{split}/{profile}`: {doc['samples']} samples from {st.clips} clips, "
                      f"{len(doc['shards'])} shards, {_mb(doc['bytes'])} MB", ""]
            if profile == "tokenizer":
                L += _table(["bucket", "width", "height", "frames", "samples", "shards", "MB"],
                            [[b, d.get("width"), d.get("height"), d.get("frames"), d["samples"], d["shards"],
                              _mb(d["bytes"])] for b, d in sorted(doc["buckets"].items())])
            elif profile == "latent":
                L += latent_table(doc, indexes.get((split, "tokenizer")))
            else:
                L += _table(["bucket", "samples", "shards", "MB"],
                            [[b, d["samples"], d["shards"], _mb(d["bytes"])] for b, d in sorted(doc["buckets"].items())])
            for reason, n in sorted(st.left_out.items()):
                L.append(f"\n{n} clips gave no sample: {reason}.")
        L.append("")
    L += provenance_section(cfg, planner, stats)
    if cfg.profile.count("tokenizer"):
        t = cfg.tokenizer
        L += ["## Tokenizer profile", "",
              f"Clips resampled to {t.fps:g} fps (frames dropped or repeated), scaled to cover and centre-cropped "
              f"to multiples of {t.multiple} (short side {t.short_side}"
              + (f", sizes {json.dumps(t.sizes)}" if t.sizes else "") + "), cut into windows of "
              f"{t.max_frames} frames; the rest of a clip becomes one window of the largest 1 + {t.temporal_factor}k "
              f"frames that fits (at least {t.min_frames}). Keys: `<clip_id>-w000`, …; each sample's json has a "
              f"`window` entry (start, frames, fps, size, start time in the source). libx264 crf {t.crf}, preset "
              f"{t.preset}.", ""]
    if "latent" in cfg.profile:
        lat = cfg.latent
        used = next((d["latent"] for (_, p), d in sorted(indexes.items()) if p == "latent" and d.get("latent")), None)
        what = (f"{used['kind']}, revision `{used['revision']}`"
                + (f", codebook {used['codebook_size']}" if used.get("codebook_size") else "")) if used else "no sample"
        L += ["## Latent profile", "",
              f"The tokenizer profile's windows, each encoded once by `{lat.model}` ({what}): `<key>.latent.npy` holds the "
              f"latent `[C, t, h, w]` (continuous, stored as {lat.dtype}) or the token indices `[t, h, w]` (discrete, "
              "the smallest integer dtype that holds the codebook); each json's `latent` entry names the tokenizer, "
              "its revision, shape, dtype and the window's source span (clip id, first and last+1 clip frame)."
              + (" Each window's mp4 is kept beside it." if lat.keep_video else " No video is stored.")
              + " Bytes per sample: the latent member, the window as H.264 (this split's tokenizer profile, or the "
              "kept mp4) and as raw uint8 RGB frames.", ""]
    L += ["## Filters applied", ""]
    if stats.checks:
        L += _table(["stage", "metric", "keep when", "passed", "failed"],
                    [[s, m, f"{op} {thr:g}" if thr is not None else op, p, f]
                     for (s, m, op, thr), (p, f) in sorted(stats.checks.items(), key=lambda kv: kv[0][:3])])
    else:
        L.append("No filter recorded a check in the manifest.")
    if stats.rejects:
        L += ["", "Rows that went no further (from the manifest's `status`, `stage`, `reason`):", ""]
        L += _table(["reason", "rows"], sorted(stats.rejects.items(), key=lambda kv: (-kv[1], kv[0])))
    first_split = next(iter(cfg.splits))
    first_profile = cfg.profile[-1]
    L += ["", "## Layout", "",
          "```",
          "index.json                                   splits x profiles with counts",
          "<split>/<profile>/index.json                 shards, samples per shard, first sample, bytes, buckets",
          "<split>/<profile>/<bucket>/shard-NNNNNN.tar  <key>.mp4 (latent: <key>.latent.npy), <key>.json, "
          "(<key>.txt caption, ...)",
          "<split>/<profile>/<bucket>/shard-NNNNNN.json keys with byte offsets and sizes (random access)",
          "```", "",
          "## Loading", "",
          "```python",
          "from curator.loader import ShardDataset, Loader",
          "",
          f'ds = ShardDataset("<this folder or its run output URI>", split="{first_split}", '
          f'profile="{first_profile}",',
          '                  batch_size=8, shuffle_buffer=256, decode="float")',
          "for batch in Loader(ds, num_workers=4):",
          '    video = batch["video"]        # [B, T, C, H, W], one bucket per batch (latent profile: None)',
          '    latent = batch["latent"]      # latent profile: [B, C, t, h, w] or indices [B, t, h, w]',
          '    captions = batch["caption"]   # list of str (or None)',
          "```", "",
          "Any webdataset reader also works: each tar is a plain webdataset shard.", ""]
    return "\n".join(L)


def provenance_section(cfg: ShardConfig, planner: Planner, stats: ManifestStats) -> list[str]:
    """Real vs generated clips and hours per split, and the generators and models used."""
    origins = planner.selection.origins
    if not any(o.get("generated") for o in origins.values()) and not stats.generators:
        return []
    L = ["## Provenance: real and generated footage", "",
         "Generated clips (`origin` = generated) came from `curator generate`; each sample's json names its "
         "`generator`, `gen_model`, `prompt`, `seed`, `target_cell` and `condition_clip`."
         + (f" At most {cfg.max_generated_fraction:g} of a split's clips per bucket are generated "
            "(`shard.max_generated_fraction`)." if cfg.max_generated_fraction is not None else ""), ""]
    rows = []
    for split in cfg.splits:
        o = origins.get(split, {})
        real, gen = o.get("real", [0, 0.0]), o.get("generated", [0, 0.0])
        total = real[0] + gen[0]
        rows.append([f"`{split}`", int(real[0]), f"{real[1] / 3600:.4f}", int(gen[0]), f"{gen[1] / 3600:.4f}",
                     f"{gen[0] / total:.1%}" if total else "-"])
    L += _table(["split", "real clips", "real hours", "generated clips", "generated hours", "generated share"], rows)
    if stats.generators:
        L += ["", "Generators and models of the kept generated clips:", ""]
        L += _table(["generator", "model", "clips", "hours"],
                    [[g, m, int(v[0]), f"{v[1] / 3600:.4f}"] for (g, m), v in sorted(stats.generators.items())])
    return L + [""]


def latent_table(doc: dict[str, Any], tokenizer_doc: dict[str, Any] | None) -> list[str]:
    """Per latent bucket: shape, dtype, and bytes per sample — latent vs video (H.264 from the
    same split's tokenizer bucket or the kept mp4s; raw RGB frames from the shape)."""
    rows = []
    for b, d in sorted(doc["buckets"].items()):
        n = max(1, d["samples"])
        lat = d.get("latent") or {}
        member = d.get("member_bytes") or {}
        latent_b = member.get("latent.npy", 0) / n
        mp4 = member.get("mp4")
        if mp4 is None and tokenizer_doc and b in tokenizer_doc["buckets"]:
            td = tokenizer_doc["buckets"][b]
            mp4 = (td.get("member_bytes") or {}).get("mp4")
            n_mp4 = max(1, td["samples"])
        else:
            n_mp4 = n
        raw = (d.get("frames") or 0) * (d.get("height") or 0) * (d.get("width") or 0) * 3
        video_b = mp4 / n_mp4 if mp4 is not None else None
        rows.append([b, "x".join(str(x) for x in lat.get("shape", [])) or "-", lat.get("dtype", "-"), d["samples"],
                     d["shards"], _mb(d["bytes"]), f"{latent_b:,.0f}",
                     f"{video_b:,.0f}" if video_b is not None else "-", f"{raw:,}",
                     f"{video_b / latent_b:,.1f}x" if video_b and latent_b else "-",
                     f"{raw / latent_b:,.0f}x" if latent_b else "-"])
    return _table(["bucket", "latent shape", "dtype", "samples", "shards", "MB", "latent B/sample",
                   "H.264 B/sample", "raw RGB B/sample", "H.264 / latent", "raw / latent"], rows)


def write_card(output_uri: str, text: str) -> str:
    uri = RunDir(output_uri).shard_card
    storage.write_bytes(uri, text.encode())
    return uri

"""`curator latents verify RUN`: decode latent samples and compare them with their source windows.

For a sample of the latent shards (seeded, spread over the split), the stored latent goes
through the tokenizer's decoder (``decoder.jit`` beside the encoder, or
``shard.latent.decoder``), and the result is compared with the window cut again from the
run's staged clip mp4 — the same resampling, scaling and crop the shard phase used, so the
difference is the tokenizer's reconstruction error (plus float16 storage), nothing else.
PSNR over all pixels of the window, uint8 scale: 10·log10(255² / MSE).
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from curator import storage
from curator.config import PipelineConfig
from curator.loader import ShardDataset
from curator.media import windows as win
from curator.models import tokenizer as tk
from curator.rundir import RunDir


class VerifyError(ValueError):
    """Nothing to verify, or a sample cannot be decoded or compared; the message says why."""


def psnr(decoded: Any, frames: np.ndarray) -> float:
    """PSNR in dB of a decoded window ``[3, T, H, W]`` in [-1, 1] against uint8 ``[T, H, W, 3]``
    (capped at 100 dB for an exact match)."""
    import torch

    ref = torch.from_numpy(frames).permute(3, 0, 1, 2).float()
    if tuple(decoded.shape) != tuple(ref.shape):
        raise VerifyError(f"the decoder returned {list(decoded.shape)}, the window is {list(ref.shape)}")
    rec = ((decoded.float() + 1.0) * 127.5).clamp(0, 255)
    mse = float((rec - ref).pow(2).mean())
    return 100.0 if mse <= 1e-10 else min(100.0, 10 * math.log10(255.0 ** 2 / mse))


def _window_frames(rundir: RunDir, meta: dict[str, Any]) -> np.ndarray:
    w, lat = meta["window"], meta["latent"]
    src = lat["source"]
    uri = rundir.clip(src["video_id"], src["clip_id"])
    try:
        mp4 = storage.read_bytes(uri)
    except storage.NotFound:
        raise VerifyError(f"the clip {src['clip_id']} is not in the run ({storage.display(uri)})") from None
    window = win.Window(w["index"], w["start_frame"], w["num_frames"])
    got = list(win.window_arrays(mp4, [window], src_fps=win.rate(meta["clip_fps"]), dst_fps=win.rate(w["fps"]),
                                 size=(w["width"], w["height"])))
    return got[0][1]


def verify(run: str, cfg: PipelineConfig, sample: int = 8, split: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Decode `sample` latent samples of `split` (default: the first split) and report PSNR
    against their source windows."""
    rundir = RunDir.of(run, cfg.storage)
    split = split or next(iter(cfg.shard.splits))
    try:
        ds = ShardDataset(rundir.uri, split=split, profile="latent", decode="none")
    except (FileNotFoundError, ValueError) as exc:
        raise VerifyError(f"no latent shards to verify: {exc}") from None
    total = ds.total_samples
    if total == 0:
        raise VerifyError(f"split {split!r} has no latent samples")
    positions = sorted(random.Random(seed).sample(range(total), min(sample, total)))
    lat_cfg = cfg.shard.latent
    device = tk.resolve_device(lat_cfg.device)
    decoders: dict[str, tk.Tokenizer] = {}
    rows = []
    for s in ds.samples_at(positions):
        lat = s["meta"].get("latent") or {}
        model = lat.get("tokenizer")
        if not model:
            raise VerifyError(f"sample {s['key']} has no latent entry in its json")
        if model not in decoders:
            ref = tk.resolve_decoder(model, lat_cfg.decoder, cfg.models.dir)
            decoders[model] = tk.load(ref, device, lat_cfg.precision)
        dec = decoders[model]
        decoded = dec.decode(s["latent"].unsqueeze(0))[0]
        value = psnr(decoded, _window_frames(rundir, s["meta"]))
        rows.append({"key": s["key"], "bucket": s["bucket"], "psnr_db": round(value, 3),
                     "latent_shape": list(s["latent"].shape), "latent_dtype": lat.get("dtype"),
                     "tokenizer": model, "revision": lat.get("revision")})
    values = [r["psnr_db"] for r in rows]
    return {"run": storage.display(rundir.uri), "split": split, "samples": len(rows), "of": total,
            "decoders": {m: d.ref.target for m, d in decoders.items()}, "device": device,
            "mean_psnr_db": round(sum(values) / len(values), 3), "min_psnr_db": min(values), "rows": rows}


def format_report(rep: dict[str, Any]) -> str:
    kw = max([3] + [len(r["key"]) for r in rep["rows"]])
    bw = max([6] + [len(r["bucket"]) for r in rep["rows"]])
    lines = [f"{'key':{kw}s}  {'bucket':{bw}s}  {'latent':>20s}  {'PSNR dB':>8s}"]
    for r in rep["rows"]:
        shape = "x".join(str(x) for x in r["latent_shape"]) + f" {r['latent_dtype']}"
        lines.append(f"{r['key']:{kw}s}  {r['bucket']:{bw}s}  {shape:>20s}  {r['psnr_db']:8.2f}")
    lines.append(f"{rep['samples']} of {rep['of']} latent samples of {rep['split']!r} decoded on {rep['device']}: "
                 f"mean PSNR {rep['mean_psnr_db']:.2f} dB, min {rep['min_psnr_db']:.2f} dB")
    return "\n".join(lines)

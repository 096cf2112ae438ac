"""GPU video with PyNvVideoCodec (pinned >=2.2,<3; see docs/gpu.md).

- :mod:`.probe`: what this worker's GPU really does (opens NVDEC and NVENC once per
  process) and which transcode path an `encoder` setting means here.
- :mod:`.transcode`: NVDEC -> GPU resize/rotate -> NVENC (frames stay on the GPU), or
  NVDEC -> libx264 for GPUs without NVENC (A100, H100, H200); detector frames on the GPU.
- :mod:`.api`: the only calls into PyNvVideoCodec, imported lazily.
- :mod:`.planes`: NV12 arithmetic on torch tensors and the Annex-B -> mp4 muxer.

Importing this package never imports PyNvVideoCodec.
"""

from .api import UnsupportedSource
from .planes import annexb_to_mp4, nv12_planes, nv12_to_i420, nv12_to_small_rgb, transform_nv12
from .probe import ENCODER_NAMES, GpuCaps, choose_encoder, probe
from .transcode import detector_frames, iter_model_frames, transcode_spans

__all__ = ["ENCODER_NAMES", "GpuCaps", "UnsupportedSource", "annexb_to_mp4", "choose_encoder",
           "detector_frames", "iter_model_frames", "nv12_planes", "nv12_to_i420", "nv12_to_small_rgb", "probe",
           "transcode_spans", "transform_nv12", "unavailable_reason"]


def unavailable_reason() -> str | None:
    """None when the NVDEC + NVENC path works here, else why not (one line)."""
    caps = probe()
    return None if caps.nvdec and caps.nvenc else caps.reason or "no NVENC"

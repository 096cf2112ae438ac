"""Probe, decode and encode video. CPU paths use PyAV (FFmpeg's libraries); the GPU
path (PyNvVideoCodec) lives in :mod:`curator.media.nvcodec` behind a capability check."""

"""Storage throughput: curator's interface vs the raw SDK, on each emulator, in one run;
and what decoupled transfer buys on a slow link.

    python benchmarks/storage_bench.py [--mb 200] [--repeats 5] [--clouds s3,gs,az] [--skip-overlap]

Part 1 — reads. For one object of --mb MB on each emulator (moto S3, gcp-storage-emulator,
Azurite; each a child process on 127.0.0.1), time in the same run, interleaved:

  read      curator ``storage.read_bytes``      vs  get_object().read() /
                                                    blob.download_as_bytes() /
                                                    download_blob().readall()
  download  curator ``storage.download`` (file) vs  client.download_file() /
                                                    blob.download_to_filename() /
                                                    download_blob().readinto(file)

The raw SDK calls use each SDK's default client. Reported: median and best MB/s of
--repeats runs and the ratios curator / SDK (target >= 0.9). On a shared machine the
median is noisy; the best-of-N is the steadier figure of what each path can do.

Part 2 — overlap. Through a proxy that adds 40 ms per request and caps the link at
200 Mbit/s (curator.testing.proxy.FaultProxy) in front of moto:

  prefetch  8 inputs of 4 MB, "compute" of 0.3 s each (a sleep: a GPU-bound stage
            leaves the CPU free), reading each input first: storage.prefetch depth 0 vs 2
  uploads   16 clips of 2 MB: one storage.write_bytes after another vs a
            BackgroundUploader with 4 threads (then flush)

Writes benchmarks/results/storage.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from curator import storage  # noqa: E402
from curator.testing.emulators import Azurite, GCSEmulator, MotoS3  # noqa: E402
from curator.testing.fixtures import bucket_name, storage_config  # noqa: E402
from curator.testing.proxy import FaultProxy  # noqa: E402

MB = 1024 * 1024


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def raw_sdk(name: str, emu: Any, bucket: str, key: str) -> dict[str, Callable[[str], Any]]:
    """The plain SDK calls a user would write, with each SDK's default client settings."""
    if name == "s3":
        import boto3

        c = boto3.client("s3", endpoint_url=emu.endpoint, region_name=emu.region)
        return {"read": lambda _p: c.get_object(Bucket=bucket, Key=key)["Body"].read(),
                "download": lambda p: c.download_file(bucket, key, p)}
    if name == "gs":
        blob = emu.client().bucket(bucket).blob(key)
        return {"read": lambda _p: blob.download_as_bytes(),
                "download": lambda p: blob.download_to_filename(p)}
    from azure.storage.blob import BlobServiceClient

    bc = BlobServiceClient.from_connection_string(emu.connection_string()).get_blob_client(bucket, key)

    def az_download(p: str) -> None:
        with open(p, "wb") as fh:
            bc.download_blob().readinto(fh)

    return {"read": lambda _p: bc.download_blob().readall(), "download": az_download}


def bench_reads(name: str, emu: Any, mb: int, repeats: int, tmp: str) -> dict[str, Any]:
    bucket = bucket_name("bench")
    emu.create_bucket(bucket)
    storage.configure(storage_config(emu))
    uri = f"{name}://{bucket}/bench/object.bin"
    data = os.urandom(mb * MB)
    t_up = timed(lambda: storage.write_bytes(uri, data))
    data = b""  # free the buffer before the reads
    ours = {"read": lambda _p: storage.read_bytes(uri), "download": lambda p: storage.download(uri, p)}
    sdk = raw_sdk(name, emu, bucket, "bench/object.bin")
    path = os.path.join(tmp, f"{name}.bin")
    out: dict[str, Any] = {"object_mb": mb, "upload_s": round(t_up, 3)}
    for op in ("read", "download"):
        ours[op](path), sdk[op](path)  # warm-up: connections, imports
        t_ours, t_sdk = [], []
        for i in range(repeats):  # interleaved, alternating who goes first
            pair = [(t_ours, ours[op]), (t_sdk, sdk[op])]
            for times, fn in (pair if i % 2 == 0 else pair[::-1]):
                times.append(timed(lambda fn=fn: fn(path)))
        ours_mbs, sdk_mbs = mb / statistics.median(t_ours), mb / statistics.median(t_sdk)
        best_ours, best_sdk = mb / min(t_ours), mb / min(t_sdk)
        out[op] = {"curator_MBps": round(ours_mbs, 1), "sdk_MBps": round(sdk_mbs, 1),
                   "ratio": round(ours_mbs / sdk_mbs, 3),
                   "curator_best_MBps": round(best_ours, 1), "sdk_best_MBps": round(best_sdk, 1),
                   "ratio_best": round(best_ours / best_sdk, 3),
                   "curator_s": [round(t, 3) for t in t_ours], "sdk_s": [round(t, 3) for t in t_sdk]}
    storage.delete(uri)
    storage.configure(None)
    return out


def bench_overlap(moto: MotoS3) -> dict[str, Any]:
    bucket = bucket_name("overlap")
    moto.create_bucket(bucket)
    res: dict[str, Any] = {"link": {"latency_ms": 40, "bandwidth_mbit": 200}}
    with FaultProxy(moto.port, latency_s=0.04, bandwidth_mbps=200) as proxy:
        storage.configure(storage_config(moto, s3={"endpoint_url": proxy.endpoint}))
        inputs = [f"s3://{bucket}/in/v{i:02d}.mp4" for i in range(8)]
        payload = os.urandom(4 * MB)
        for u in inputs:
            storage.store_for(u).write_bytes(u, payload)

        def consume(depth: int) -> float:
            def run() -> None:
                for uri in storage.prefetch(inputs, lambda u: u, depth=depth):
                    storage.read_bytes(uri)
                    time.sleep(0.3)  # compute
            return timed(run)

        consume(0)  # warm-up
        seq, pre = consume(0), consume(2)
        res["prefetch"] = {"inputs": 8, "input_mb": 4, "compute_s_each": 0.3, "depth0_s": round(seq, 2),
                           "depth2_s": round(pre, 2), "speedup": round(seq / pre, 2)}

        clips = [os.urandom(2 * MB) for _ in range(16)]

        def inline() -> None:
            for i, c in enumerate(clips):
                storage.write_bytes(f"s3://{bucket}/out/a{i}.mp4", c)

        def background() -> None:
            with storage.BackgroundUploader(threads=4) as up:
                for i, c in enumerate(clips):
                    up.submit(f"s3://{bucket}/out/b{i}.mp4", c)
                assert not up.flush()

        t_inline, t_bg = timed(inline), timed(background)
        res["uploads"] = {"clips": 16, "clip_mb": 2, "inline_s": round(t_inline, 2), "background_s": round(t_bg, 2),
                          "speedup": round(t_inline / t_bg, 2)}
    storage.configure(None)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clouds", default="s3,gs,az")
    ap.add_argument("--skip-overlap", action="store_true")
    args = ap.parse_args()
    emulators = {"s3": MotoS3, "gs": GCSEmulator, "az": Azurite}
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_start": [round(x, 2) for x in os.getloadavg()]},
        "reads": {},
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="curator-bench-") as tmp:
        for name in args.clouds.split(","):
            with emulators[name]() as emu:
                os.environ.update(emu.env())
                r = bench_reads(name, emu, args.mb, args.repeats, tmp)
                results["reads"][name] = r
                for op in ("read", "download"):
                    x = r[op]
                    rows.append((name, op, x["curator_MBps"], x["sdk_MBps"], x["ratio"], x["curator_best_MBps"],
                                 x["sdk_best_MBps"], x["ratio_best"]))
                print(f"{name}: done", file=sys.stderr, flush=True)
        if not args.skip_overlap:
            with MotoS3() as moto:
                os.environ.update(moto.env())
                results["overlap"] = bench_overlap(moto)
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    print(f"\n{args.mb} MB object, {args.repeats} runs each, interleaved (MB/s; ratio = curator / raw SDK, "
          f"target >= 0.9); load average {results['machine']['loadavg_start']} -> {results['machine']['loadavg_end']}")
    print(f"{'store':<6} {'op':<9} {'curator':>9} {'raw SDK':>9} {'ratio':>7}   {'best:':<6}{'curator':>8} "
          f"{'raw SDK':>9} {'ratio':>7}")
    print(f"{'':<6} {'':<9} {'(median)':>9} {'(median)':>9}")
    for name, op, ours, sdk, ratio, bo, bs, br in rows:
        print(f"{name:<6} {op:<9} {ours:>9.1f} {sdk:>9.1f} {ratio:>7.2f}   {'':<6}{bo:>8.1f} {bs:>9.1f} {br:>7.2f}")
    if "overlap" in results:
        o = results["overlap"]
        print("\noverlap on a slow link (40 ms per request, 200 Mbit/s), moto behind a proxy")
        p, u = o["prefetch"], o["uploads"]
        print(f"prefetch  8 x 4 MB inputs, 0.3 s compute each: depth 0 {p['depth0_s']:.2f} s, "
              f"depth 2 {p['depth2_s']:.2f} s ({p['speedup']:.2f}x)")
        print(f"uploads   16 x 2 MB clips: inline {u['inline_s']:.2f} s, background (4 threads) "
              f"{u['background_s']:.2f} s ({u['speedup']:.2f}x)")
    out = HERE / "results" / "storage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

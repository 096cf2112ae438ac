"""Concurrent registration into one catalog: writers released at the same moment, on each store.

    python benchmarks/catalog_bench.py [--writers 4] [--rounds 3] [--clips 50] [--stores file,s3,gs,az]

Per store (a local folder, moto S3, the GCS emulator with generation preconditions, Azurite),
`--writers` processes (curator.testing.catalog_writer) each register one run of `--clips`
clips per round into one catalog, all released together each round. Reported per store:
clips registered vs expected (must be equal: no lost update), commit attempts (1 = no
conflict; each conflict is a refused conditional write, re-read and re-applied), and the
wall time of a round (from release to the last writer's commit).

Appends to benchmarks/results/catalog.json (`runs`: one entry per invocation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curator import index, storage  # noqa: E402
from curator.testing.emulators import Azurite, GCSEmulator, MotoS3  # noqa: E402
from curator.testing.fixtures import bucket_name, storage_config  # noqa: E402
from curator.testing.manifests import planted, write_run  # noqa: E402


def bench_store(name: str, root: str, emu, writers: int, rounds: int, clips: int, tmp: Path) -> dict:
    cfg = storage_config(*([emu] if emu else []), retries=3, backoff_s=0.05)
    storage.configure(cfg)
    catalog = storage.join(root, "catalog")
    runs = [[storage.join(root, f"runs/r{r}w{w}") for w in range(writers)] for r in range(rounds)]
    for r, row in enumerate(runs):
        for w, out in enumerate(row):
            write_run(out, f"r{r}w{w}", planted(clips, seed=r * 100 + w))
    go = tmp / f"go-{name}"
    env = {**os.environ, **(emu.env() if emu else {}), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "curator.testing.catalog_writer", catalog,
                               *[runs[r][w] for r in range(rounds)], "--start-file", str(go),
                               "--storage", cfg.model_dump_json()],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(writers)]
    attempts, walls = [], []
    for r in range(rounds):
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        Path(f"{go}.{r}").touch()
        for p in procs:
            attempts.append(json.loads(p.stdout.readline())["attempts"])
        walls.append(time.monotonic() - t0)
    for p in procs:
        p.communicate(timeout=120)
    meta = index.read_meta(catalog)
    keys = index._keys_of(meta, meta.segments)
    storage.configure(None)
    return {"store": name, "writers": writers, "rounds": rounds, "expected_clips": writers * rounds * clips,
            "clips": len(keys), "distinct": len(set(keys)), "commits": int(meta.doc["seq"]),
            "attempts_mean": round(statistics.mean(attempts), 2), "attempts_max": max(attempts),
            "conflicts": sum(a - 1 for a in attempts), "round_s_median": round(statistics.median(walls), 2),
            "round_s_max": round(max(walls), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--stores", default="file,s3,gs,az")
    args = ap.parse_args()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.stores.split(","):
            if name == "file":
                out.append(bench_store(name, storage.normalize(os.path.join(tmp, "local")), None, args.writers,
                                       args.rounds, args.clips, Path(tmp)))
            else:
                cls = {"s3": MotoS3, "gs": GCSEmulator, "az": Azurite}[name]
                with cls() as emu:
                    os.environ.update(emu.env())
                    root = emu.create_bucket(bucket_name())
                    out.append(bench_store(name, root, emu, args.writers, args.rounds, args.clips, Path(tmp)))
            print(json.dumps(out[-1]), flush=True)
    print(f"{'store':6} {'clips':>12} {'commits':>8} {'conflicts':>9} {'attempts mean/max':>18} {'round s':>8}")
    for r in out:
        print(f"{r['store']:6} {r['clips']:>5}/{r['expected_clips']:<6} {r['commits']:>8} {r['conflicts']:>9} "
              f"{r['attempts_mean']:>12}/{r['attempts_max']:<5} {r['round_s_median']:>8}")
    res = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "load_avg": os.getloadavg()}, "args": vars(args), "results": out}
    dst = ROOT / "benchmarks" / "results" / "catalog.json"
    old = json.loads(dst.read_text()) if dst.exists() else {"runs": []}
    dst.write_text(json.dumps({"runs": [*old.get("runs", []), res]}, indent=1))
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()

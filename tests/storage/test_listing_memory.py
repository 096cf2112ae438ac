"""Listing 20,000 objects keeps the driver's memory flat: the listing is a generator over
pages, so the driver holds one page, whatever the bucket holds.

Each measurement runs the driver's own listing (`curator.driver.list_inputs`, what
`curator run` iterates) in a fresh process against moto's S3 server and reads that
process's peak RSS (the kernel's high-water mark, VmHWM, reset just before the listing)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from curator.testing.emulators import repo_root
from curator.testing.fixtures import bucket_name

CHILD = r'''
import sys
from curator import storage
from curator.storage.config import StorageConfig
from curator.driver import list_inputs
from curator.records import new_video_row


def status(field):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith(field + ":"))


endpoint, prefix, mode = sys.argv[1:4]
storage.configure(StorageConfig(s3={"endpoint_url": endpoint}))
list(storage.list_objects(prefix + "nothing/"))  # SDK imported, client made, connection open
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
base = status("VmRSS")
if mode == "stream":
    n = sum(1 for _ in list_inputs(prefix, [".mp4"]))
else:  # control: what holding 20,000 listed rows in memory costs
    rows = [new_video_row(f"{prefix}clip{i:06d}.mp4", f"clip{i:06d}.mp4") for i in range(20000)]
    n = len(rows)
print(n, status("VmHWM") - base)
'''


def _peak_growth(endpoint: str, prefix: str, mode: str = "stream") -> tuple[int, int]:
    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    out = subprocess.run([sys.executable, "-c", CHILD, endpoint, prefix, mode], capture_output=True, text=True,
                         env=env, cwd=str(repo_root()), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    n, growth = out.stdout.split()
    return int(n), int(growth)


@pytest.mark.integration
@pytest.mark.slow
def test_listing_20000_objects_keeps_memory_flat(moto_s3):
    bucket = bucket_name()
    moto_s3.create_bucket(bucket)
    moto_s3.seed(bucket, "small/clip", 1000, suffix=".mp4")
    moto_s3.seed(bucket, "big/clip", 20000, suffix=".mp4")
    n_small, small = _peak_growth(moto_s3.endpoint, f"s3://{bucket}/small/")
    n_big, big = _peak_growth(moto_s3.endpoint, f"s3://{bucket}/big/")
    _, held = _peak_growth(moto_s3.endpoint, f"s3://{bucket}/big/", mode="control")
    assert (n_small, n_big) == (1000, 20000)
    mib = 2 ** 20
    report = (f"peak RSS growth while listing: {small / mib:.1f} MiB for 1,000 objects, {big / mib:.1f} MiB for "
              f"20,000 (holding 20,000 rows instead: {held / mib:.1f} MiB)")
    print(report)
    # 20x the objects, (nearly) the same peak: one 1,000-key page at a time.
    assert big <= small + 2 * mib, report
    # and the measurement would see a listing kept in memory (rows alone: ~8 MiB)
    assert held >= big + 4 * mib, report

"""Register runs into one catalog from several processes at the same moment (tests).

    python -m curator.testing.catalog_writer INDEX RUN [RUN ...] --start-file PATH --storage JSON

Imports everything and makes its storage client first. Then, for each RUN in turn (one
round each): prints ``ready``, waits for the file ``<start-file>.<round>`` to exist (the
test creates it once every writer is ready, so all start within milliseconds of one
another), adds the run with :func:`curator.index.add_run` and prints one JSON line:
``{"run", "added", "skipped", "attempts"}``. ``--hold S`` waits S seconds between reading
index.json and writing it back (every attempt), so writers released together certainly
overlap; ``--unconditional`` replaces the compare-and-swap write with a plain overwrite
(the negative control: clips get lost).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("index")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--start-file", help="start when this local file exists")
    ap.add_argument("--storage", default="{}", help="StorageConfig as JSON")
    ap.add_argument("--unconditional", action="store_true")
    ap.add_argument("--hold", type=float, default=0.0, help="seconds between reading and writing index.json")
    args = ap.parse_args(argv)

    from curator import index, storage
    from curator.config import IndexConfig
    from curator.storage.config import StorageConfig

    storage.configure(StorageConfig.model_validate(json.loads(args.storage)))
    if args.unconditional:
        def blind(uri: str, data: bytes, version: str | None) -> str:
            storage.write_bytes(uri, data)
            return "blind"

        storage.put_if = blind  # type: ignore[assignment]
    if args.hold:
        write = storage.put_if

        def held(uri: str, data: bytes, version: str | None) -> str:
            time.sleep(args.hold)  # the commit read index.json just before: widen the race window
            return write(uri, data, version)

        storage.put_if = held  # type: ignore[assignment]
    storage.exists(storage.join(args.index, "index.json"))  # the SDK client is made before the start
    for i, run in enumerate(args.runs):
        print("ready", flush=True)
        while args.start_file and not os.path.exists(f"{args.start_file}.{i}"):
            time.sleep(0.002)
        res = index.add_run(run, args.index, IndexConfig())
        print(json.dumps({"run": run, "added": res["added"], "skipped": res["skipped"],
                          "attempts": res.get("attempts", 0)}), flush=True)


if __name__ == "__main__":
    main()

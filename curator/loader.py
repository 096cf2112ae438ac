"""Feed a trainer: a PyTorch ``IterableDataset`` over curator shards at any storage URI.

    from curator.loader import Loader, ShardDataset

    ds = ShardDataset("s3://bucket/run1", split="pretrain", profile="tokenizer",
                      batch_size=8, shuffle_buffer=256, seed=0, decode="float")
    loader = Loader(ds, num_workers=4)
    for batch in loader:                      # batches never mix buckets
        x = batch["video"]                    # [B, T, C, H, W]; float in [-1, 1]
        ...                                   # profile="latent": batch["latent"], [B, C, t, h, w]
        checkpoint["data"] = loader.state_dict()   # exact position; load_state_dict() resumes

How it reads. The split index (``shards/<split>/<profile>/index.json``) lists the shards
with their sample counts; each shard's own index gives every sample's byte offset and
size. An epoch is the shards in a seeded order (reshuffled per epoch) concatenated into
one sequence of N samples. Rank r of W takes the contiguous slice [N*r/W, N*(r+1)/W),
and each DataLoader worker an equal contiguous part of that, so ranks and workers read
disjoint samples whose union is the whole split, and every count is known in advance.
A worker reads its part with ranged reads (a few MB at a time, through
:mod:`curator.storage`: file://, s3://, gs://, az://), passes the samples through a
seeded shuffle buffer and, when batching, keeps one partial batch per bucket; the mp4s
are decoded with PyAV when a sample (or a batch, straight into its tensor) is yielded.

Resuming. The shuffle buffer's order is computed from sample positions alone, so a
worker's position is two numbers' worth of state: how many samples it has taken from
its shuffled stream, and which of those sit in partial batches. After a restart the
stream is replayed without reading anything, the buffered and pending samples are
fetched by offset, and iteration yields exactly the samples (and batches) that were
still to come. ``Loader`` gathers each worker's position as batches arrive; with
``num_workers=0`` the dataset tracks it itself.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import json
import random
from collections import OrderedDict, deque
from typing import Any, Iterable, Iterator, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from curator import storage
from curator.models import tokenizer
from curator.rundir import SHARD_INDEX, RunDir

Decode = Literal["uint8", "float", "none"]


# ------------------------------------------------------------------------------- index
def open_index(source: str, split: str = "pretrain", profile: str | None = None) -> tuple[str, dict[str, Any]]:
    """Find a split's index from a run output, a shards folder, or an index.json URI."""
    uri = storage.normalize(source).rstrip("/")
    candidates = [uri] if uri.endswith(".json") else [RunDir(uri).shard_index, storage.join(uri, SHARD_INDEX)]
    for cand in candidates:
        try:
            doc = json.loads(storage.read_bytes(cand))
        except storage.NotFound:
            continue
        if "shards" in doc and "splits" not in doc:  # already a split index
            return cand, doc
        profiles = doc.get("splits", {}).get(split)
        if not profiles:
            raise ValueError(f"no split {split!r} in {storage.display(cand)}; it has: "
                             f"{', '.join(sorted(doc.get('splits', {}))) or 'none'}")
        if profile is None:
            if len(profiles) != 1:
                raise ValueError(f"split {split!r} has profiles {sorted(profiles)}: pass profile=")
            profile = next(iter(profiles))
        if profile not in profiles:
            raise ValueError(f"split {split!r} has no profile {profile!r}; it has: {', '.join(sorted(profiles))}")
        base = cand.rsplit("/", 1)[0]
        index_uri = storage.join(base, profiles[profile]["index"])
        return index_uri, json.loads(storage.read_bytes(index_uri))
    raise FileNotFoundError(f"no shard index under {storage.display(uri)} (looked for {', '.join(candidates)})")


# ------------------------------------------------------------------------------ weights
WEIGHTS_FORMAT = "curator-weights/1"


def load_weights(uri: str) -> dict[str, float]:
    """A re-weighting file (``curator feedback``): clip id -> sampling factor."""
    doc = json.loads(storage.read_bytes(uri))
    if doc.get("format") != WEIGHTS_FORMAT or not isinstance(doc.get("weights"), dict):
        raise ValueError(f"{storage.display(uri)} is not a curator re-weighting file ({WEIGHTS_FORMAT})")
    return {str(k): float(v) for k, v in doc["weights"].items()}


def _clip_of(member: dict[str, Any]) -> str:
    """A sample's clip id: recorded in the shard index, else its key without a window suffix."""
    clip = member.get("clip")
    if clip:
        return str(clip)
    key = str(member["key"])
    head, sep, tail = key.rpartition("-w")
    return head if sep and tail.isdigit() else key


# ------------------------------------------------------------------------------ decoding
def decode_video(data: bytes, mode: Decode = "uint8", out: torch.Tensor | None = None) -> torch.Tensor:
    """mp4 bytes -> [T, C, H, W]: uint8 RGB, or float32 in [-1, 1] ("float").

    Each frame is transposed (and scaled) into the output as it decodes, a small copy that
    stays in cache: no [T, H, W, C] stack to transpose and no whole-clip float passes.
    `out` (e.g. one slot of a batch tensor) receives the frames; its shape must match."""
    import av

    dtype = np.float32 if mode == "float" else np.uint8
    if out is not None and out.dtype != (torch.float32 if mode == "float" else torch.uint8):
        raise ValueError(f"out has dtype {out.dtype}, decode mode {mode!r}")
    dst: np.ndarray | None = out.numpy() if out is not None else None
    extra: list[np.ndarray] = []
    t = 0
    container = av.open(io.BytesIO(data), mode="r")
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24").transpose(2, 0, 1)
            if dst is None:
                dst = np.empty((max(1, stream.frames), *rgb.shape), dtype)
            if t < len(dst) and dst.shape[1:] == rgb.shape:
                slot = dst[t]
            elif out is not None:
                raise ValueError(f"frame {t} of shape {rgb.shape} does not fit {tuple(out.shape)}")
            else:  # more frames than the header said
                slot = np.empty(rgb.shape, dtype)
                extra.append(slot)
            if mode == "float":
                np.multiply(rgb, 1 / 127.5, out=slot, casting="unsafe")
                slot -= 1.0
            else:
                slot[...] = rgb
            t += 1
    finally:
        container.close()
    if t == 0 or dst is None:
        raise ValueError("no frame decoded")
    if out is not None:
        if t != len(dst):
            raise ValueError(f"{t} frames decoded, {len(dst)} expected")
        return out
    return torch.from_numpy(np.concatenate([dst, np.stack(extra)]) if extra else dst[:t])


def _tar_members(buf: memoryview) -> Iterator[tuple[str, memoryview]]:
    """(name, data) of the regular files in a run of ustar records (no end marker needed)."""
    pos = 0
    while pos + 512 <= len(buf):
        header = bytes(buf[pos:pos + 512])
        if not header.strip(b"\0"):
            break
        name = header[:100].split(b"\0", 1)[0].decode()
        prefix = header[345:500].split(b"\0", 1)[0].decode()
        size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        if prefix:
            name = f"{prefix}/{name}"
        if header[156:157] in (b"0", b"\0"):
            yield name, buf[pos + 512:pos + 512 + size]
        pos += 512 + (size + 511) // 512 * 512


def _rng(*parts: Any) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big"))




def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This process's rank and the world size: as given, else from torch.distributed when it is
    initialised, else rank 0 of 1."""
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
        else:
            rank, world_size = rank or 0, world_size or 1
    return rank, world_size

def _worker_slot(ds: Any, what: str) -> tuple[int, int]:
    """(this DataLoader worker, workers per rank) for a dataset with `num_workers` and a saved
    `_progress`: a saved position resumes only with the worker count it was saved with."""
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    if workers != ds.num_workers:
        if ds._progress:
            raise ValueError(f"the {what} position was saved with {ds.num_workers} workers per rank; "
                             f"resume with the same number (not {workers})")
        ds.num_workers = workers
    return worker, workers

class _Order:
    """A shuffle buffer over sample positions lo..hi-1 that never looks at the data.

    The buffer is kept full from the input (in order) and a random member is emitted, so
    memory is `size` positions and the output is a permutation; replaying it after a
    restart costs no reads."""

    def __init__(self, lo: int, hi: int, size: int, rng: random.Random):
        self.next_in, self.hi, self.size, self.rng = lo, hi, max(1, size), rng
        self.buf: list[int] = []

    def __iter__(self) -> "_Order":
        return self

    def __next__(self) -> int:
        while len(self.buf) < self.size and self.next_in < self.hi:
            self.buf.append(self.next_in)
            self.next_in += 1
        if not self.buf:
            raise StopIteration
        j = self.rng.randrange(len(self.buf)) if len(self.buf) > 1 else 0
        k = self.buf[j]
        self.buf[j] = self.buf[-1]
        self.buf.pop()
        return k


# ------------------------------------------------------------------------------ dataset
class ShardDataset(IterableDataset):
    """Samples (or bucket-pure batches) of one split and profile of a curator shard set.

    Args:
        source: run output URI, its ``shards/`` folder, or an index.json URI.
        split, profile: which set (profile may be omitted when the split has one).
        buckets: only these buckets (default: all).
        decode: "uint8" ([T, C, H, W] RGB), "float" (float32 in [-1, 1]) or "none" (mp4 bytes).
        batch_size: yield batches of this many samples of one bucket (None: single samples).
        drop_last: drop each bucket's last incomplete batch.
        shuffle_buffer: samples in the shuffle buffer (0 or 1: read order); shards are
            reshuffled per epoch when this is > 1 or shuffle_shards is set.
        seed: shuffle seed (shard order and buffer; the same for every rank).
        rank, world_size: this process's share; default from torch.distributed, else 0 of 1.
        storage_config: curator StorageConfig for the workers (default: the current one).
        read_mb: bytes per ranged read, at most (whole samples).

    Each sample: ``{"key", "bucket", "video", "latent", "caption", "embedding", "meta"}``
    where caption is the ``.txt`` member or the json's ``caption`` (or None), embedding a
    float tensor from a ``.npy`` member or the json's ``embedding`` (or None), meta the json.
    ``latent`` (latent profile, else None) is the ``.latent.npy`` member as a tensor: the
    continuous latent ``[C, t, h, w]`` in its stored dtype (float16, bfloat16 or float32) or
    the discrete indices ``[t, h, w]`` as int64; ``video`` is then None unless the shards
    kept the mp4s. A batch holds the same keys with lists (``video``, ``latent`` and
    ``embedding`` stacked when their shapes agree: always for tokenizer and latent buckets).
    """

    def __init__(self, source: str, split: str = "pretrain", profile: str | None = None, *,
                 buckets: Iterable[str] | None = None, decode: Decode = "uint8", batch_size: int | None = None,
                 drop_last: bool = False, shuffle_buffer: int = 0, shuffle_shards: bool | None = None,
                 seed: int = 0, rank: int | None = None, world_size: int | None = None,
                 storage_config: Any = None, read_mb: float = 16.0,
                 type_weights: bool | dict[str, float] = True, weights: str | dict[str, float] | None = None,
                 generated_share: float | None = None):
        if decode not in ("uint8", "float", "none"):
            raise ValueError(f"decode must be 'uint8', 'float' or 'none', not {decode!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.index_uri, doc = open_index(source, split, profile)
        self.base = self.index_uri.rsplit("/", 1)[0]
        self.split, self.profile = doc.get("split", split), doc.get("profile", profile)
        wanted = set(buckets) if buckets is not None else None
        if wanted is not None and wanted - set(doc["buckets"]):
            raise ValueError(f"unknown buckets {sorted(wanted - set(doc['buckets']))}; "
                             f"this split has {sorted(doc['buckets'])}")
        self.shards = [s for s in doc["shards"] if wanted is None or s["bucket"] in wanted]
        self.buckets = {b: d for b, d in doc["buckets"].items() if wanted is None or b in wanted}
        self.decode, self.batch_size, self.drop_last = decode, batch_size, drop_last
        self.shuffle_buffer = shuffle_buffer
        self.shuffle_shards = shuffle_buffer > 1 if shuffle_shards is None else shuffle_shards
        self.seed = seed
        rank, world_size = _rank_and_world(rank, world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not within world_size {world_size}")
        self.rank, self.world_size = rank, world_size
        self.storage_config = storage_config or storage.current_config()
        self.read_bytes = int(read_mb * 1024 * 1024)
        self.epoch = 0
        self.num_workers = 1  # consumers per rank; Loader sets it
        self._progress: dict[int, dict[str, Any]] = {}
        self._members: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        # sampling weights (docs/training.md, "Mixtures and weights")
        if generated_share is not None and not 0 <= generated_share < 1:
            raise ValueError("generated_share must be in [0, 1)")
        self.type_weights = type_weights
        self.clip_weights = load_weights(weights) if isinstance(weights, str) else dict(weights or {})
        self.generated_share = generated_share
        self.weighted = bool(self.clip_weights) or generated_share is not None or isinstance(type_weights, dict) \
            or (type_weights is True and any((sh.get("sampling") or {}).get("tw_max", 1.0) > 1 for sh in self.shards))
        self._weights: dict[int, np.ndarray] = {}
        self._gen_scale: float | None = None

    # ------------------------------------------------------------------ sizes
    @property
    def total_samples(self) -> int:
        """Samples in the split (all ranks)."""
        return sum(s["samples"] for s in self.shards)

    def _rank_range(self) -> tuple[int, int]:
        n, r, w = self.total_samples, self.rank, self.world_size
        return n * r // w, n * (r + 1) // w

    def _worker_range(self, worker: int, workers: int) -> tuple[int, int]:
        a, b = self._rank_range()
        n = b - a
        return a + n * worker // workers, a + n * (worker + 1) // workers

    def num_samples(self) -> int:
        """Samples this rank yields per epoch (with weights: the weighted draw of this epoch)."""
        a, b = self._rank_range()
        if self.weighted:
            order, starts = self._epoch_layout(self.epoch)
            return int(self._multiplicities(a, b, self.epoch, order, starts).sum())
        return b - a

    def num_batches(self, num_workers: int | None = None) -> int:
        """Batches this rank yields per epoch (with this many DataLoader workers)."""
        if self.batch_size is None:
            return self.num_samples()
        workers = max(1, num_workers if num_workers is not None else self.num_workers)
        order, starts = self._epoch_layout(self.epoch)
        total = 0
        for w in range(workers):
            lo, hi = self._worker_range(w, workers)
            counts: dict[str, int] = {}
            for i, shard in enumerate(order):
                s0, s1 = starts[i], starts[i] + shard["samples"]
                a, b = max(lo, s0), min(hi, s1)
                n = max(0, b - a)
                if n and self.weighted:
                    n = int(self._shard_multiplicities(shard["_i"], self.epoch)[a - s0:b - s0].sum())
                if n:
                    counts[shard["bucket"]] = counts.get(shard["bucket"], 0) + n
            for n in counts.values():
                total += n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return total

    def __len__(self) -> int:
        return self.num_batches() if self.batch_size is not None else self.num_samples()

    def keys(self) -> list[str]:
        """Every sample key of the split (all ranks), in index order."""
        return [m["key"] for i in range(len(self.shards)) for m in self._shard_members(i)]

    def samples_at(self, positions: Iterable[int]) -> Iterator[dict[str, Any]]:
        """Random access: the samples at these positions of the split in index order (as
        :meth:`keys` lists them), in ascending order, each read with one ranged read."""
        storage.configure(self.storage_config)
        order = [dict(s, _i=i) for i, s in enumerate(self.shards)]
        starts = list(itertools.accumulate([0] + [s["samples"] for s in self.shards[:-1]])) if self.shards else []
        for _, raw in self._read(sorted(set(positions)), order, starts):
            yield self._sample(raw)

    # ------------------------------------------------------------------ state
    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` from its beginning (new shard order and shuffle)."""
        self.epoch = epoch
        self._progress = {}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                "num_workers": self.num_workers, "samples": self.total_samples, "weights": self.weights_digest(),
                "progress": {str(w): dict(p) for w, p in sorted(self._progress.items())}}

    def weights_digest(self) -> str | None:
        """What the sampling weights depend on (a saved position is only valid with the same)."""
        if not self.weighted:
            return None
        blob = json.dumps([self.type_weights, sorted(self.clip_weights.items()), self.generated_share],
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, mine in (("world_size", self.world_size), ("samples", self.total_samples), ("seed", self.seed),
                          ("weights", self.weights_digest())):
            if state.get(key) != mine:
                raise ValueError(f"saved loader state has {key}={state.get(key)}, this dataset {mine}")
        self.epoch = int(state["epoch"])
        self._progress = {int(w): dict(p) for w, p in state["progress"].items()}
        if self._progress:  # a position mid-epoch belongs to that many workers per rank
            self.num_workers = int(state["num_workers"])

    def _record(self, worker: int, progress: dict[str, Any]) -> None:
        self._progress[worker] = progress

    # ------------------------------------------------------------------ reading
    def _epoch_layout(self, epoch: int) -> tuple[list[dict[str, Any]], list[int]]:
        order = list(range(len(self.shards)))
        if self.shuffle_shards:
            _rng(self.seed, epoch, "shards").shuffle(order)
        shards = [dict(self.shards[i], _i=i) for i in order]
        starts, n = [], 0
        for s in shards:
            starts.append(n)
            n += s["samples"]
        return shards, starts

    def _shard_members(self, i: int) -> list[dict[str, Any]]:
        members = self._members.get(i)
        if members is None:
            doc = json.loads(storage.read_bytes(storage.join(self.base, self.shards[i]["index"])))
            members = doc["members"]
            if len(members) != self.shards[i]["samples"]:
                raise ValueError(f"{self.shards[i]['index']}: {len(members)} members, split index says "
                                 f"{self.shards[i]['samples']}")
            self._members[i] = members
            while len(self._members) > 16:
                self._members.popitem(last=False)
        else:
            self._members.move_to_end(i)
        return members

    # ------------------------------------------------------------------ weights
    def _base_weights(self, i: int) -> np.ndarray:
        """Per member of shard i: type weight (recorded up-sampling, or the type_weights
        mapping) times the re-weighting file's factor."""
        members = self._shard_members(i)
        tw = np.array([max(1.0, float(m.get("tw", 1.0))) for m in members], np.float64)
        if isinstance(self.type_weights, dict):
            by_type = self.type_weights
            tw = np.array([float(by_type.get(str(m.get("type")), t)) for m, t in zip(members, tw)], np.float64)
        elif not self.type_weights:
            tw = np.ones(len(members), np.float64)
        if self.clip_weights:
            tw *= np.array([float(self.clip_weights.get(_clip_of(m), 1.0)) for m in members], np.float64)
        return tw

    def _generated_scale(self) -> float:
        """Factor on generated samples' weights so that they make at most `generated_share`
        of the expected draw (over the whole split: every rank uses the same factor)."""
        if self._gen_scale is None:
            gen_w = real_w = 0.0
            for i in range(len(self.shards)):
                w = self._base_weights(i)
                gen = np.array([bool(m.get("gen")) for m in self._shard_members(i)], bool)
                gen_w += float(w[gen].sum())
                real_w += float(w[~gen].sum())
            s = float(self.generated_share or 0.0)
            cap = s / (1 - s) * real_w
            self._gen_scale = 1.0 if gen_w <= cap or gen_w == 0 else cap / gen_w
        return self._gen_scale

    def _shard_weights(self, i: int) -> np.ndarray:
        w = self._weights.get(i)
        if w is None:
            w = self._base_weights(i)
            if self.generated_share is not None:
                gen = np.array([bool(m.get("gen")) for m in self._shard_members(i)], bool)
                w[gen] *= self._generated_scale()
            self._weights[i] = w
        return w

    def _shard_multiplicities(self, i: int, epoch: int) -> np.ndarray:
        """How often each sample of shard i is drawn in `epoch`: floor(w), plus one with
        probability frac(w) (seeded by seed, epoch and shard, so every rank and a resumed
        run agree)."""
        w = self._shard_weights(i)
        base = np.floor(w)
        u = np.random.default_rng([self.seed, epoch, i, 0x5EED]).random(len(w))
        return (base + (u < (w - base))).astype(np.int64)

    def _multiplicities(self, lo: int, hi: int, epoch: int, order: list[dict[str, Any]],
                        starts: list[int]) -> np.ndarray:
        """Multiplicities of epoch positions lo..hi-1."""
        out = np.zeros(max(0, hi - lo), np.int64)
        for i, shard in enumerate(order):
            s0, s1 = starts[i], starts[i] + shard["samples"]
            a, b = max(lo, s0), min(hi, s1)
            if a < b:
                out[a - lo:b - lo] = self._shard_multiplicities(shard["_i"], epoch)[a - s0:b - s0]
        return out

    def _virtual(self, lo: int, hi: int, epoch: int, order: list[dict[str, Any]], starts: list[int]
                 ) -> tuple[int, int, Any]:
        """The worker's draw as virtual indices 0..V-1 (position k repeated m_k times, in
        order), and the map from a virtual index to its position; identity when unweighted."""
        if not self.weighted:
            return lo, hi, None
        cum = np.cumsum(self._multiplicities(lo, hi, epoch, order, starts))

        def to_pos(v: int) -> int:
            return lo + int(np.searchsorted(cum, v, side="right"))

        return 0, int(cum[-1]) if len(cum) else 0, to_pos

    def _read_v(self, vs: Iterable[int], order: list[dict[str, Any]], starts: list[int], to_pos: Any
                ) -> Iterator[tuple[int, dict[str, Any]]]:
        """(virtual index, raw sample) for ascending virtual indices: each position read once
        however often it is drawn."""
        if to_pos is None:
            yield from self._read(vs, order, starts)
            return
        waiting: deque[tuple[int, list[int]]] = deque()

        def positions() -> Iterator[int]:
            for v in vs:
                k = to_pos(v)
                if waiting and waiting[-1][0] == k:
                    waiting[-1][1].append(v)
                    continue
                waiting.append((k, [v]))
                yield k

        for k, raw in self._read(positions(), order, starts):
            pos, group = waiting.popleft()
            assert pos == k
            for v in group:
                yield v, raw

    def _read(self, positions: Iterable[int], order: list[dict[str, Any]], starts: list[int]
              ) -> Iterator[tuple[int, dict[str, Any]]]:
        """(position, raw sample) for ascending positions, with one ranged read per run of
        adjacent samples of a shard (up to read_mb)."""
        run: list[tuple[int, dict[str, Any]]] = []
        run_shard = -1

        def flush() -> Iterator[tuple[int, dict[str, Any]]]:
            shard = order[run_shard]
            start = run[0][1]["offset"]
            end = run[-1][1]["offset"] + run[-1][1]["size"]
            data = memoryview(storage.read_range(storage.join(self.base, shard["path"]), start, end))
            for k, m in run:
                files = {}
                for name, blob in _tar_members(data[m["offset"] - start:m["offset"] - start + m["size"]]):
                    key, _, ext = name.rpartition("/")[2].partition(".")
                    if key != m["key"]:
                        raise ValueError(f"{shard['path']}: member {name} at the offset of sample {m['key']}")
                    files[ext] = bytes(blob)
                yield k, {"key": m["key"], "bucket": shard["bucket"], "files": files, "shard": shard["path"]}

        for k in positions:
            si = bisect.bisect_right(starts, k) - 1
            m = self._shard_members(order[si]["_i"])[k - starts[si]]
            if run and (si != run_shard or m["offset"] != run[-1][1]["offset"] + run[-1][1]["size"]
                        or m["offset"] + m["size"] - run[0][1]["offset"] > self.read_bytes):
                yield from flush()
                run = []
            run_shard = si
            run.append((k, m))
        if run:
            yield from flush()

    def _sample(self, raw: dict[str, Any], out: torch.Tensor | None = None) -> dict[str, Any]:
        files = raw["files"]
        meta = json.loads(files["json"]) if "json" in files else {}
        caption = files["txt"].decode("utf-8") if "txt" in files else meta.get("caption")
        embedding = None
        if "npy" in files:
            embedding = torch.from_numpy(np.load(io.BytesIO(files["npy"])).astype(np.float32))
        elif meta.get("embedding") is not None:
            embedding = torch.tensor(meta.pop("embedding"), dtype=torch.float32)
        latent = None
        if "latent.npy" in files:
            try:
                latent = tokenizer.from_numpy(tokenizer.load_npy(files["latent.npy"]),
                                              (meta.get("latent") or {}).get("dtype", ""))
            except ValueError as exc:
                raise ValueError(f"{raw['shard']}: sample {raw['key']} has an unreadable latent: {exc}") from exc
        elif "mp4" not in files:
            raise ValueError(f"{raw['shard']}: sample {raw['key']} has no mp4")
        video: Any = None
        if "mp4" in files:
            try:
                video = files["mp4"] if self.decode == "none" else decode_video(files["mp4"], self.decode, out)
            except Exception as exc:
                raise ValueError(f"{raw['shard']}: sample {raw['key']} does not decode: {exc}") from exc
        return {"key": raw["key"], "bucket": raw["bucket"], "video": video, "latent": latent, "caption": caption,
                "embedding": embedding, "meta": meta}

    def _batch(self, raws: list[dict[str, Any]]) -> dict[str, Any]:
        """Decode a bucket's samples; straight into one [B, T, C, H, W] tensor when the
        bucket's shape is known (tokenizer buckets), else stacked if shapes agree."""
        info = self.buckets.get(raws[0]["bucket"], {})
        videos = all("mp4" in r["files"] for r in raws)  # latent shards hold mp4s only when kept
        if videos and self.decode != "none" and all(k in info for k in ("frames", "height", "width")):
            dtype = torch.float32 if self.decode == "float" else torch.uint8
            video = torch.empty((len(raws), info["frames"], 3, info["height"], info["width"]), dtype=dtype)
            batch = collate([self._sample(r, video[i]) for i, r in enumerate(raws)], stack_video=False)
            batch["video"] = video
            return batch
        return collate([self._sample(r) for r in raws])

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = _worker_slot(self, "loader")
        # a DataLoader worker process: the process-level default is how its backends get the options
        storage.configure(self.storage_config)
        epoch = self.epoch
        order, starts = self._epoch_layout(epoch)
        lo, hi = self._worker_range(worker, workers)
        lo, hi, to_pos = self._virtual(lo, hi, epoch, order, starts)  # weighted: virtual indices
        progress = self._progress.get(worker, {"taken": 0, "pending": []})
        shuffle = _Order(lo, hi, self.shuffle_buffer, _rng(self.seed, epoch, self.rank, worker, "buffer"))
        taken = int(progress["taken"])
        for _ in range(taken):  # replay: positions only, nothing is read
            next(shuffle)
        pending: list[list[int]] = [list(p) for p in progress["pending"]]
        refetch = sorted(set(shuffle.buf) | {k for p in pending for k in p})
        stream = self._read_v(refetch, order, starts, to_pos)
        tail_from: int | None = shuffle.next_in
        cache: dict[int, dict[str, Any]] = {}

        def get(k: int) -> dict[str, Any]:
            nonlocal stream, tail_from
            while k not in cache:
                try:
                    pos, raw = next(stream)
                except StopIteration:
                    if tail_from is None:
                        raise KeyError(f"sample position {k} was never read") from None
                    stream, tail_from = self._read_v(range(tail_from, hi), order, starts, to_pos), None
                    continue
                cache[pos] = raw
            return cache.pop(k)

        partial: dict[str, list[tuple[int, dict[str, Any]]]] = {}  # bucket -> undecoded samples
        for ks in pending:
            for k in ks:
                raw = get(k)
                partial.setdefault(raw["bucket"], []).append((k, raw))

        def mark() -> dict[str, Any]:
            state = {"taken": taken, "pending": [[k for k, _ in p] for p in partial.values()]}
            self._progress[worker] = state
            return {"worker": worker, "epoch": epoch, **state}

        for k in shuffle:
            taken += 1
            raw = get(k)
            if self.batch_size is None:
                out = self._sample(raw)
            else:
                group = partial.setdefault(raw["bucket"], [])
                group.append((k, raw))
                if len(group) < self.batch_size:
                    continue
                del partial[raw["bucket"]]
                out = self._batch([x for _, x in group])
            state = mark()
            if info is not None:
                out["__state__"] = state
            yield out
        while partial:  # end of stream: the last batch of each bucket
            bucket = next(iter(partial))
            group = partial.pop(bucket)
            if self.drop_last:
                continue
            out = self._batch([x for _, x in group])
            state = mark()
            if info is not None:
                out["__state__"] = state
            yield out
        mark()
        if info is None:  # iterated in this process: the epoch is over
            self.set_epoch(epoch + 1)


def collate(samples: list[dict[str, Any]], stack_video: bool = True) -> dict[str, Any]:
    """Samples of one bucket -> a batch; tensors stacked when their shapes agree."""
    buckets = {s["bucket"] for s in samples}
    if len(buckets) != 1:
        raise ValueError(f"a batch mixes buckets: {sorted(buckets)}")

    def stack(xs: list[Any]) -> Any:
        if xs and all(isinstance(x, torch.Tensor) for x in xs) and len({x.shape for x in xs}) == 1:
            return torch.stack(xs)
        return xs

    latents = [s.get("latent") for s in samples]
    videos = [s["video"] for s in samples]
    return {"key": [s["key"] for s in samples], "bucket": samples[0]["bucket"],
            "video": stack(videos) if stack_video and any(v is not None for v in videos) else None,
            "latent": stack(latents) if any(x is not None for x in latents) else None,
            "caption": [s["caption"] for s in samples],
            "embedding": stack([s["embedding"] for s in samples]), "meta": [s["meta"] for s in samples]}


class MixtureDataset(IterableDataset):
    """A weighted mixture of several sites' shard sets (one per cloud or region), or — for a
    rank bound to a site — that site's shards alone.

    Args:
        sites: ``{uri: weight}`` (weights are normalised; a list means equal weights). Each
            URI is what :class:`ShardDataset` takes (a run output, its ``shards/`` folder or an
            index.json), on any storage backend.
        placement: ``{uri: [ranks]}``: those ranks are *bound* to that site and read only its
            shards (split among them like a ShardDataset's ranks); with federated training each
            site trains near its own data. Ranks not listed draw from the mixture.
        site: bind this rank to one site directly (its only reader, unless `placement` says
            which ranks share it).
        samples_per_epoch: draws per rank per epoch (default: the sum of the sites' sizes for
            this rank); the mixture never runs dry: a site that ends its epoch starts the next.
        seed, rank, world_size: as for ShardDataset; the draw of sites is seeded by seed, epoch,
            rank and worker.
        **kwargs: passed to every site's ShardDataset (batch_size, shuffle_buffer, decode,
            type_weights, weights, generated_share, storage_config, ...).

    Each draw picks a site with probability proportional to its weight and takes that
    site's next sample (or batch: a draw is then a batch, from one site and one bucket).
    Samples carry ``site``. ``state_dict()`` / ``load_state_dict()`` resume exactly, as for
    ShardDataset (use :class:`Loader` with workers).
    """

    def __init__(self, sites: dict[str, float] | list[str], split: str = "pretrain", profile: str | None = None, *,
                 placement: dict[str, list[int]] | None = None, site: str | None = None,
                 samples_per_epoch: int | None = None, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, **kwargs: Any):
        weights = {u: 1.0 for u in sites} if isinstance(sites, (list, tuple)) else dict(sites)
        if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("sites must name at least one site with a positive weight")
        rank, world_size = _rank_and_world(rank, world_size)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        norm = {storage.normalize(u).rstrip("/"): u for u in weights}
        placement = {storage.normalize(u).rstrip("/"): list(r) for u, r in (placement or {}).items()}
        unknown = sorted(set(placement) - set(norm)) + ([site] if site and storage.normalize(site).rstrip("/")
                                                               not in norm else [])
        if unknown:
            raise ValueError(f"placement/site name sites not in the mixture: {unknown}")
        bound = storage.normalize(site).rstrip("/") if site else next(
            (u for u, ranks in placement.items() if rank in ranks), None)
        self.bound = bound
        if bound is not None:  # this rank reads its site only: nothing of the others is even opened
            ranks = placement.get(bound, [rank])
            local = ranks.index(rank) if rank in ranks else 0
            self.children = {bound: ShardDataset(norm[bound], split, profile, seed=seed, rank=local,
                                                 world_size=len(ranks), **kwargs)}
            self.weights = {bound: 1.0}
        else:
            self.children = {u: ShardDataset(orig, split, profile, seed=seed, rank=rank, world_size=world_size,
                                             **kwargs) for u, orig in norm.items()}
            total = sum(weights.values())
            self.weights = {u: weights[orig] / total for u, orig in norm.items()}
        self.samples_per_epoch = samples_per_epoch
        self.epoch = 0
        self.num_workers = 1
        self._progress: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        if self.samples_per_epoch is not None:
            return self.samples_per_epoch
        return sum(len(c) for c in self.children.values())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._progress = {}

    def state_dict(self) -> dict[str, Any]:
        return {"mixture": sorted(self.weights.items()), "epoch": self.epoch, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "num_workers": self.num_workers,
                "progress": {str(w): p for w, p in sorted(self._progress.items())}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = {"mixture": [list(x) for x in sorted(self.weights.items())], "world_size": self.world_size,
                "seed": self.seed}
        for key, val in mine.items():
            got = state.get(key)
            if (list(map(list, got)) if key == "mixture" and got else got) != val:
                raise ValueError(f"saved mixture state has {key}={got}, this mixture {val}")
        self.epoch = int(state["epoch"])
        self._progress = {int(w): p for w, p in state["progress"].items()}
        if self._progress:
            self.num_workers = int(state["num_workers"])

    def _record(self, worker: int, progress: dict[str, Any]) -> None:
        self._progress[worker] = progress

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = _worker_slot(self, "mixture")
        epoch = self.epoch
        total = len(self)
        mine = total * (worker + 1) // workers - total * worker // workers
        saved = self._progress.get(worker, {"draws": 0, "children": {}})
        draws = int(saved["draws"])
        sites = list(self.weights)
        cum = np.cumsum([self.weights[u] for u in sites])
        rng = _rng(self.seed, epoch, self.rank, worker, "mixture")
        for _ in range(draws):  # replay the site draws: nothing is read
            rng.random()
        children: dict[str, dict[str, Any]] = {}
        for u, child in self.children.items():
            st = saved["children"].get(u)
            child.num_workers = workers
            if st is not None:
                child.epoch = int(st["epoch"])
                child._progress = {worker: st["progress"]} if st.get("progress") else {}
            children[u] = {"epoch": child.epoch, "progress": child._progress.get(worker), "it": None}

        def take(u: str) -> dict[str, Any]:
            child, c = self.children[u], children[u]
            for _ in range(2):
                if c["it"] is None:
                    c["it"] = iter(child)
                try:
                    item = next(c["it"])
                except StopIteration:  # this site's epoch is over here: its next one
                    c["it"] = None
                    child.epoch = c["epoch"] = c["epoch"] + 1
                    child._progress = {}
                    continue
                item.pop("__state__", None)
                c["progress"] = child._progress.get(worker)
                item["site"] = u
                return item
            raise ValueError(f"site {storage.display(u)} has no samples for this rank")

        for _ in range(draws, mine):
            u = sites[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(sites) - 1)]
            item = take(u)
            draws += 1
            state = {"draws": draws, "children": {s: {"epoch": c["epoch"], "progress": c["progress"]}
                                                  for s, c in children.items()}}
            self._progress[worker] = state
            if info is not None:
                item["__state__"] = {"worker": worker, "epoch": epoch, **state}
            yield item
        if info is None:
            self.set_epoch(epoch + 1)


class Loader(DataLoader):
    """A DataLoader for a :class:`ShardDataset` (batching is the dataset's, so
    ``batch_size=None`` here) that keeps the dataset's resumable position: call
    ``state_dict()`` at a checkpoint and ``load_state_dict()`` before iterating again.
    Each full pass moves the dataset to its next epoch."""

    def __init__(self, dataset: ShardDataset | MixtureDataset, num_workers: int = 0, **kwargs: Any):
        if kwargs.get("persistent_workers"):
            raise ValueError("persistent_workers would keep stale copies of the loader position; leave it off")
        kwargs.setdefault("batch_size", None)
        super().__init__(dataset, num_workers=num_workers, **kwargs)
        if not dataset._progress:
            dataset.num_workers = max(1, num_workers)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        ds: ShardDataset | MixtureDataset = self.dataset  # type: ignore[assignment]
        epoch = ds.epoch
        for item in super().__iter__():
            state = item.pop("__state__", None) if isinstance(item, dict) else None
            if state is not None:
                ds._record(state["worker"], {k: v for k, v in state.items() if k not in ("worker", "epoch")})
            yield item
        if self.num_workers > 0 and ds.epoch == epoch:
            ds.set_epoch(epoch + 1)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()  # type: ignore[attr-defined]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)  # type: ignore[attr-defined]

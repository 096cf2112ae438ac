"""The clip index: Parquet segments plus a faiss ANN index per segment, all through
:mod:`curator.storage` (so it lives in any bucket the run can write: s3, gs, az, file).

Layout under the index URI (default ``<output>/index``)::

    index.json                  format, embedding model, dimension, the list of segments
    segments/<id>.parquet       one row per clip: id, source, span, sizes, status and reasons,
                                dedup decisions, scores (from `checks`), tags, caption, any other
                                scalar manifest column, clip URI, and the embedding (float16)
    segments/<id>.faiss         faiss index over the segment's embeddings (inner product on unit
                                vectors = cosine): IVF + fp16 scalar quantiser for large segments,
                                exact flat search for small ones; ids are row numbers

Adding a run writes new segments with the clips the index does not hold yet, then
commits them to index.json with a compare-and-swap write (:mod:`curator.catalog.core`):
any number of runs can add to one index at once without losing clips, and nothing
already written is rebuilt. A query visits the segments one at a time and merges their
top hits, so memory is one segment's ANN index and the metadata columns the filter needs.
Rows of sources that were changed or deleted after they were indexed are hidden by
tombstones (docs/catalog.md).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator import storage, where
from curator.catalog import core
from curator.config import IndexConfig
from curator.rundir import RunDir

log = logging.getLogger(__name__)

INDEX_JSON = core.INDEX_JSON
FORMAT = core.FORMAT
#: manifest columns never copied into the index (bytes, per-run internals, video-only)
EXCLUDE = {"timings", "spans", "checks", "num_clips", "split_method", "mp4", "video_bytes", "embedding",
           "kind", "rotation", "container", "codec", "pix_fmt", "size_bytes", "has_audio", "vfr"}
#: shown by `curator search` (others with --columns)
DEFAULT_COLUMNS = ["clip_id", "score", "start_s", "end_s", "status", "reason", "clip_uri"]


class SearchError(core.CatalogError):
    """The index cannot answer this query; the message says why and what to do."""


def index_uri_for(output_uri: str, cfg: IndexConfig) -> str:
    return storage.normalize(cfg.uri) if cfg.uri else RunDir.of(output_uri).default_index


# ------------------------------------------------------------------------- metadata
@dataclass
class IndexMeta:
    uri: str
    doc: dict[str, Any]
    version: str | None = None  # of index.json as read (None: not there yet)
    _tombs: dict[str, int] | None = field(default=None, repr=False)

    @property
    def segments(self) -> list[dict[str, Any]]:
        return self.doc.get("segments", [])

    @property
    def model(self) -> str | None:
        return self.doc.get("embedding_model")

    def seg_uri(self, seg: dict[str, Any], ext: str) -> str:
        return storage.join(self.uri, "segments", f"{seg['id']}.{ext}")

    @property
    def tombstones(self) -> dict[str, int]:
        if self._tombs is None:
            self._tombs = core.load_tombstones(self.uri, self.doc)
        return self._tombs

    def visible(self, seg: dict[str, Any], source_uris: Any = None) -> np.ndarray | None:
        """Rows of `seg` no tombstone hides (bool mask), or None when every row is visible."""
        if not self.tombstones:
            return None
        if source_uris is None:
            source_uris = _read_parquet(self.seg_uri(seg, "parquet"), ["source_uri"]).column("source_uri")
        mask = core.visible(seg, source_uris, self.tombstones)
        return None if mask.all() else mask


def read_meta(index_uri: str, must_exist: bool = True) -> IndexMeta:
    try:
        snap = core.read(index_uri)
    except core.CatalogError as exc:
        raise SearchError(str(exc)) from None
    if snap.version is None and must_exist:
        raise SearchError(f"no clip index at {storage.display(snap.uri)} (no {INDEX_JSON}); "
                          f"build one with `curator index RUN` or a run with index.enabled")
    return IndexMeta(snap.uri, snap.doc, snap.version)


def _read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    with storage.local_copy(uri) as path:
        return pq.read_table(path, columns=columns)


def _schema_names(uri: str) -> list[str]:
    with storage.local_copy(uri) as path:
        return pq.ParquetFile(path).schema_arrow.names


# ---------------------------------------------------------------------------- build
def _scores(checks: list | None) -> list[tuple[str, float]] | None:
    if not checks:
        return None
    return [(f"{c['stage']}.{c['metric']}", c["value"]) for c in checks if c.get("value") is not None]


def _clip_rows(output_uri: str, batch_rows: int = 4096) -> Iterator[tuple[pa.Table, np.ndarray, str | None]]:
    """Clip rows of a run's manifest that have an embedding: (metadata table, float16 [n, d], model)."""
    with RunDir.of(output_uri).open_manifest("index") as mf:
        pf = mf.parquet
        names = pf.schema_arrow.names
        if "embedding" not in names:
            return
        keep = [n for n in names if n not in EXCLUDE or n in ("kind", "embedding", "checks")]
        for batch in pf.iter_batches(batch_size=batch_rows, columns=keep):
            t = pa.Table.from_batches([batch])
            mask = pc.and_(pc.equal(t.column("kind"), "clip"), pc.is_valid(t.column("embedding")))
            t = t.filter(mask)
            if not t.num_rows:
                continue
            emb_col = t.column("embedding").combine_chunks()
            vals = emb_col.flatten().to_numpy(zero_copy_only=False)
            d = len(vals) // t.num_rows
            emb = vals.reshape(t.num_rows, d).astype(np.float16)
            models = set(t.column("embedding_model").to_pylist()) if "embedding_model" in names else {None}
            if len(models) > 1:
                raise SearchError(f"the manifest mixes embedding models: {sorted(map(str, models))}")
            scores = pa.array([_scores(c) for c in t.column("checks").to_pylist()], pa.map_(pa.string(), pa.float64())) \
                if "checks" in names else pa.nulls(t.num_rows, pa.map_(pa.string(), pa.float64()))
            meta = t.drop_columns([c for c in ("kind", "embedding", "checks") if c in t.column_names])
            meta = meta.append_column("scores", scores)
            yield meta, emb, next(iter(models))


def build_ann(emb: np.ndarray, cfg: IndexConfig, seed: int = 0) -> tuple[bytes, str]:
    """A faiss index over unit vectors (inner product): (serialised bytes, kind)."""
    import faiss

    x = np.ascontiguousarray(emb.astype(np.float32))
    faiss.normalize_L2(x)
    n, d = x.shape
    if n >= cfg.ivf_min_rows:
        nlist = max(1, min(int(round(4 * np.sqrt(n))), n // 39))
        quant = faiss.IndexFlatIP(d)
        ix: faiss.Index = faiss.IndexIVFScalarQuantizer(quant, d, nlist, faiss.ScalarQuantizer.QT_fp16,
                                           faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = x[rng.choice(n, min(n, nlist * 64), replace=False)]
        ix.train(train)
        ix.add(x)
        kind = f"ivf{nlist}-fp16"
    else:
        ix = faiss.IndexFlatIP(d)
        ix.add(x)
        kind = "flat"
    return faiss.serialize_index(ix).tobytes(), kind


def site_of(uri: str | None) -> str | None:
    """The store a URI lives in: ``s3://bucket``, ``gs://bucket``, ``az://container``, ``file://``."""
    if not uri:
        return None
    scheme, bucket, _ = storage.split(uri)
    return f"{scheme}://{bucket}"


def row_keys(t: pa.Table) -> pa.Array:
    """A clip's identity in the index, ``<source_uri>#<clip_id>`` (clip ids alone repeat
    across clouds: they come from the key below the input root)."""
    src = t.column("source_uri") if "source_uri" in t.column_names else pa.nulls(t.num_rows, pa.string())
    out = pc.binary_join_element_wise(pc.fill_null(src, ""), pc.fill_null(t.column("clip_id"), ""), "#")
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def add_run(output_uri: str, index_uri: str, cfg: IndexConfig, segment_rows: int = 200_000, *,
            replace_sources: Iterable[str] = (), sources: list[dict[str, Any]] | None = None,
            commit_id: str | None = None) -> dict[str, Any]:
    """Add the clips of one run (its manifest) that the index does not hold yet, as new
    segments of at most `segment_rows` clips, in one commit. Returns {"added", "skipped",
    "segments", "index"}.

    Concurrent writers: the segment files are written first under unique names, then one
    compare-and-swap commit lists them (:func:`curator.catalog.core.commit`). A writer that
    finds clips it is adding registered by a commit that beat it (the same run indexed
    twice at once) rewrites its segments without them first.

    `replace_sources`: source URIs whose earlier rows this commit hides (a changed source
    redone: `curator watch`); `sources`: ledger records committed with the clips."""
    output_uri = storage.normalize(output_uri)
    meta = read_meta(index_uri, must_exist=False)
    replace = sorted(set(replace_sources))
    existing = _existing_keys(meta, skip_sources=set(replace))
    tables: list[pa.Table] = []
    embs: list[np.ndarray] = []
    pending = 0
    skipped = 0
    model: str | None = meta.model
    dim: int | None = meta.doc.get("dim")
    ours: list[dict[str, Any]] = []  # segment entries written, not yet committed
    our_keys: set[str] = set()
    for t, emb, m in _clip_rows(output_uri):
        if model is None:
            model = m
        elif m != model:
            raise SearchError(f"{storage.display(meta.uri)} holds {model} embeddings; this run has {m} "
                              f"(use another index.uri)")
        if dim and emb.shape[1] != dim:
            raise SearchError(f"embedding size {emb.shape[1]} does not match the index ({dim})")
        dim = emb.shape[1]
        keys = row_keys(t)
        if existing is not None and len(existing):
            new = np.asarray(pc.invert(pc.is_in(keys, value_set=existing)))
            skipped += int((~new).sum())
            t, emb, keys = t.filter(pa.array(new)), emb[new], keys.filter(pa.array(new))
        if t.num_rows:
            t = t.append_column("source_run", pa.array([output_uri] * t.num_rows, pa.string()))
            clip_uris = t.column("clip_uri").to_pylist() if "clip_uri" in t.column_names else [None] * t.num_rows
            t = t.append_column("site", pa.array([site_of(u) or site_of(output_uri) for u in clip_uris], pa.string()))
            tables.append(t)
            embs.append(emb)
            our_keys.update(keys.to_pylist())
            pending += t.num_rows
        if pending >= segment_rows:
            ours.append(_write_segment(meta.uri, tables, embs, output_uri, cfg))
            tables, embs, pending = [], [], 0
    if tables:
        ours.append(_write_segment(meta.uri, tables, embs, output_uri, cfg))
    extra: dict[str, list[dict[str, Any]]] = {}
    if replace:
        tid = core.new_id()
        core.write_table(storage.join(meta.uri, "tombstones", f"{tid}.parquet"),
                         core.tombstone_table(replace, "changed"))
        extra["tombstones"] = [{"id": tid, "rows": len(replace), "created": core.now_iso()}]
    if sources:
        sid = core.new_id()
        core.write_table(storage.join(meta.uri, "sources", f"{sid}.parquet"), core.sources_table(sources))
        extra["sources"] = [{"id": sid, "rows": len(sources), "created": core.now_iso()}]
    if not ours and not extra:
        return {"added": 0, "skipped": skipped, "segments": [], "index": meta.uri}
    based_on = {s["id"] for s in meta.segments}

    def apply(doc: dict[str, Any], seq: int) -> dict[str, Any]:
        if ours:
            if doc.get("embedding_model") is None:
                doc["embedding_model"] = model
            elif doc["embedding_model"] != model:
                raise SearchError(f"{storage.display(meta.uri)} holds {doc['embedding_model']} embeddings; "
                                  f"this run has {model} (use another index.uri)")
            if doc.get("dim") and doc["dim"] != dim:
                raise SearchError(f"embedding size {dim} does not match the index ({doc['dim']})")
            doc["dim"] = dim
            newer = [s for s in doc["segments"] if s["id"] not in based_on]
            if newer:
                now = IndexMeta(meta.uri, doc)
                overlap = our_keys & set(_keys_of(now, newer))
                based_on.update(s["id"] for s in newer)
                if overlap:
                    raise core.Rebase(overlap)
        for seg in ours:
            doc["segments"].append({**seg, "seq": seq})
        for kind, entries in extra.items():
            doc.setdefault(kind, []).extend({**e, "seq": seq} for e in entries)
        return doc

    def rebase(exc: core.Rebase) -> None:
        drop: set[str] = exc.detail
        log.info("index %s: %d clips were registered meanwhile by another writer; rewriting this run's segments "
                 "without them", storage.display(meta.uri), len(drop))
        for i, seg in enumerate(list(ours)):
            t = _read_parquet(meta.seg_uri(seg, "parquet"))
            keep = np.asarray(pc.invert(pc.is_in(row_keys(t), value_set=pa.array(sorted(drop), pa.string()))))
            for ext in ("parquet", "faiss"):
                storage.delete(meta.seg_uri(seg, ext))
            ours[i] = {} if not keep.any() else _rewrite_segment(meta.uri, t.filter(pa.array(keep)), output_uri, cfg)
        ours[:] = [s for s in ours if s]
        our_keys.difference_update(drop)
        nonlocal skipped
        skipped += len(drop)

    res = core.commit(meta.uri, apply, commit_id, on_rebase=rebase)
    return {"added": sum(s["rows"] for s in ours), "skipped": skipped, "segments": [s["id"] for s in ours],
            "index": meta.uri, "seq": res.seq, "attempts": res.attempts}


def _rewrite_segment(index_uri: str, table: pa.Table, output_uri: str, cfg: IndexConfig) -> dict[str, Any]:
    emb = np.asarray(table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False),
                     np.float16).reshape(table.num_rows, -1)
    return _write_segment(index_uri, [table.drop_columns(["embedding"])], [emb], output_uri, cfg)


def _write_segment(index_uri: str, tables: list[pa.Table], embs: list[np.ndarray], source_run: str,
                   cfg: IndexConfig) -> dict[str, Any]:
    """Write one segment's Parquet and faiss files under a fresh id; return its entry (not
    yet listed in index.json: readers see it only once a commit lists it)."""
    table = pa.concat_tables(tables, promote_options="permissive")
    emb = np.concatenate(embs)
    d = emb.shape[1]
    table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), d))
    seg_id = core.new_id()
    ann, kind = build_ann(emb, cfg)
    seg = {"id": seg_id, "rows": table.num_rows, "ann": kind, "source_run": source_run, "created": core.now_iso()}
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=8192)
    storage.write_bytes(storage.join(index_uri, "segments", f"{seg_id}.parquet"), buf.getvalue())
    storage.write_bytes(storage.join(index_uri, "segments", f"{seg_id}.faiss"), ann)
    return seg


def _keys_of(meta: IndexMeta, segments: list[dict[str, Any]]) -> list[str]:
    """Keys of the visible rows of these segments."""
    out: list[str] = []
    for seg in segments:
        uri = meta.seg_uri(seg, "parquet")
        t = _read_parquet(uri, [c for c in ("source_uri", "clip_id") if c in _schema_names(uri)])
        keys = row_keys(t)
        vis = meta.visible(seg, t.column("source_uri") if "source_uri" in t.column_names else None)
        if vis is not None:
            keys = keys.filter(pa.array(vis))
        out.extend(keys.to_pylist())
    return out


def _existing_keys(meta: IndexMeta, skip_sources: set[str] | None = None) -> pa.Array | None:
    """Keys of the clips the index shows (rows of `skip_sources` left out: they are about to
    be replaced)."""
    if not meta.segments:
        return None
    keys = [k for k in _keys_of(meta, meta.segments) if not skip_sources or k.rsplit("#", 1)[0] not in skip_sources]
    return pa.array(keys, pa.string())


# --------------------------------------------------------------------------- search
@dataclass
class Hit:
    score: float | None
    row: dict[str, Any]


def like_vector(meta: IndexMeta, clip_id: str) -> np.ndarray:
    for seg in meta.segments:
        t = _read_parquet(meta.seg_uri(seg, "parquet"), ["clip_id", "source_uri", "embedding"])
        vis = meta.visible(seg, t.column("source_uri"))
        for i in np.nonzero(np.asarray(pc.equal(t.column("clip_id"), clip_id).fill_null(False)))[0].tolist():
            if vis is None or vis[i]:
                return np.asarray(t.column("embedding")[i].as_py(), np.float32)
    raise SearchError(f"clip {clip_id!r} is not in the index at {storage.display(meta.uri)}")


def text_vector(meta: IndexMeta, text: str, model_dir: str, trust_remote_code: bool = False,
                endpoint: Any = None) -> np.ndarray:
    """The text embedding of a query, by the text tower of the model the index was built with
    (open_clip, an hf-video model — `trust_remote_code` lets it run its repository's code — or an
    embeddings endpoint: `endpoint` is stages.embed.endpoint)."""
    from curator.media.perceptual import NAME as PERCEPTUAL

    model = meta.model
    if model == PERCEPTUAL:
        raise SearchError(
            f"text search is impossible on this index: its clips carry the built-in {PERCEPTUAL} embedding "
            "(pixel statistics, no text tower). Search with --like CLIP_ID and --where, or rebuild the index "
            "from a run with the CLIP embed stage (weights: `curator models download open_clip:ViT-B-32/openai`).")
    if not model:
        raise SearchError("the index names no embedding model; text search needs the CLIP model its clips were "
                          "embedded with")
    if model.startswith("endpoint:"):  # the embeddings server the clips were embedded by
        from curator.config import EmbedEndpointConfig
        from curator.models.embed_endpoint import EndpointEmbedder

        try:
            emb = EndpointEmbedder(model, endpoint or EmbedEndpointConfig())
            try:
                return emb.encode_text([text])[0].astype(np.float32)
            finally:
                emb.close()
        except Exception as exc:
            raise SearchError(f"text search through {model}: {type(exc).__name__}: {exc}") from None
    if model.startswith("hf-video:"):  # a transformers video-text model: its own text tower
        from curator.models import hf_video

        try:
            vm = hf_video.load(model, model_dir, device="auto", trust_remote_code=trust_remote_code)
        except FileNotFoundError as exc:
            raise SearchError(f"text search needs the model {model}: {exc}") from None
        except ValueError as exc:
            raise SearchError(f"text search: cannot load {model}: {exc}") from None
        return vm.encode_text([text])[0].astype(np.float32)
    try:
        from curator.models import clip as clip_mod  # the CLIP wrapper (embed stage)
    except ImportError as exc:
        raise SearchError(f"text search needs the model {model} and the CLIP wrapper curator.models.clip, "
                          f"which this install lacks: {exc}") from None
    try:
        m = clip_mod.load_name(model, model_dir, device="auto")
    except FileNotFoundError as exc:  # ModelMissing: names the path and the download command
        raise SearchError(f"text search needs the model {model}: {exc}") from None
    except ValueError as exc:
        raise SearchError(f"text search: cannot load {model}: {exc}") from None
    return m.encode_text([text])[0].astype(np.float32)


def search(index_uri: str, *, vector: np.ndarray | None = None, where_text: str | None = None, limit: int = 10,
           nprobe: int = 16, exclude: str | None = None) -> list[Hit]:
    """Top `limit` clips by cosine similarity to `vector` (or, without a vector, the first
    `limit` clips that match `where_text`), across all segments."""
    import faiss

    meta = read_meta(index_uri)
    tree = where.parse(where_text) if where_text else None
    if vector is None and tree is None:
        raise SearchError("nothing to search for: give a text query, --like CLIP_ID or --where")
    q = None
    if vector is not None:
        q = np.ascontiguousarray(np.asarray(vector, np.float32).reshape(1, -1))
        faiss.normalize_L2(q)
        if meta.doc.get("dim") and q.shape[1] != meta.doc["dim"]:
            raise SearchError(f"query vector has {q.shape[1]} dims, the index {meta.doc['dim']}")
    if tree is not None and meta.segments:
        known: set[str] = set()
        for seg in meta.segments:
            known.update(_schema_names(meta.seg_uri(seg, "parquet")))
        unknown = sorted({c for c in where.columns(tree) if c.split(".")[0] not in known})
        if unknown:  # a typo would otherwise match nothing, silently
            raise SearchError(f"--where: no column {', '.join(map(repr, unknown))} in this index; its columns: "
                              + ", ".join(sorted(known)))
    found: list[tuple[float, int, int]] = []  # (score, segment number, row)
    want = limit + (1 if exclude else 0)
    for sn, seg in enumerate(meta.segments):
        allowed = None
        vis = meta.visible(seg)  # None: no row of this segment is hidden by a tombstone
        if tree is not None:
            names = _schema_names(meta.seg_uri(seg, "parquet"))
            cols = [c for c in where.columns(tree) if c in names]
            t = _read_parquet(meta.seg_uri(seg, "parquet"), cols or ["clip_id"])
            match = np.asarray(where.evaluate(tree, t), bool)
            allowed = np.nonzero(match if vis is None else match & vis)[0]
            if not len(allowed):
                continue
        elif vis is not None:
            allowed = np.nonzero(vis)[0]
            if not len(allowed):
                continue
        if q is None:
            for r in allowed[:limit].tolist():  # type: ignore[index]
                found.append((0.0, sn, r))
            if len(found) >= limit:
                break
            continue
        ix = faiss.deserialize_index(np.frombuffer(storage.read_bytes(meta.seg_uri(seg, "faiss")), np.uint8))
        k = min(want, ix.ntotal if allowed is None else len(allowed))
        if hasattr(ix, "nprobe"):
            ix.nprobe = nprobe
            # faiss's stubs lack the keyword constructor its SWIG wrapper accepts
            params: faiss.SearchParameters = faiss.SearchParametersIVF(nprobe=nprobe)  # type: ignore[call-arg]
        else:
            params = faiss.SearchParameters()
        if allowed is not None:
            params.sel = faiss.IDSelectorBatch(allowed.astype(np.int64))
        sc, ids = ix.search(q, k, params=params)
        found.extend((float(s), sn, int(i)) for s, i in zip(sc[0], ids[0]) if i >= 0)
    found.sort(key=lambda h: (-h[0], h[1], h[2]))
    hits: list[Hit] = []
    by_seg: dict[int, pa.Table] = {}
    for score, sn, r in found:
        if len(hits) >= limit:
            break
        t = by_seg.get(sn)
        if t is None:
            seg_uri = meta.seg_uri(meta.segments[sn], "parquet")
            names = [c for c in _schema_names(seg_uri) if c != "embedding"]
            t = by_seg[sn] = _read_parquet(seg_uri, names)
        row = t.slice(r, 1).to_pylist()[0]
        if exclude and row.get("clip_id") == exclude:
            continue
        hits.append(Hit(score if q is not None else None, row))
    return hits


def format_table(hits: list[Hit], columns: list[str] | None = None) -> str:
    """A plain text table (clip URIs shown as display paths)."""
    cols = columns or DEFAULT_COLUMNS
    rows = []
    for h in hits:
        r = []
        for c in cols:
            v = h.score if c == "score" else h.row.get(c)
            if c == "clip_uri" and v:
                v = storage.display(str(v))
            if isinstance(v, float):
                v = f"{v:.4f}" if c == "score" or c == "similarity" else f"{v:.2f}"
            r.append("" if v is None else str(v))
        rows.append(r)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def nearest(index_uri: str, vectors: np.ndarray, *, exclude_runs: tuple[str, ...] = (),
            nprobe: int = 16) -> tuple[np.ndarray, list[str | None], list[str | None]]:
    """The nearest indexed clip of each vector (cosine, through each segment's ANN index):
    (similarity float32 [n] (NaN: none), clip ids, their source runs). Segments added by a run in
    `exclude_runs` are passed over (a run is not compared with its own clips)."""
    import faiss

    meta = read_meta(index_uri)
    n = len(vectors)
    best = np.full(n, -np.inf, np.float32)
    where_ = np.full((n, 2), -1, np.int64)  # (segment number, row)
    if n == 0:
        return np.full(0, np.nan, np.float32), [], []
    q = np.ascontiguousarray(np.asarray(vectors, np.float32))
    if meta.doc.get("dim") and q.shape[1] != meta.doc["dim"]:
        raise SearchError(f"vectors have {q.shape[1]} dims, the index {meta.doc['dim']}")
    faiss.normalize_L2(q)
    excluded = {storage.normalize(r).rstrip("/") for r in exclude_runs}
    for sn, seg in enumerate(meta.segments):
        if str(seg.get("source_run") or "").rstrip("/") in excluded:
            continue
        ix = faiss.deserialize_index(np.frombuffer(storage.read_bytes(meta.seg_uri(seg, "faiss")), np.uint8))
        if hasattr(ix, "nprobe"):
            ix.nprobe = nprobe
        vis = meta.visible(seg)  # tombstoned rows (changed or deleted sources) are not candidates
        if vis is None:
            sc, ids = ix.search(q, 1)
        elif vis.any():
            # faiss's stubs lack the keyword constructor its SWIG wrapper accepts
            params: faiss.SearchParameters = faiss.SearchParameters()
            if hasattr(ix, "nprobe"):
                params = faiss.SearchParametersIVF(nprobe=nprobe)  # type: ignore[call-arg]
            params.sel = faiss.IDSelectorBatch(np.nonzero(vis)[0].astype(np.int64))
            sc, ids = ix.search(q, 1, params=params)
        else:
            continue
        better = (ids[:, 0] >= 0) & (sc[:, 0] > best)
        best[better] = sc[better, 0]
        where_[better] = np.stack([np.full(int(better.sum()), sn), ids[better, 0]], axis=1)
    clip_ids: list[str | None] = [None] * n
    runs: list[str | None] = [None] * n
    for sn in np.unique(where_[:, 0]).tolist():
        if sn < 0:
            continue
        seg = meta.segments[sn]
        t = _read_parquet(meta.seg_uri(seg, "parquet"), ["clip_id"])
        ids_col = t.column("clip_id")
        for i in np.nonzero(where_[:, 0] == sn)[0].tolist():
            clip_ids[i] = ids_col[int(where_[i, 1])].as_py()
            runs[i] = seg.get("source_run")
    sims = np.where(np.isfinite(best), np.minimum(best, 1.0), np.nan).astype(np.float32)
    return sims, clip_ids, runs

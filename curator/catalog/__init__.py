"""The clip catalog: one clip index spanning runs in S3, GCS, Azure and local storage.

The catalog *is* the clip index (:mod:`curator.index`: Parquet segments + faiss per
segment) grown into a multi-writer, multi-cloud table (docs/catalog.md):

- ``core``: ``index.json`` read with its version and changed only by compare-and-swap
  commits (:func:`curator.storage.put_if`), so any number of writers (runs, watchers,
  compactions) register concurrently without losing one another's clips; tombstones
  (clips of changed or deleted sources) and the sources ledger (what ``curator watch``
  has curated).
- ``compact``: ``curator catalog compact``: small segments merged, tombstones applied,
  ledgers merged, unreferenced files of crashed writers removed.
- ``dedup``: catalog-level (federated) dedup over the embeddings in the segments — no
  video bytes are read — and incremental assignment of new clips to its centroids.
- ``watch``: ``curator watch``: incremental curation of an input prefix into the catalog.
- ``feedback``: ``curator feedback``: clips training flags -> a re-weighting file the
  loader reads.

This package's ``__init__`` imports nothing: :mod:`curator.index` imports ``core`` and the
other modules import :mod:`curator.index`.
"""

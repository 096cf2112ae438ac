"""curator: a Ray-based distributed video curation pipeline.

Raw videos in a folder or bucket -> shot clips -> filtered, captioned, de-duplicated
webdataset shards. See README.md and docs/architecture.md.
"""

__version__ = "0.1.0"

"""URI parsing and joining. Plain paths become absolute `file://` URIs."""

from __future__ import annotations

import os
from urllib.parse import quote, unquote

#: scheme aliases accepted on input, mapped to the canonical scheme
ALIASES = {
    "s3a": "s3",
    "gcs": "gs",
    "azure": "az",
    "abfs": "az",
    "abfss": "az",
}


def normalize(uri_or_path: str) -> str:
    """Return a canonical URI: `file:///abs/path`, `s3://b/k`, `gs://b/k`, `az://c/k`.

    `abfs[s]://container@account.dfs.core.windows.net/key` becomes `az://container/key`
    (the account then comes from the Azure storage config).
    """
    s = str(uri_or_path)
    # A trailing slash is kept: "dir/" lists inside dir, "dir" also matches "dir2/…" (as
    # a key prefix does in an object store).
    slash = s.endswith(("/", os.sep))

    def _abs(p: str) -> str:
        p = os.path.abspath(p)
        return p + "/" if slash and p != "/" else p

    if "://" not in s:
        return "file://" + quote(_abs(os.path.expanduser(s)))
    scheme, rest = s.split("://", 1)
    scheme = ALIASES.get(scheme.lower(), scheme.lower())
    if scheme == "az" and "@" in rest.split("/", 1)[0]:
        container = rest.split("@", 1)[0]
        tail = rest.split("/", 1)[1] if "/" in rest else ""
        rest = container + "/" + tail
    if scheme == "file":
        return "file://" + quote(_abs(unquote(rest)))
    return f"{scheme}://{rest}"


def split(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key). For file URIs the bucket is '' and the key the abs path."""
    uri = normalize(uri)
    scheme, rest = uri.split("://", 1)
    if scheme == "file":
        return scheme, "", unquote(rest)
    bucket, _, key = rest.partition("/")
    return scheme, bucket, key


def local_path(uri: str) -> str | None:
    """The filesystem path of a file URI, else None."""
    scheme, _, key = split(uri)
    return key if scheme == "file" else None


def join(base: str, *parts: str) -> str:
    """Join key parts onto a URI with '/', never escaping upwards."""
    base = normalize(base)
    out = base.rstrip("/")
    for p in parts:
        p = str(p).strip("/")
        if not p:
            continue
        if any(seg in ("..", ".") for seg in p.split("/")):
            raise ValueError(f"refusing path part with '.' or '..': {p!r}")
        out += "/" + (quote(p) if base.startswith("file://") else p)
    return out


def relative(root: str, uri: str) -> str:
    """The key of `uri` below `root` ('a/b.mp4'); raises if it is not below."""
    r, u = normalize(root).rstrip("/") + "/", normalize(uri)
    if not u.startswith(r):
        raise ValueError(f"{uri} is not below {root}")
    rel = u[len(r):]
    return unquote(rel) if r.startswith("file://") else rel


def display(uri: str) -> str:
    """A URI as shown to people: local paths without the scheme, query strings dropped."""
    uri = uri.split("?", 1)[0]
    p = local_path(uri) if uri.startswith("file://") else None
    return p if p is not None else uri

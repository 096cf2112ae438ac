"""One conformance suite, run unchanged on every backend (file, mem, S3 on moto, GCS on
gcp-storage-emulator, Azure on Azurite): listing with small pages, stat, ranged reads,
a 64 MB multipart / resumable / block upload, atomic writes under failure, overwrite,
delete, and the one-line errors for a missing bucket, a missing object, denied access."""

from __future__ import annotations

import hashlib
import math
import os

import pytest

from curator import storage
from curator.testing.proxy import FaultProxy

MB = 1024 * 1024


def keys_under(prefix: str, **kw) -> list[str]:
    return [storage.relative(prefix, i.uri) for i in storage.list_objects(prefix, **kw)]


# ------------------------------------------------------------------------ basics
def test_write_read_stat_exists(backend):
    uri = backend.uri("videos/a.mp4")
    assert not storage.exists(uri)
    storage.write_bytes(uri, b"hello world")
    assert storage.read_bytes(uri) == b"hello world"
    info = storage.stat(uri)
    assert info.size == 11 and info.uri == uri and info.mtime is not None
    assert storage.exists(uri)
    storage.write_bytes(backend.uri("empty.bin"), b"")
    assert storage.read_bytes(backend.uri("empty.bin")) == b"" and storage.stat(backend.uri("empty.bin")).size == 0


def test_listing_paginates_filters_and_nests(backend):
    names = ["a/1.mp4", "a/2.MP4", "a/b/3.mp4", "a/b/c/4.txt", "a/5.mov", "a/b/c/d/6.mp4", "a/7.mp4",
             "ab/8.mp4", "z.mp4"]
    for n in names:
        storage.write_bytes(backend.uri(n), n.encode())
    store = backend.store
    before = store.counters["list"]
    under_a = keys_under(backend.uri("a/"), page_size=2)
    assert under_a == sorted(n[2:] for n in names if n.startswith("a/"))  # key order, nested keys
    pages = store.counters["list"] - before
    if backend.name in ("s3", "az"):
        assert pages == math.ceil(len(under_a) / 2)  # 7 objects, 2 a page
    elif backend.name == "gs":
        # gcp-storage-emulator ignores maxResults/pageToken and answers in one page (see
        # test_gcs_listing_sends_page_size); real GCS pages as requested.
        assert pages >= 1
    # suffix filter, case-insensitive, several suffixes
    assert keys_under(backend.uri("a/"), suffixes=[".mp4"], page_size=3) == ["1.mp4", "2.MP4", "7.mp4", "b/3.mp4",
                                                                             "b/c/d/6.mp4"]
    assert keys_under(backend.uri("a/"), suffixes=[".txt", ".mov"], page_size=2) == ["5.mov", "b/c/4.txt"]
    # a prefix that is not a "folder" matches key prefixes, like object stores do
    assert [storage.relative(backend.root, i.uri) for i in storage.list_objects(backend.uri("a"), page_size=2)] == \
        sorted(n for n in names if n.startswith("a"))
    assert list(storage.list_objects(backend.uri("nothing/"), page_size=2)) == []
    sizes = {storage.relative(backend.root, i.uri): i.size for i in storage.list_objects(backend.root, page_size=4)}
    assert sizes == {n: len(n) for n in names}


def test_ranged_reads(backend):
    data = bytes(range(256)) * 40  # 10240 bytes
    uri = backend.uri("r/data.bin")
    storage.write_bytes(uri, data)
    assert storage.read_range(uri, 0, 10) == data[:10]
    assert storage.read_range(uri, 5000, 5100) == data[5000:5100]
    assert storage.read_range(uri, 10000) == data[10000:]
    assert storage.read_range(uri, 10200, 99999) == data[10200:]  # end past the end: truncated
    assert storage.read_range(uri, 77, 77) == b""
    assert storage.read_range(uri, 10240) == b""  # at the end
    assert storage.read_range(uri, 20000) == b""  # past the end


def test_overwrite_replaces_whole_object(backend):
    uri = backend.uri("o/obj.bin")
    storage.write_bytes(uri, b"A" * 1000)
    storage.write_bytes(uri, b"B" * 10)
    assert storage.read_bytes(uri) == b"B" * 10
    assert storage.stat(uri).size == 10
    assert keys_under(backend.uri("o/")) == ["obj.bin"]


def test_delete(backend):
    uri = backend.uri("d/x.bin")
    storage.write_bytes(uri, b"x")
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)  # deleting a missing object is not an error
    assert keys_under(backend.uri("d/")) == []


def test_download_upload_and_local_copy(backend, tmp_path):
    data = os.urandom(3 * MB + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    uri = backend.uri("u/file.bin")
    storage.upload(str(src), uri)
    dst = tmp_path / "out" / "dst.bin"
    storage.download(uri, str(dst))
    assert dst.read_bytes() == data
    with storage.local_copy(uri) as path:
        assert open(path, "rb").read() == data
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["dst.bin"]  # no temp files left


# ------------------------------------------------------------------ large upload
@pytest.mark.slow
def test_64mb_multipart_upload(backend, tmp_path):
    """64 MB goes up in parts (S3 multipart, GCS resumable chunks, Azure staged blocks)."""
    data = os.urandom(64 * MB)
    digest = hashlib.sha256(data).hexdigest()
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    uri = backend.uri("big/video.mp4")
    store = backend.store
    parts0 = store.counters["part"]
    storage.upload(str(local), uri)
    assert storage.stat(uri).size == 64 * MB
    if backend.cloud:
        assert store.counters["part"] - parts0 == 4  # 16 MB parts
    if backend.name == "s3":
        assert backend.emulator.client().head_object(Bucket=backend.bucket, Key="big/video.mp4")["ETag"].endswith('-4"')
    if backend.name == "az":
        blocks = backend.emulator.client().get_blob_client(backend.bucket, "big/video.mp4").get_block_list("committed")
        assert len(blocks[0]) == 4
    out = tmp_path / "back.bin"
    storage.download(uri, str(out))
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    assert storage.read_range(uri, 16 * MB - 3, 16 * MB + 3) == data[16 * MB - 3:16 * MB + 3]
    # and from memory
    del data
    storage.write_bytes(uri, local.read_bytes()[::-1])
    assert storage.read_range(uri, 0, 4) == local.read_bytes()[-4:][::-1]


# --------------------------------------------------------------------- atomicity
def test_failure_inside_open_write_publishes_nothing(backend):
    old = backend.uri("atomic/old.bin")
    storage.write_bytes(old, b"old contents")
    new = backend.uri("atomic/new.bin")
    for uri in (old, new):
        with pytest.raises(RuntimeError, match="midway"):
            with storage.open_write(uri) as fh:
                fh.write(b"half of the new contents")
                raise RuntimeError("midway")
    assert storage.read_bytes(old) == b"old contents"
    assert not storage.exists(new)
    assert keys_under(backend.uri("atomic/")) == ["old.bin"]
    with storage.open_write(new) as fh:
        fh.write(b"complete")
    assert storage.read_bytes(new) == b"complete"


def _part_request(name: str):
    """Matches the requests that carry the parts of a multipart / resumable / block upload."""
    if name == "s3":
        return lambda r: r.method == "PUT" and "partNumber=" in r.path
    if name == "az":
        return lambda r: r.method == "PUT" and "comp=block" in r.path and "blocklist" not in r.path
    return lambda r: r.method == "PUT" and "upload_id=" in r.path  # GCS resumable chunks


@pytest.mark.slow
def test_upload_killed_midway_publishes_nothing(cloud, tmp_path):
    """The connection dies on the third part and stays dead: the upload fails, nothing new
    is visible under the name, the old object is intact, and S3 has no dangling upload."""
    uri = cloud.uri("killed/video.mp4")
    storage.write_bytes(uri, b"old object")
    data = os.urandom(21 * MB)  # two 5 MB parts get through, then the link dies
    with FaultProxy(cloud.emulator.port) as proxy:
        top = {"multipart_threshold_mb": 5, "multipart_chunk_mb": 5, "concurrency": 1}
        cfg: dict = {"s3": {"s3": {"endpoint_url": proxy.endpoint}},
                     "gs": {"gcs": {"endpoint": proxy.endpoint}}, "az": {}}[cloud.name]
        if cloud.name == "az":
            os.environ["CURATOR_TEST_AZ_PROXY"] = cloud.emulator.connection_string().replace(
                cloud.emulator.endpoint, proxy.endpoint)
            cfg = {"azure": {"connection_string_env": "CURATOR_TEST_AZ_PROXY"}}
        cloud.configure(**top, **cfg)
        is_part = _part_request(cloud.name)
        seen = {"n": 0}

        def third_and_later(r):
            if not is_part(r):
                return False
            seen["n"] += 1
            return seen["n"] > 2

        proxy.fail(when=third_and_later, drop=True, times=None)
        with pytest.raises(storage.TransientError) as err:
            storage.write_bytes(uri, data)
        assert "\n" not in str(err.value) and cloud.uri("killed/video.mp4") in str(err.value)
        assert seen["n"] >= 3
    os.environ.pop("CURATOR_TEST_AZ_PROXY", None)
    cloud.configure()
    assert storage.read_bytes(uri) == b"old object"
    assert keys_under(cloud.uri("killed/")) == ["video.mp4"]
    if cloud.name == "s3":
        ups = cloud.emulator.client().list_multipart_uploads(Bucket=cloud.bucket)
        assert not ups.get("Uploads"), "the failed multipart upload was not aborted"


# ------------------------------------------------------------------------ errors
def test_missing_object_error(backend, tmp_path):
    uri = backend.uri("no/such/object.mp4")
    for call in (storage.stat, storage.read_bytes, lambda u: storage.read_range(u, 0, 10),
                 lambda u: storage.download(u, str(tmp_path / "x"))):
        with pytest.raises(storage.NotFound) as err:
            call(uri)
        assert not isinstance(err.value, storage.BucketNotFound)
        assert str(err.value) == f"no such object: {storage.display(uri)}"
    assert not (tmp_path / "x").exists()


def test_missing_bucket_error(backend, tmp_path):
    if backend.name == "file":
        pytest.skip("a local folder has no bucket: writes create folders, reads give 'no such object'")
    uri = backend.missing_bucket_uri()
    bucket = uri.rsplit("/", 2)[0]
    calls = {"stat": storage.stat, "read": storage.read_bytes, "list": lambda u: list(storage.list_objects(u)),
             "write": lambda u: storage.write_bytes(u, b"x"),
             "download": lambda u: storage.download(u, str(tmp_path / "x"))}
    for name, call in calls.items():
        with pytest.raises(storage.BucketNotFound) as err:
            call(uri)
        msg = str(err.value)
        kind = "container" if backend.name == "az" else "bucket"
        assert msg.startswith(f"no such {kind}: {bucket} "), (name, msg)
        assert "\n" not in msg


def test_access_denied_error(backend, tmp_path, monkeypatch):
    """Each emulator's own way to refuse: moto with IAM enforcement and a user without
    permissions, Azurite with a wrong account key. gcp-storage-emulator has no
    authorisation at all, so its 403 comes from a proxy answering as GCS does."""
    if backend.name in ("file", "mem"):
        pytest.skip("file: tests run as root here, who may read anything; mem: no permissions")
    uri = backend.uri("secret/video.mp4")
    storage.write_bytes(uri, b"payload")
    if backend.name == "s3":
        moto = backend.emulator
        key_id, secret = moto.iam_user(f"nobody{os.getpid()}{bucket_suffix(backend)}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        storage.reset_stores()
        moto.enforce_auth(True)
        try:
            _assert_denied(uri)
        finally:
            moto.enforce_auth(False)
    elif backend.name == "az":
        bad = "QUJD" * 22
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", backend.emulator.connection_string(key=bad))
        storage.reset_stores()
        _assert_denied(uri)
    else:
        from curator.testing.proxy import GCS_403

        with FaultProxy(backend.emulator.port) as proxy:
            proxy.fail(status=403, body=GCS_403, content_type="application/json", times=None)
            backend.configure(gcs={"endpoint": proxy.endpoint, "project": backend.emulator.project})
            _assert_denied(uri)
            # stat, read, list: one request each, none retried (google-cloud-storage may also
            # fetch bucket metadata in the background for its telemetry: not counted)
            assert len([r for r in proxy.seen("GET") if "/o" in r.path]) == 3
    storage.reset_stores()


def bucket_suffix(backend) -> str:
    return backend.bucket[-6:]


def _assert_denied(uri: str) -> None:
    for call in (storage.stat, storage.read_bytes, lambda u: list(storage.list_objects(u))):
        with pytest.raises(storage.AccessDenied) as err:
            call(uri)
        msg = str(err.value)
        assert msg.startswith("access denied: cannot ") and storage.display(uri) in msg, msg
        assert "\n" not in msg

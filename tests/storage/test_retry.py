"""Retries: backoff with jitter on throttling, 5xx and dropped connections, never on 4xx;
resumed downloads and uploads. Unit tests of the policy, then each cloud SDK behind a
fault-injecting proxy in front of its emulator."""

from __future__ import annotations

import logging
import os

import pytest

from curator import storage
from curator.storage.base import AccessDenied, NotFound, StorageError, TransientError
from curator.storage.retry import RetryPolicy, make_error, redact, retryable_status
from curator.testing.proxy import AZ_BUSY, GCS_503, S3_DENIED, S3_SLOWDOWN, FaultProxy

MB = 1024 * 1024


# ---------------------------------------------------------------------- the policy
@pytest.mark.unit
def test_backoff_doubles_with_jitter_and_a_cap():
    lo = RetryPolicy(backoff_s=0.2, max_backoff_s=1.0, rand=lambda: 0.0)
    hi = RetryPolicy(backoff_s=0.2, max_backoff_s=1.0, rand=lambda: 0.999999)
    assert [round(lo.delay(n), 3) for n in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert [round(hi.delay(n), 3) for n in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    import random

    rng = random.Random(1)
    p = RetryPolicy(backoff_s=1.0, max_backoff_s=100, rand=rng.random)
    delays = {round(p.delay(3), 6) for _ in range(20)}
    assert len(delays) > 10 and all(4.0 <= d < 8.0 for d in delays)  # jittered within [d/2, d)


def _policy(retries: int = 3) -> tuple[RetryPolicy, list[float]]:
    slept: list[float] = []
    return RetryPolicy(retries=retries, backoff_s=0.1, sleep=slept.append, rand=lambda: 0.5), slept


def _translate(exc: BaseException, op: str, uri: str) -> StorageError:
    code = int(str(exc))
    if code == 404:
        return make_error(NotFound, uri, op)
    if code == 403:
        return make_error(AccessDenied, uri, op, "HTTP 403")
    return make_error(TransientError if retryable_status(code) else StorageError, uri, op, f"HTTP {code}")


@pytest.mark.unit
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 408])
def test_retries_throttling_and_5xx_then_succeeds(status, caplog):
    policy, slept = _policy()
    answers = [RuntimeError(str(status)), RuntimeError(str(status)), "ok"]

    def fn():
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    with caplog.at_level(logging.WARNING, logger="curator.storage"):
        assert policy.call(fn, op="read", uri="s3://b/k", translate=_translate) == "ok"
    assert slept == pytest.approx([0.075, 0.15])
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2


@pytest.mark.unit
@pytest.mark.parametrize("status,cls", [(400, StorageError), (403, AccessDenied), (404, NotFound),
                                        (409, StorageError), (412, StorageError)])
def test_never_retries_4xx(status, cls):
    policy, slept = _policy()
    calls = []

    def fn():
        calls.append(1)
        raise RuntimeError(str(status))

    with pytest.raises(cls) as err:
        policy.call(fn, op="read", uri="s3://b/k", translate=_translate)
    assert len(calls) == 1 and slept == []
    assert err.value.__cause__ is None and err.value.__suppress_context__  # the SDK error is not chained


@pytest.mark.unit
def test_gives_up_after_the_configured_retries():
    policy, slept = _policy(retries=2)
    calls = []

    def fn():
        calls.append(1)
        raise RuntimeError("503")

    with pytest.raises(TransientError, match=r"read s3://b/k failed \(HTTP 503\); gave up after 3 attempts"):
        policy.call(fn, op="read", uri="s3://b/k", translate=_translate)
    assert len(calls) == 3 and len(slept) == 2


@pytest.mark.unit
def test_redact_removes_secrets():
    text = ("GET https://acct.blob.core.windows.net/c/k?sv=2021&sig=SeCrEt%3D&se=2030 failed; "
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=S3cr3tKey==;EndpointSuffix=x "
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=abcdef "
            "https://user:hunter2@example.com/x X-Amz-Signature=deadbeef")
    out = redact(text)
    for secret in ("SeCrEt", "S3cr3tKey", "AKIA", "abcdef", "hunter2", "deadbeef"):
        assert secret not in out, (secret, out)
    assert "acct.blob.core.windows.net/c/k" in out and "\n" not in redact("a\nb")


# ------------------------------------------------------------ the SDKs, with faults
BODIES = {"s3": (S3_SLOWDOWN, "application/xml"), "az": (AZ_BUSY, "application/xml"),
          "gs": (GCS_503, "application/json")}


def _through(cloud, proxy: FaultProxy, **top) -> None:
    """Point the cloud's store at the proxy instead of the emulator."""
    if cloud.name == "s3":
        top["s3"] = {"endpoint_url": proxy.endpoint}
    elif cloud.name == "gs":
        top["gcs"] = {"endpoint": proxy.endpoint}
    else:
        os.environ["CURATOR_TEST_AZ_PROXY"] = cloud.emulator.connection_string().replace(
            cloud.emulator.endpoint, proxy.endpoint)
        top["azure"] = {"connection_string_env": "CURATOR_TEST_AZ_PROXY"}
    top.setdefault("retries", 3)
    cloud.configure(**top)


def _is_object_get(r) -> bool:
    """A GET of one of the objects these tests use (not a listing, not bucket metadata)."""
    path = r.path.split("?", 1)[0]
    return r.method == "GET" and path.endswith(("/t/obj.bin", "/t/big.bin", "%2Fobj.bin", "%2Fbig.bin"))


@pytest.mark.integration
def test_throttled_reads_are_retried(cloud, caplog):
    uri = cloud.uri("t/obj.bin")
    storage.write_bytes(uri, b"payload")
    body, ctype = BODIES[cloud.name]
    with FaultProxy(cloud.emulator.port) as proxy:
        _through(cloud, proxy)
        proxy.fail(status=503, body=body, content_type=ctype, times=2, when=_is_object_get)
        with caplog.at_level(logging.WARNING, logger="curator.storage"):
            assert storage.read_bytes(uri) == b"payload"
        assert len([r for r in proxy.requests if _is_object_get(r)]) == 3
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2


@pytest.mark.integration
def test_dropped_connections_are_retried(cloud):
    uri = cloud.uri("t/obj.bin")
    with FaultProxy(cloud.emulator.port) as proxy:
        _through(cloud, proxy)
        proxy.fail(drop=True, times=1, when=lambda r: r.method == "PUT")
        storage.write_bytes(uri, b"written through a flaky link")
        proxy.fail(drop=True, times=1, when=_is_object_get)
        assert storage.read_bytes(uri) == b"written through a flaky link"


@pytest.mark.integration
def test_client_errors_are_not_retried(cloud):
    uri = cloud.uri("t/obj.bin")
    storage.write_bytes(uri, b"x")
    with FaultProxy(cloud.emulator.port) as proxy:
        _through(cloud, proxy)
        proxy.fail(status=403, body=S3_DENIED, times=None, when=_is_object_get)
        with pytest.raises(AccessDenied):
            storage.read_bytes(uri)
        assert len([r for r in proxy.requests if _is_object_get(r)]) == 1


@pytest.mark.integration
def test_persistent_throttling_gives_up_with_one_line(cloud):
    uri = cloud.uri("t/obj.bin")
    storage.write_bytes(uri, b"x")
    body, ctype = BODIES[cloud.name]
    with FaultProxy(cloud.emulator.port) as proxy:
        _through(cloud, proxy, retries=2)
        proxy.fail(status=503, body=body, content_type=ctype, times=None, when=_is_object_get)
        with pytest.raises(TransientError) as err:
            storage.read_bytes(uri)
        assert len([r for r in proxy.requests if _is_object_get(r)]) == 3
    msg = str(err.value)
    assert msg.startswith(f"read {uri} failed (HTTP 503") and msg.endswith("gave up after 3 attempts"), msg


@pytest.mark.integration
def test_download_resumes_after_a_cut(cloud, tmp_path):
    """The connection dies 2 MB into a response: the download goes on from the bytes it
    has (S3, GCS: one streamed GET; Azure: the SDK's 4 MB range GETs after a first GET of
    one part), and the file is exact."""
    data = os.urandom(10 * MB + 123)
    uri = cloud.uri("t/big.bin")
    storage.write_bytes(uri, data)
    with FaultProxy(cloud.emulator.port) as proxy:
        _through(cloud, proxy, multipart_chunk_mb=5)
        nth = {"n": 0}

        def cut_here(r):  # the only GET on S3 and GCS; the second (first 4 MB range) on Azure
            nth["n"] += _is_object_get(r)
            return _is_object_get(r) and nth["n"] == (2 if cloud.name == "az" else 1)

        proxy.fail(cut_after=2 * MB, times=1, when=cut_here)
        storage.download(uri, str(tmp_path / "out.bin"))
        gets = [r for r in proxy.requests if _is_object_get(r)]
    assert (tmp_path / "out.bin").read_bytes() == data
    ranges = [r.headers.get("range") or r.headers.get("x-ms-range") or "bytes=0-" for r in gets]
    starts = [int(x.split("=")[1].split("-")[0]) for x in ranges]
    if cloud.name == "az":
        assert starts[:3] == [0, 5 * MB, 5 * MB], ranges  # the cut chunk is fetched again
    else:
        assert len(gets) == 2 and 1 * MB <= starts[1] <= 2 * MB, ranges  # not from the start


@pytest.mark.integration
def test_large_upload_survives_a_failed_part(cloud):
    """One part / chunk / block fails (a dropped connection): only it is sent again."""
    data = os.urandom(16 * MB)
    uri = cloud.uri("t/parts.bin")
    with FaultProxy(cloud.emulator.port) as proxy:
        _through(cloud, proxy, multipart_threshold_mb=5, multipart_chunk_mb=5, concurrency=2)
        def is_part(r):
            return r.method == "PUT" and ("partNumber=" in r.path or "comp=block&" in r.path + "&"
                                          or "upload_id=" in r.path)

        n = {"parts": 0}

        def second_part(r):
            n["parts"] += is_part(r)
            return is_part(r) and n["parts"] == 2

        proxy.fail(drop=True, times=1, when=second_part)
        storage.write_bytes(uri, data)
        parts = [r for r in proxy.requests if is_part(r)]
    assert storage.read_bytes(uri) == data
    assert 5 <= len(parts) <= 6  # 4 parts + the one sent again (+ a GCS status query)

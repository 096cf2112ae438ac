"""Amazon S3 and S3-compatible stores (MinIO, Cloudflare R2, moto) through boto3.

Credentials come from boto3's standard chain: ``storage.s3.profile`` (or ``AWS_PROFILE``),
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, web identity, SSO,
the container / instance role. ``storage.s3.endpoint_url`` (or ``AWS_ENDPOINT_URL``)
points at an S3-compatible service.

Writes below the multipart threshold are one ``PutObject`` (atomic). Larger ones are a
multipart upload whose parts go up ``storage.concurrency`` at a time; the object appears
only at ``CompleteMultipartUpload``, and any failure aborts the upload so no parts are
left behind.
"""

from __future__ import annotations

from typing import Any, Iterator

from .base import AccessDenied, ObjectInfo, StorageError, TransientError
from .remote import Page, RemoteStore, Source, run_parts
from .retry import classify_http, exc_name, is_connection_error, log, make_error
from .uri import split

#: streamed downloads write (and can resume) in pieces of this size
READ_CHUNK = 1024 * 1024


class S3Store(RemoteStore):
    scheme = "s3"

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import ProfileNotFound

        cfg = self.config.s3
        try:
            session = boto3.session.Session(profile_name=cfg.profile, region_name=cfg.region)
        except ProfileNotFound:
            raise StorageError(f"AWS profile {cfg.profile!r} (storage.s3.profile) is not in the AWS config files") from None
        conf = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},  # curator's RetryPolicy retries
            connect_timeout=self.config.timeout_s,
            read_timeout=self.config.timeout_s,
            max_pool_connections=max(10, 2 * self.config.concurrency + 4),
            s3={"addressing_style": cfg.addressing_style},
        )
        return session.client("s3", endpoint_url=cfg.endpoint_url, config=conf)

    # ------------------------------------------------------------------ errors
    def _translate(self, exc: BaseException, op: str, uri: str) -> StorageError:
        from botocore.exceptions import (
            ClientError,
            HTTPClientError,
            IncompleteReadError,
            NoCredentialsError,
            PartialCredentialsError,
            ResponseStreamingError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return classify_http(status, str(exc.response.get("Error", {}).get("Code") or status or ""), uri, op)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return AccessDenied(f"no usable AWS credentials for {split(uri)[0]}://{split(uri)[1]}: set AWS_PROFILE "
                                "(or storage.s3.profile), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use an instance role")
        if isinstance(exc, (HTTPClientError, BotoConnectionError, ResponseStreamingError, IncompleteReadError)) \
                or is_connection_error(exc):
            return make_error(TransientError, uri, op, exc_name(exc))
        return make_error(StorageError, uri, op, exc_name(exc))

    # ----------------------------------------------------------------- listing
    def _list_page(self, bucket: str, prefix: str, page_size: int, token: str | None) -> Page:
        kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        if token:
            kw["ContinuationToken"] = token
        page = self.client.list_objects_v2(**kw)
        items = [(o["Key"], int(o["Size"]), o["LastModified"].timestamp(), str(o.get("ETag", "")).strip('"') or None)
                 for o in page.get("Contents", ())]
        return items, page.get("NextContinuationToken") if page.get("IsTruncated") else None

    # ---------------------------------------------------------------- metadata
    def _bucket_exists(self, uri: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=split(uri)[1])
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise

    def _head(self, uri: str) -> ObjectInfo:
        _, bucket, key = split(uri)
        h = self.client.head_object(Bucket=bucket, Key=key)
        return ObjectInfo(uri, int(h["ContentLength"]), h["LastModified"].timestamp(),
                          str(h.get("ETag", "")).strip('"') or None)

    # ------------------------------------------------------------------- reads
    def _get(self, uri: str, start: int, end: int | None) -> bytes:
        from botocore.exceptions import ClientError

        _, bucket, key = split(uri)
        kw: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if start or end is not None:
            kw["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            resp = self.client.get_object(**kw)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""  # start at or past the end, as a file read there
            raise
        body = resp["Body"]
        try:
            # not `with body:` — botocore's StreamingBody.__exit__ swallows the
            # IncompleteReadError of a connection that died mid-body
            return body.read()
        finally:
            body.close()

    def _open(self, uri: str, start: int, version: Any) -> tuple[Iterator[bytes], Any]:
        from botocore.exceptions import ClientError

        _, bucket, key = split(uri)
        kw: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if start:
            kw["Range"] = f"bytes={start}-"
        if version:
            kw["IfMatch"] = version
        try:
            resp = self.client.get_object(**kw)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return iter(()), version
            raise

        def chunks() -> Iterator[bytes]:
            body = resp["Body"]
            try:  # not `with body:` (see _get)
                while True:
                    b = body.read(READ_CHUNK)
                    if not b:
                        return
                    yield b
            finally:
                body.close()

        return chunks(), resp.get("ETag")

    # ------------------------------------------------------------------ writes
    def _put(self, uri: str, data: bytes) -> None:
        _, bucket, key = split(uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def _upload_parts(self, uri: str, src: Source) -> None:
        _, bucket, key = split(uri)
        upload_id = self._call(lambda: self.client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"],
                               "start a multipart upload of", uri, "start")
        try:
            def part(n: int, off: int, length: int) -> dict[str, Any]:
                data = src.read(off, length)
                etag = self._call(lambda: self.client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                                                  PartNumber=n, Body=data)["ETag"],
                                  f"upload part {n} of", uri, "part")
                return {"PartNumber": n, "ETag": etag}

            parts = run_parts(part, src.parts(self.multipart_chunk), self.config.concurrency)
            self._call(lambda: self._complete(bucket, key, upload_id, parts, src.size),
                       "complete the multipart upload of", uri, "commit")
        except BaseException:
            self._abort(bucket, key, upload_id, uri)
            raise

    def _complete(self, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], size: int) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except ClientError as exc:
            # A retried Complete whose first attempt went through (its answer was lost)
            # finds the upload gone; the object is then there with our size.
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                head = self.client.head_object(Bucket=bucket, Key=key)
                if int(head["ContentLength"]) == size and "-" in str(head.get("ETag", "")):
                    return
            raise

    def _abort(self, bucket: str, key: str, upload_id: str, uri: str) -> None:
        try:
            self._call(lambda: self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
                       "abort the multipart upload of", uri, "abort")
        except StorageError as exc:
            # Not fatal: nothing was published. A bucket lifecycle rule for incomplete
            # multipart uploads removes the parts.
            log.warning("%s", exc)

    # ------------------------------------------------------- conditional writes
    def _get_versioned(self, uri: str) -> tuple[bytes, str]:
        _, bucket, key = split(uri)
        resp = self.client.get_object(Bucket=bucket, Key=key)
        body = resp["Body"]
        try:  # not `with body:` (see _get)
            data = body.read()
        finally:
            body.close()
        return data, str(resp["ETag"]).strip('"')

    def _put_if(self, uri: str, data: bytes, version: str | None) -> str:
        # S3 conditional writes (2024): If-None-Match: * creates only; If-Match replaces
        # only that ETag. 412 PreconditionFailed, or 409 ConditionalRequestConflict while
        # another conditional write to the key is in flight.
        _, bucket, key = split(uri)
        cond = {"IfNoneMatch": "*"} if version is None else {"IfMatch": f'"{version}"'}
        resp = self.client.put_object(Bucket=bucket, Key=key, Body=data, **cond)
        return str(resp["ETag"]).strip('"')

    # ------------------------------------------------------------------ delete
    def _delete(self, uri: str) -> None:
        _, bucket, key = split(uri)
        self.client.delete_object(Bucket=bucket, Key=key)

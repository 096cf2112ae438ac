"""Azure Blob Storage through azure-storage-blob.

URIs: ``az://container/key``; ``abfs[s]://container@account.dfs.core.windows.net/key``
is accepted and means the same blob (the account must be the configured one).

Credentials, first match wins:

1. a connection string in the environment variable named by
   ``storage.azure.connection_string_env`` (default ``AZURE_STORAGE_CONNECTION_STRING``);
2. ``storage.azure.account_url`` plus an account key from the variable named by
   ``storage.azure.account_key_env`` (``AZURE_STORAGE_KEY``);
3. ``account_url`` plus a SAS token from ``storage.azure.sas_token_env``
   (``AZURE_STORAGE_SAS_TOKEN``);
4. ``account_url`` with ``DefaultAzureCredential`` (managed identity, workload identity,
   ``az login``, environment service principal).

Only the *names* of the variables are configuration; their values never reach a config
file, a manifest or a log line.

Writes below the multipart threshold are one Put Blob (atomic). Larger ones stage blocks
(``storage.concurrency`` at a time) and then commit the block list: the blob appears, or
is replaced, only at the commit; staged blocks of a failed upload are never visible and
Azure discards uncommitted blocks after a week.
"""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any, Iterator
from urllib.parse import urlsplit

from .base import AccessDenied, ObjectInfo, StorageError, TransientError
from .remote import Page, RemoteStore, Source, run_parts
from .retry import BUCKET_CODES, classify_http, exc_name, is_connection_error, make_error
from .uri import split


def account_from_url(url: str) -> str | None:
    """The account of https://ACCOUNT.blob.core.windows.net or of a path-style emulator URL
    (http://127.0.0.1:10000/ACCOUNT)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path_style = host == "localhost" or ":" in host or host.replace(".", "").isdigit() or "." not in host
    if not path_style:
        return host.split(".", 1)[0]
    path = parts.path.strip("/")
    return path.split("/", 1)[0] if path else None


def account_from_connection_string(conn: str) -> str | None:
    fields = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    if fields.get("AccountName"):
        return fields["AccountName"]
    endpoint = fields.get("BlobEndpoint")
    return account_from_url(endpoint) if endpoint else None


class AzureStore(RemoteStore):
    scheme = "az"

    def account_name(self) -> str | None:
        """The configured storage account, without making a client (None if unknown)."""
        cfg = self.config.azure
        conn = os.environ.get(cfg.connection_string_env)
        if conn:
            return account_from_connection_string(conn)
        return account_from_url(cfg.account_url) if cfg.account_url else None

    def _make_client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        cfg = self.config.azure
        kw: dict[str, Any] = dict(
            retry_total=0,  # curator's RetryPolicy retries
            connection_timeout=self.config.timeout_s,
            read_timeout=self.config.timeout_s,
            max_single_put_size=self.multipart_threshold,
            max_block_size=self.multipart_chunk,
            # downloads: a first GET of up to one part, then 4 MiB ranges (the SDK's chunk;
            # a download that dies resumes at the start of the chunk it was in)
            max_single_get_size=self.multipart_chunk,
        )
        conn = os.environ.get(cfg.connection_string_env)
        if conn:
            try:
                return BlobServiceClient.from_connection_string(conn, **kw)
            except ValueError:
                raise StorageError(f"${cfg.connection_string_env} does not hold a valid Azure connection string") from None
        if not cfg.account_url:
            raise StorageError(f"no Azure storage account configured: set storage.azure.account_url "
                               f"(https://ACCOUNT.blob.core.windows.net) or ${cfg.connection_string_env}")
        key = os.environ.get(cfg.account_key_env)
        sas = os.environ.get(cfg.sas_token_env)
        credential: Any
        if key:
            from azure.core.credentials import AzureNamedKeyCredential

            name = account_from_url(cfg.account_url)
            if not name:
                raise StorageError(f"cannot tell the account name from storage.azure.account_url={cfg.account_url}")
            credential = AzureNamedKeyCredential(name, key)
        elif sas:
            from azure.core.credentials import AzureSasCredential

            credential = AzureSasCredential(sas.lstrip("?"))
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return BlobServiceClient(cfg.account_url, credential=credential, **kw)

    def _blob(self, uri: str) -> Any:
        _, container, key = split(uri)
        return self.client.get_blob_client(container, key)

    # ------------------------------------------------------------------ errors
    def _translate(self, exc: BaseException, op: str, uri: str) -> StorageError:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            return classify_http(exc.status_code, str(getattr(exc, "error_code", None) or ""), uri, op)
        if isinstance(exc, ClientAuthenticationError):  # e.g. no credential found by DefaultAzureCredential
            return make_error(AccessDenied, uri, op, "no usable Azure credential")
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)) or is_connection_error(exc):
            return make_error(TransientError, uri, op, exc_name(exc))
        return make_error(StorageError, uri, op, exc_name(exc))

    # ----------------------------------------------------------------- listing
    def _list_page(self, container: str, prefix: str, page_size: int, token: str | None) -> Page:
        pages = self.client.get_container_client(container).list_blobs(
            name_starts_with=prefix or None, results_per_page=page_size,
            timeout=int(self.config.timeout_s)).by_page(continuation_token=token)
        try:
            page = next(pages)
        except StopIteration:
            return [], None
        items = [(b.name, int(b.size or 0), b.last_modified.timestamp() if b.last_modified else None, b.etag)
                 for b in page]
        return items, pages.continuation_token

    # ---------------------------------------------------------------- metadata
    def _bucket_exists(self, uri: str) -> bool:
        return self.client.get_container_client(split(uri)[1]).exists()

    def _head(self, uri: str) -> ObjectInfo:
        p = self._blob(uri).get_blob_properties()
        return ObjectInfo(uri, int(p.size), p.last_modified.timestamp() if p.last_modified else None, p.etag)

    # ------------------------------------------------------------------- reads
    def _get(self, uri: str, start: int, end: int | None) -> bytes:
        from azure.core.exceptions import HttpResponseError

        kw: dict[str, Any] = {"max_concurrency": 1}
        if start or end is not None:
            kw["offset"] = start
            if end is not None:
                kw["length"] = end - start
        try:
            return self._blob(uri).download_blob(**kw).readall()
        except HttpResponseError as exc:
            if exc.status_code == 416:
                return b""
            raise

    def _open(self, uri: str, start: int, version: Any) -> tuple[Iterator[bytes], Any]:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        kw: dict[str, Any] = {"max_concurrency": 1}
        if start:
            kw["offset"] = start
        if version:
            kw.update(etag=version, match_condition=MatchConditions.IfNotModified)
        try:
            downloader = self._blob(uri).download_blob(**kw)
        except HttpResponseError as exc:
            if exc.status_code == 416:
                return iter(()), version
            raise
        return downloader.chunks(), version or downloader.properties.etag

    # ------------------------------------------------------------------ writes
    def _put(self, uri: str, data: bytes) -> None:
        self._blob(uri).upload_blob(data, overwrite=True, max_concurrency=1)

    def _upload_parts(self, uri: str, src: Source) -> None:
        blob = self._blob(uri)
        # Block ids must have the same length within a blob; a fresh prefix per upload keeps
        # a retried or concurrent upload from committing another upload's blocks.
        session = uuid.uuid4().hex

        def block_id(n: int) -> str:
            return base64.b64encode(f"{session}-{n:06d}".encode()).decode()

        def stage(n: int, off: int, length: int) -> str:
            data = src.read(off, length)
            bid = block_id(n)
            self._call(lambda: blob.stage_block(bid, data, length=len(data)), f"stage block {n} of", uri, "part")
            return bid

        from azure.storage.blob import BlobBlock

        ids = run_parts(stage, src.parts(self.multipart_chunk), self.config.concurrency)
        self._call(lambda: blob.commit_block_list([BlobBlock(block_id=i) for i in ids]),
                   "commit the blocks of", uri, "commit")

    # ------------------------------------------------------- conditional writes
    def _get_versioned(self, uri: str) -> tuple[bytes, str]:
        downloader = self._blob(uri).download_blob(max_concurrency=1)
        return downloader.readall(), str(downloader.properties.etag)

    def _put_if(self, uri: str, data: bytes, version: str | None) -> str:
        # Azure: If-None-Match: * (overwrite=False) creates only; If-Match: ETag replaces only
        # that version (412 ConditionNotMet; 409 BlobAlreadyExists when creating).
        from azure.core import MatchConditions

        kw: dict[str, Any] = {"overwrite": version is not None, "max_concurrency": 1}
        if version is not None:
            kw.update(etag=version, match_condition=MatchConditions.IfNotModified)
        resp = self._blob(uri).upload_blob(data, **kw)
        return str(resp["etag"])

    # ------------------------------------------------------------------ delete
    def _delete(self, uri: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._blob(uri).delete_blob()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) in BUCKET_CODES:
                raise

"""Backend details the conformance suite cannot see: URI forms, the Azure account of
abfs URIs, what the GCS client asks for when it lists, configuration guards."""

from __future__ import annotations

import pytest

from curator import storage
from curator.storage.azure import account_from_connection_string, account_from_url
from curator.testing.fixtures import bucket_name, storage_config
from curator.testing.proxy import FaultProxy


@pytest.mark.unit
def test_uri_forms():
    n = storage.normalize
    assert n("s3a://b/k") == "s3://b/k" and n("gcs://b/k") == "gs://b/k" and n("azure://c/k") == "az://c/k"
    assert n("/tmp/x/") == "file:///tmp/x/" and n("/tmp/x") == "file:///tmp/x" and n("/") == "file:///"
    assert storage.join("s3://b/videos/", "a", "b.mp4") == "s3://b/videos/a/b.mp4"
    assert storage.relative("gs://b/videos/", "gs://b/videos/x/y.mp4") == "x/y.mp4"
    with pytest.raises(ValueError):
        storage.join("s3://b/", "../escape")


@pytest.mark.unit
def test_abfs_account_must_be_the_configured_one(monkeypatch):
    uri = "abfss://raw@myacct.dfs.core.windows.net/videos/a.mp4"
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    storage.configure(storage.StorageConfig(azure={"account_url": "https://myacct.blob.core.windows.net"}))
    try:
        assert storage.normalize(uri) == "az://raw/videos/a.mp4"
        storage.configure(storage.StorageConfig(azure={"account_url": "https://other.blob.core.windows.net"}))
        with pytest.raises(storage.StorageError, match="names Azure account 'myacct', but storage.azure is configured "
                                                       "for account 'other'"):
            storage.normalize(uri)
        storage.configure(None)
        with pytest.raises(storage.StorageError, match="no account is configured"):
            storage.normalize(uri)
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                           "DefaultEndpointsProtocol=https;AccountName=myacct;AccountKey=a2V5;EndpointSuffix=core.windows.net")
        storage.reset_stores()
        assert storage.normalize(uri) == "az://raw/videos/a.mp4"
    finally:
        storage.configure(None)
        storage.reset_stores()


@pytest.mark.unit
def test_azure_account_names():
    assert account_from_url("https://acct.blob.core.windows.net") == "acct"
    assert account_from_url("http://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"
    assert account_from_url("http://azurite:10000/devstoreaccount1") == "devstoreaccount1"
    assert account_from_connection_string("BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;AccountKey=x") == \
        "devstoreaccount1"


@pytest.mark.unit
def test_missing_azure_account_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    storage.configure(storage.StorageConfig())
    storage.reset_stores()
    try:
        with pytest.raises(storage.StorageError, match="no Azure storage account configured: set storage.azure.account_url"):
            storage.stat("az://c/k")
    finally:
        storage.configure(None)


@pytest.mark.integration
def test_gcs_listing_asks_for_the_page_size(gcs_emulator):
    """gcp-storage-emulator answers every listing in one page, so the conformance suite
    cannot count GCS pages; this checks the requests carry the page size."""
    bucket = bucket_name()
    gcs_emulator.create_bucket(bucket)
    with FaultProxy(gcs_emulator.port) as proxy:
        storage.configure(storage_config(gcs_emulator, gcs={"endpoint": proxy.endpoint}))
        for i in range(3):
            storage.write_bytes(f"gs://{bucket}/p/{i}.mp4", b"x")
        assert len(list(storage.list_objects(f"gs://{bucket}/p/", page_size=2))) == 3
        lists = [r.path for r in proxy.seen("GET") if f"/b/{bucket}/o?" in r.path]
    storage.configure(None)
    assert lists and all("maxResults=2" in p and "prefix=p%2F" in p for p in lists), lists

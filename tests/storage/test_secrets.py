"""No credential, key, SAS token or signed URL in an error message or a log line.

Each test plants a recognisable fake secret where the SDK's credential chain picks it
up (environment variables, a connection string, a credentials file, a config override),
makes the store fail every way it can (missing bucket, missing object, denied access,
an unreachable endpoint) with logging at DEBUG, and looks for the secret."""

from __future__ import annotations

import json
import logging

import pytest

from curator import storage
from curator.config import ConfigError, PipelineConfig
from curator.testing.emulators import free_port
from curator.testing.fixtures import bucket_name, storage_config

PLANTED = "PLANTEDsecretZ9x8c7v6b5n4m3"
PLANTED_B64 = "UExBTlRFRHNlY3JldFo5eDhjN3Y2YjVuNG0zUExBTlRFRA=="  # a well-formed but wrong key


def _failures(root: str) -> list[str]:
    """Messages of every failure we can provoke under `root` ("scheme://bucket/")."""
    scheme = root.split("://")[0]
    missing_bucket = f"{scheme}://nobucket-{bucket_name()}/k.mp4"
    out = []
    for call, uri in [(storage.stat, root + "missing.mp4"), (storage.read_bytes, root + "missing.mp4"),
                      (storage.stat, missing_bucket), (lambda u: list(storage.list_objects(u)), missing_bucket),
                      (lambda u: storage.write_bytes(u, b"x"), missing_bucket)]:
        try:
            call(uri)
        except storage.StorageError as exc:
            out.append(str(exc))
    return out


def _assert_clean(messages: list[str], caplog, *secrets: str) -> None:
    assert messages, "nothing failed: the test provoked no error"
    text = "\n".join(messages) + "\n" + caplog.text
    for s in secrets:
        assert s not in text


@pytest.mark.integration
def test_s3_credentials_stay_out_of_errors_and_logs(moto_s3, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPLANTEDKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED)
    monkeypatch.setenv("AWS_SESSION_TOKEN", PLANTED + "tok")
    root = moto_s3.create_bucket(bucket_name()) + "/"
    storage.configure(storage_config(moto_s3, retries=1, backoff_s=0.01))
    storage.reset_stores()
    messages = _failures(root)
    moto_s3.enforce_auth(True)  # now the planted key is unknown to moto's IAM: 403
    try:
        with pytest.raises(storage.AccessDenied) as err:
            storage.read_bytes(root + "k.mp4")
        messages.append(str(err.value))
    finally:
        moto_s3.enforce_auth(False)
    storage.configure(storage_config(retries=1, backoff_s=0.01, s3={"endpoint_url": f"http://127.0.0.1:{free_port()}"}))
    with pytest.raises(storage.TransientError) as err:
        storage.read_bytes(root + "k.mp4")
    messages.append(str(err.value))
    storage.configure(None)
    _assert_clean(messages, caplog, PLANTED)


@pytest.mark.integration
def test_azure_keys_and_sas_stay_out_of_errors_and_logs(azurite, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    container = bucket_name()
    azurite.create_bucket(container)
    root = f"az://{container}/"
    # 1. a connection string with a wrong account key: 403 from Azurite
    monkeypatch.setenv("CURATOR_TEST_CONN", azurite.connection_string(key=PLANTED_B64))
    storage.configure(storage_config(retries=1, backoff_s=0.01, azure={"connection_string_env": "CURATOR_TEST_CONN"}))
    messages = _failures(root)
    assert any(m.startswith("access denied") for m in messages), messages
    # 2. an account URL with a (forged) SAS token: 403, and unreachable: dropped connection
    sas = f"sv=2021-08-06&ss=b&srt=sco&sp=rwdl&se=2030-01-01T00:00:00Z&sig={PLANTED}"
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", sas)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    for url in (azurite.account_url, f"http://127.0.0.1:{free_port()}/devstoreaccount1"):
        storage.configure(storage_config(retries=1, backoff_s=0.01, azure={"account_url": url}))
        messages += _failures(root)
    assert any("failed (ServiceRequestError" in m for m in messages), messages
    storage.configure(None)
    _assert_clean(messages, caplog, PLANTED, PLANTED_B64, "sig=")


@pytest.mark.integration
def test_google_credentials_stay_out_of_errors_and_logs(gcs_emulator, tmp_path, monkeypatch, caplog):
    from curator.testing.proxy import FaultProxy

    caplog.set_level(logging.DEBUG)
    # the token endpoint refuses the refresh as Google's does (400 invalid_grant)
    token = FaultProxy(gcs_emulator.port).start()
    token.fail(status=400, times=None, content_type="application/json",
               body=b'{"error": "invalid_grant", "error_description": "Bad Request"}')
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    key_body = pem.splitlines()[5]  # a line from the middle of the private key
    creds = {"type": "service_account", "project_id": "curator-test", "private_key_id": PLANTED,
             "private_key": pem, "client_email": "curator-test@curator-test.iam.gserviceaccount.com",
             "client_id": "1234567890", "token_uri": f"{token.endpoint}/token"}
    path = tmp_path / "adc.json"
    path.write_text(json.dumps(creds))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    root = gcs_emulator.create_bucket(bucket_name()) + "/"
    storage.configure(storage_config(gcs_emulator, retries=1, backoff_s=0.01,
                                     gcs={"anonymous": False}))
    try:
        messages = _failures(root)
    finally:
        token.stop()
    assert any(m.startswith("access denied") for m in messages), messages
    assert token.seen("POST"), "the planted credentials were not used"
    storage.configure(None)
    _assert_clean(messages, caplog, PLANTED, key_body)


@pytest.mark.unit
def test_secret_in_an_endpoint_is_refused_without_echoing_it():
    for key, url in [("storage.azure.account_url", f"https://acct.blob.core.windows.net/?sv=1&sig={PLANTED}"),
                     ("storage.s3.endpoint_url", f"https://user:{PLANTED}@minio.example.com"),
                     ("storage.gcs.endpoint", f"https://storage.example.com/?token={PLANTED}")]:
        with pytest.raises(ConfigError) as err:
            PipelineConfig.load(overrides=[f"{key}={url}"])
        assert PLANTED not in str(err.value) and "must not carry credentials" in str(err.value)

"""Storage settings: endpoints and where credentials come from (never the secrets)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_secret_in_url(v: str | None) -> str | None:
    """Endpoints are recorded in the run's config.yaml: refuse ones that carry a secret."""
    if v is None:
        return v
    parts = urlsplit(v)
    if parts.query or parts.password or parts.username:
        raise ValueError("an endpoint URL must not carry credentials, a query string or a SAS token; "
                         "pass credentials through the environment (see docs/storage.md)")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {v!r}")
    return v.rstrip("/")


class S3Config(_Model):
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, R2, moto). Default: AWS. Env AWS_ENDPOINT_URL also works."
    )
    region: str | None = Field(None, description="Region; default from the AWS config chain.")
    profile: str | None = Field(None, description="Named profile from ~/.aws; default: the standard chain.")
    addressing_style: str = Field("auto", description="'auto', 'path' or 'virtual'.")

    _check_url = field_validator("endpoint_url")(_no_secret_in_url)


class GCSConfig(_Model):
    project: str | None = Field(None, description="GCP project; default from Application Default Credentials.")
    endpoint: str | None = Field(
        None, description="API endpoint (emulators). Env STORAGE_EMULATOR_HOST also works."
    )
    anonymous: bool | None = Field(
        None, description="Send no credentials (emulators, public buckets). Default: only for a plain "
                          "http:// endpoint (an emulator); otherwise Application Default Credentials."
    )

    _check_url = field_validator("endpoint")(_no_secret_in_url)


class AzureConfig(_Model):
    account_url: str | None = Field(
        None, description="https://ACCOUNT.blob.core.windows.net; with DefaultAzureCredential or an account key."
    )
    connection_string_env: str = Field(
        "AZURE_STORAGE_CONNECTION_STRING",
        description="Name of the environment variable holding a connection string (the value is never stored).",
    )
    account_key_env: str = Field(
        "AZURE_STORAGE_KEY", description="Name of the environment variable holding an account key."
    )
    sas_token_env: str = Field(
        "AZURE_STORAGE_SAS_TOKEN", description="Name of the environment variable holding a SAS token."
    )

    _check_url = field_validator("account_url")(_no_secret_in_url)


class StorageConfig(_Model):
    s3: S3Config = S3Config()
    gcs: GCSConfig = GCSConfig()
    azure: AzureConfig = AzureConfig()
    retries: int = Field(8, ge=0, description="Attempts after the first on throttling, 5xx and dropped connections.")
    backoff_s: float = Field(0.2, gt=0, description="First retry delay; doubles each attempt, with jitter.")
    max_backoff_s: float = Field(20.0, gt=0, description="Longest delay between two attempts.")
    timeout_s: float = Field(60.0, gt=0, description="Connect and read timeout of one request.")
    multipart_threshold_mb: int = Field(64, ge=5, description="Objects this large use multipart/resumable/block uploads.")
    multipart_chunk_mb: int = Field(16, ge=5, description="Part size for multipart uploads and chunked downloads.")
    concurrency: int = Field(4, ge=1, le=64, description="Parts / blocks / ranges in flight per transfer.")
    list_page_size: int = Field(1000, ge=1, le=5000, description="Objects per listing request.")
    prefetch: int = Field(
        2, ge=0, le=64, description="Remote input videos downloaded ahead of the one being processed "
                                    "(local runner; 0 = off). Memory: this many videos."
    )
    prefetch_max_mb: int = Field(1024, ge=1, description="Inputs larger than this are not prefetched.")
    upload_threads: int = Field(
        4, ge=0, le=64, description="Background uploads of staged clips in flight per worker (0 = inline)."
    )
    upload_queue_mb: int = Field(256, ge=1, description="Bytes of staged clips queued for upload per worker, at most.")

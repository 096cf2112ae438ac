"""Storage settings: endpoints and where credentials come from (never the secrets)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class S3Config(_Model):
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, R2, moto). Default: AWS. Env AWS_ENDPOINT_URL also works."
    )
    region: str | None = Field(None, description="Region; default from the AWS config chain.")
    profile: str | None = Field(None, description="Named profile from ~/.aws; default: the standard chain.")
    addressing_style: str = Field("auto", description="'auto', 'path' or 'virtual'.")


class GCSConfig(_Model):
    project: str | None = Field(None, description="GCP project; default from Application Default Credentials.")
    endpoint: str | None = Field(
        None, description="API endpoint (emulators). Env STORAGE_EMULATOR_HOST also works."
    )


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


class StorageConfig(_Model):
    s3: S3Config = S3Config()
    gcs: GCSConfig = GCSConfig()
    azure: AzureConfig = AzureConfig()
    retries: int = Field(8, ge=0, description="Attempts after the first on throttling, 5xx and dropped connections.")
    backoff_s: float = Field(0.2, gt=0, description="First retry delay; doubles each attempt, with jitter.")
    multipart_threshold_mb: int = Field(64, ge=5, description="Objects this large use multipart/resumable/block uploads.")
    multipart_chunk_mb: int = Field(16, ge=5, description="Part size for multipart uploads and chunked downloads.")
    list_page_size: int = Field(1000, ge=1, le=5000, description="Objects per listing request.")

"""Retries with exponential backoff and jitter, and one-line errors, for the cloud backends.

Every request a cloud backend makes goes through :meth:`RetryPolicy.call`:

- retried: throttling (HTTP 429, 503, S3 ``SlowDown``, Azure ``ServerBusy``), every other
  5xx, request timeouts (HTTP 408, S3 ``RequestTimeout``) and dropped, reset or refused
  connections;
- never retried: any other 4xx (a missing bucket or object, denied access, a bad request)
  — retrying cannot fix those, and they fail fast with a one-line error.

The delay before retry *n* (0-based) is ``min(max_backoff, backoff * 2**n)`` scaled by a
random factor in [0.5, 1) ("equal jitter"), so clients that were throttled together do
not come back together. The SDKs' own retry loops are switched off by the backends, so
one policy (``storage.retries``, ``storage.backoff_s``) governs every request.

Error messages name the URI and the HTTP status / service error code — never the SDK's
message text, a credential, a key, a SAS token or a signed URL (SDK exceptions can carry
request URLs with their query strings). :func:`redact` is a last guard on every message.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from .base import AccessDenied, BucketNotFound, NotFound, PreconditionFailed, StorageError, TransientError
from .uri import display, split

log = logging.getLogger("curator.storage")

T = TypeVar("T")

#: service error codes that mean "slow down / try again", whatever the HTTP status
RETRY_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
    "ServerBusy", "OperationTimedOut", "rateLimitExceeded", "userRateLimitExceeded", "backendError",
})
#: service error codes that mean the credentials were rejected or lack permission
DENIED_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "AllAccessDisabled", "AccountProblem", "AuthenticationFailed", "AuthorizationFailure",
    "AuthorizationPermissionMismatch", "AuthorizationSourceIPMismatch", "AuthorizationProtocolMismatch",
    "InsufficientAccountPermissions", "forbidden", "accessDenied",
})
BUCKET_CODES = frozenset({"NoSuchBucket", "ContainerNotFound", "ContainerBeingDeleted"})
OBJECT_CODES = frozenset({"NoSuchKey", "BlobNotFound", "NotFound", "404"})
#: a conditional request lost its race: the object exists, changed, or another conditional
#: write to it is in flight (S3 ConditionalRequestConflict, HTTP 409: "retry the request")
PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionNotMet", "BlobAlreadyExists",
                                "ConditionalRequestConflict", "conditionNotMet"})


def retryable_status(status: int | None, code: str | None = None) -> bool:
    """Whether an HTTP answer is worth retrying: throttling, 5xx, request timeouts."""
    if code and code in RETRY_CODES:
        return True
    if status is None:
        return False
    return status in (408, 429) or 500 <= status <= 599


def is_connection_error(exc: BaseException) -> bool:
    """A dropped, reset, refused or timed-out connection, from any HTTP stack the SDKs use."""
    import http.client
    import socket

    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, http.client.IncompleteRead,
                        http.client.RemoteDisconnected, http.client.BadStatusLine)):
        return True
    try:
        import urllib3.exceptions as u3

        if isinstance(exc, (u3.ProtocolError, u3.TimeoutError, u3.NewConnectionError, u3.IncompleteRead,
                            u3.ResponseError, u3.ProxyError, u3.DecodeError)):
            return True
    except ImportError:  # pragma: no cover - urllib3 ships with every SDK we support
        pass
    try:
        import requests.exceptions as rq

        if isinstance(exc, (rq.ConnectionError, rq.Timeout, rq.ChunkedEncodingError)):
            return True
    except ImportError:  # pragma: no cover
        pass
    return False


# ----------------------------------------------------------------------- messages
_SECRET_PATTERNS = [
    # query strings of URLs (SAS tokens, presigned S3 / signed GCS URLs, upload session ids)
    (re.compile(r"(https?://[^\s?#'\"]*)\?[^\s'\"]*", re.I), r"\1?<redacted>"),
    (re.compile(r"(AccountKey|SharedAccessSignature|SharedAccessKey|sig|signature|X-Amz-Signature|"
                r"X-Amz-Credential|X-Amz-Security-Token|X-Goog-Signature|X-Goog-Credential|upload_id|"
                r"access_token|client_secret|aws_secret_access_key|password)=([^;&\s'\"]+)", re.I), r"\1=<redacted>"),
    (re.compile(r"(Authorization\s*[:=]\s*)([^\r\n,'\"]+)", re.I), r"\1<redacted>"),
    (re.compile(r"(://)([^/@\s:]+):([^/@\s]+)@"), r"\1<redacted>@"),  # user:password@host
]


def redact(text: str) -> str:
    """Remove what could be a secret from a message: URL query strings, key=value secrets,
    Authorization headers, passwords in URLs."""
    for pat, rep in _SECRET_PATTERNS:
        text = pat.sub(rep, text)
    return " ".join(text.split())  # one line


#: SDK / HTTP loggers whose DEBUG records carry request headers or URLs (session tokens,
#: SAS query strings, resumable-upload session URLs)
SDK_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "azure", "google.auth", "google.cloud.storage",
               "google.resumable_media", "google.api_core", "requests")


def quiet_sdk_loggers() -> None:
    """Keep the SDKs' wire-level DEBUG logs off when curator runs at DEBUG: they print
    request headers and URLs, which can hold credentials. A level set explicitly for one
    of these loggers (by the user) is left alone."""
    for name in SDK_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.WARNING)


def bucket_uri(uri: str) -> str:
    scheme, bucket, _ = split(uri)
    return f"{scheme}://{bucket}"


def make_error(cls: type[StorageError], uri: str, op: str, detail: str = "") -> StorageError:
    """The one-line error of each kind. `detail` is a status / error code, never SDK text."""
    where = display(uri)
    d = f" ({detail})" if detail else ""
    if cls is BucketNotFound:
        kind = "container" if uri.startswith("az://") else "bucket"
        msg = f"no such {kind}: {bucket_uri(uri)} (while trying to {op} {where})"
    elif cls is NotFound:
        msg = f"no such object: {where}"
    elif cls is AccessDenied:
        msg = f"access denied: cannot {op} {where}{d}; check the credentials and permissions for {bucket_uri(uri)}"
    elif cls is PreconditionFailed:
        msg = f"{op} {where} refused: the object was created or changed meanwhile{d}"
    elif cls is TransientError:
        msg = f"{op} {where} failed{d}"
    else:
        msg = f"{op} {where} failed{d}"
    return cls(redact(msg))


def classify_http(status: int | None, code: str, uri: str, op: str) -> StorageError:
    """The curator error for an HTTP error answer (status and service error code)."""
    detail = f"HTTP {status} {code}".strip() if code != str(status) else f"HTTP {status}"
    if code in BUCKET_CODES:
        return make_error(BucketNotFound, uri, op)
    if code in OBJECT_CODES or status == 404:
        return make_error(NotFound, uri, op)
    if status in (401, 403) or code in DENIED_CODES:
        return make_error(AccessDenied, uri, op, detail)
    if status == 412 or code in PRECONDITION_CODES:
        return make_error(PreconditionFailed, uri, op, detail)
    if retryable_status(status, code):
        return make_error(TransientError, uri, op, detail)
    return make_error(StorageError, uri, op, detail)


def exc_name(exc: BaseException) -> str:
    return type(exc).__name__


# ------------------------------------------------------------------------- policy
Translate = Callable[[BaseException, str, str], StorageError]


@dataclass
class RetryPolicy:
    """How often and how long to wait; `call` runs one request under it."""

    retries: int = 8
    backoff_s: float = 0.2
    max_backoff_s: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rand: Callable[[], float] = field(default=random.random, repr=False)

    @classmethod
    def from_config(cls, cfg: object) -> "RetryPolicy":
        return cls(retries=getattr(cfg, "retries", 8), backoff_s=getattr(cfg, "backoff_s", 0.2),
                   max_backoff_s=getattr(cfg, "max_backoff_s", 20.0))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0 = the first retry)."""
        d = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
        return d * (0.5 + 0.5 * self.rand())

    def call(self, fn: Callable[[], T], *, op: str, uri: str, translate: Translate) -> T:
        """Run `fn`; translate what it raises with `translate(exc, op, uri)`; retry the
        transient ones with backoff; raise the curator error (without the SDK's
        exception chained, which may carry URLs with secrets)."""
        attempt = 0
        while True:
            try:
                return fn()
            except StorageError:  # already translated (and retried) by a nested call
                raise
            except Exception as exc:  # noqa: BLE001 - every SDK error is translated
                err = translate(exc, op, uri)
            if not isinstance(err, TransientError) or attempt >= self.retries:
                if isinstance(err, TransientError) and attempt:
                    err = TransientError(f"{err}; gave up after {attempt + 1} attempts")
                raise err from None
            wait = self.delay(attempt)
            log.warning("%s; retry %d of %d in %.2f s", err, attempt + 1, self.retries, wait)
            self.sleep(wait)
            attempt += 1

"""AgentKit's signed registration webhook (contract section 1): signing and verifying.

Signature = hex(HMAC_SHA256(key=secret, msg=timestamp + "." + raw body bytes)), sent in
``X-AgentKit-Signature`` with the unix-seconds timestamp in ``X-AgentKit-Timestamp``.
Pure functions, so tests and tools can sign requests exactly as AgentKit does::

    body = json.dumps(event, separators=(",", ":")).encode()
    headers = signed_headers("s3cret", body)
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time

from opscore.errors import WebhookSignatureError

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "signed_headers",
    "verify",
]

SIGNATURE_HEADER = "X-AgentKit-Signature"
TIMESTAMP_HEADER = "X-AgentKit-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``timestamp + "." + body`` under ``secret``."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers AgentKit sends with ``body``: content type, timestamp (default: now,
    unix seconds) and signature."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(secret, stamp, body),
    }


def verify(
    secret: str,
    *,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    max_skew_s: float = 300.0,
    now: float | None = None,
) -> None:
    """Check a webhook's signature and freshness.

    ``body`` must be the raw request bytes. ``max_skew_s`` is how far (seconds) the
    timestamp may lie from ``now`` (default: the current time) in either direction.
    Raises :class:`~opscore.errors.WebhookSignatureError` naming what is wrong: a
    missing header, a malformed or stale timestamp, or a signature that does not match.
    """
    if not timestamp:
        raise WebhookSignatureError(f"missing {TIMESTAMP_HEADER} header")
    if not signature:
        raise WebhookSignatureError(f"missing {SIGNATURE_HEADER} header")
    try:
        sent_at = float(timestamp)
    except ValueError:
        sent_at = math.nan
    if not math.isfinite(sent_at):
        raise WebhookSignatureError(f"{TIMESTAMP_HEADER} must be unix seconds, got {timestamp!r}")
    skew = abs((time.time() if now is None else now) - sent_at)
    if skew > max_skew_s:
        raise WebhookSignatureError(
            f"{TIMESTAMP_HEADER} is {skew:.0f} s away from the server's clock "
            f"(at most {max_skew_s:.0f} s accepted); the request is stale or replayed"
        )
    expected = sign(secret, timestamp, body)
    # Compare bytes: compare_digest rejects non-ASCII str, and a header may hold anything.
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} does not match the request body")

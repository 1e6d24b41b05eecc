"""Standard Webhooks 1.0 signing (symmetric ``v1`` scheme).

Headers sent with every delivery attempt:

- ``webhook-id``: the message id, constant across retries of one message (receivers dedupe on it);
- ``webhook-timestamp``: integer Unix seconds of *this* attempt;
- ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``,
  one entry per configured secret, so a secret can be rotated without downtime.

Secrets are ``whsec_<base64 of 24-64 random bytes>``. Several secrets may be configured as one
comma- or space-separated string (``WANSERVE_WEBHOOK_SECRET="whsec_new,whsec_old"``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300


class WebhookSecretError(ValueError):
    """A webhook secret is not in ``whsec_<base64>`` form."""


class WebhookVerificationError(ValueError):
    """A delivery's signature headers do not verify."""


def generate_secret(num_bytes: int = 32) -> str:
    """A fresh random secret in ``whsec_`` form."""
    if not 24 <= num_bytes <= 64:
        raise ValueError("secret length must be 24-64 bytes")
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(num_bytes)).decode("ascii")


def parse_secret(secret: str) -> bytes:
    """Decode one ``whsec_<base64>`` secret to its raw key bytes."""
    secret = secret.strip()
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretError("webhook secret must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookSecretError("webhook secret is not valid base64 after 'whsec_'") from exc
    if len(key) < 16:
        raise WebhookSecretError("webhook secret is too short (need at least 16 bytes, 24+ recommended)")
    return key


def split_secrets(value: str | Sequence[str]) -> list[str]:
    """Split a configured secret string (comma/space separated) into individual secrets."""
    items: Iterable[str] = value.replace(",", " ").split() if isinstance(value, str) else value
    out = [s.strip() for s in items if s.strip()]
    for s in out:
        parse_secret(s)  # validate early
    return out


def new_message_id() -> str:
    """A message id without '.' (the spec forbids it in the signed content's id part)."""
    return "msg_" + uuid.uuid4().hex


def _check_part(name: str, value: str) -> None:
    if not value or "." in value or any(c.isspace() for c in value):
        raise ValueError(f"{name} must be non-empty and contain no '.' or whitespace")


def signature(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """One ``v1,<base64>`` signature entry."""
    _check_part("msg_id", msg_id)
    key = parse_secret(secret)
    content = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION}," + base64.b64encode(digest).decode("ascii")


def sign_headers(
    msg_id: str, body: bytes, secrets: Sequence[str], *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt, signed with every secret."""
    if not secrets:
        raise WebhookSecretError("no webhook secret configured")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    sigs = " ".join(signature(msg_id, ts, body, s) for s in secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sigs}


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Verify a delivery (used by our tests and handy for receivers); raises on failure."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        ts_raw = lower["webhook-timestamp"]
        sig_header = lower["webhook-signature"]
    except KeyError as exc:
        raise WebhookVerificationError(f"missing header {exc.args[0]}") from exc
    try:
        ts = int(ts_raw)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp outside the tolerance window")
    expected = {signature(msg_id, ts, body, s).split(",", 1)[1] for s in secrets}
    for entry in sig_header.split():
        version, _, value = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        got = value.encode("utf-8", "replace")  # bytes: a non-ASCII str would raise TypeError
        if any(hmac.compare_digest(got, e.encode()) for e in expected):
            return
    raise WebhookVerificationError("no matching signature")

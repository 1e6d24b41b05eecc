"""The webhook body carries OpenAI's event fields, so `client.webhooks.unwrap` verifies and parses it."""

from __future__ import annotations

import json

import openai
import pytest

from app.core.webhook_sign import sign_headers
from app.core.webhooks import build_message

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize("event", ["completed", "cancelled"])
def test_openai_unwrap_reads_our_envelope(event: str) -> None:
    msg = build_message("video_0123", "https://hooks.example.com/x", event, {"id": "video_0123"})
    body = msg["body"].encode()
    envelope = json.loads(body)
    assert envelope["id"] == msg["id"] and envelope["object"] == "event"
    assert isinstance(envelope["created_at"], int) and envelope["created_at"] == int(msg["created_at"])
    assert envelope["type"] == f"video.{event}" and "timestamp" in envelope  # today's fields stay
    headers = sign_headers(msg["id"], body, [SECRET])
    client = openai.OpenAI(api_key="unused", webhook_secret=SECRET)
    got = client.webhooks.unwrap(body, headers)
    assert (got.id, got.type, got.created_at) == (msg["id"], f"video.{event}", envelope["created_at"])
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.unwrap(body.replace(b"video_0123", b"video_9999"), headers)

"""Asset retention: assets past `expires_at` are deleted from S3 (moto) by the sweeper."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from app.core import retention
from app.core.storage import job_key
from app.core.storage_s3 import S3Config, S3Storage
from tests.sec_support import moto_server, redis_server

pytestmark = pytest.mark.integration


def test_sweep_deletes_only_expired_assets_once() -> None:
    with redis_server() as url, moto_server() as endpoint:
        st = S3Storage(S3Config(bucket="ret", endpoint_url=endpoint, region="us-east-1", path_style=True))
        st.ensure_bucket()
        for job in ("video_old", "video_new"):
            st.put_bytes(job_key(job, "video"), b"mp4")
            st.put_bytes(job_key(job, "thumbnail"), b"webp")

        async def main() -> tuple[int, int]:
            r = Redis.from_url(url)
            try:
                await retention.schedule(r, "video_old", time.time() - 5)
                await retention.schedule(r, "video_new", time.time() + 3600)
                first = await retention.sweep(r, st)
                second = await retention.sweep(r, st)
                return first, second
            finally:
                await r.aclose()

        assert asyncio.run(main()) == (1, 0)
        assert not st.exists(job_key("video_old", "video")) and not st.exists(
            job_key("video_old", "thumbnail")
        )
        assert st.exists(job_key("video_new", "video"))

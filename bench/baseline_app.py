"""A bare FastAPI + Redis job API: the floor that bench/load.py compares wanserve against.

It does the minimum a job API must do per request (validate a small JSON body, write a
hash, push an id onto a list; read a hash back) and nothing else, so the ratio of
wanserve's latencies to these shows what our validation, state machine, events and
queueing cost on top.
"""

from __future__ import annotations

import os
import time
import uuid

import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class Create(BaseModel):
    prompt: str
    model: str | None = None
    size: str | None = None
    seconds: str | None = None


def create_app(redis_url: str) -> FastAPI:
    app = FastAPI()
    pool = aioredis.from_url(redis_url, decode_responses=True)

    @app.post("/v1/videos", status_code=202)
    async def create(body: Create) -> dict[str, object]:
        job_id = "video_" + uuid.uuid4().hex
        record = {"id": job_id, "status": "queued", "prompt": body.prompt, "created_at": int(time.time())}
        async with pool.pipeline(transaction=True) as pipe:
            pipe.hset(f"baseline:job:{job_id}", mapping=record)
            pipe.lpush("baseline:queue", job_id)
            await pipe.execute()
        return record

    @app.get("/v1/videos/{job_id}")
    async def get(job_id: str) -> dict[str, str]:
        record: dict[str, str] = await pool.hgetall(f"baseline:job:{job_id}")
        if not record:
            raise HTTPException(404)
        return record

    return app


def main() -> None:
    import uvicorn

    app = create_app(os.environ["BASELINE_REDIS_URL"])
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["BASELINE_PORT"]), log_level="warning")


if __name__ == "__main__":
    main()

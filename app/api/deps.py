"""`Annotated` dependency aliases for routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import redis.asyncio as aredis
from fastapi import Depends, Request

from app.api.state import AppState
from app.core.config import Settings
from app.core.errors import Forbidden, NotFound, UnreadableRecord
from app.core.jobstore_async import AsyncJobStore
from app.core.schemas import JobRecord
from app.core.storage import Storage

# `app.api.security.authenticate`, which `install_security` puts on ``app.state`` (that module
# imports this one, so it cannot be imported here).
Authenticator = Callable[[Request], Awaitable[str | None]]


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.wanserve
    return state


# The dependencies below are coroutines on purpose: FastAPI runs a plain `def` dependency in its
# thread pool, a thread hop per dependency per request for what is an attribute read.


async def state_dep(request: Request) -> AppState:
    return get_state(request)


async def get_settings(request: Request) -> Settings:
    return get_state(request).settings


async def get_store(request: Request) -> AsyncJobStore:
    return get_state(request).store


async def get_storage(request: Request) -> Storage:
    return get_state(request).storage


async def get_redis(request: Request) -> aredis.Redis:
    return get_state(request).redis


async def current_owner(request: Request) -> str | None:
    """The caller's API key id, or None while auth is off."""
    authenticate: Authenticator = request.app.state.authenticate
    return await authenticate(request)


StateDep = Annotated[AppState, Depends(state_dep)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
JobStoreDep = Annotated[AsyncJobStore, Depends(get_store)]
StorageDep = Annotated[Storage, Depends(get_storage)]
RedisDep = Annotated[aredis.Redis, Depends(get_redis)]
OwnerDep = Annotated[str | None, Depends(current_owner)]


async def require_admin(request: Request, owner: OwnerDep) -> str | None:
    """``/v1/admin/*``: with auth on, only a key created with ``--admin`` (403 for any other key);
    the admin views show every tenant's jobs."""
    if owner is not None and not getattr(request.state, "api_key_admin", False):
        raise Forbidden("this route needs an admin key (wanserve keys create --name NAME --admin)")
    return owner


AdminDep = Annotated[str | None, Depends(require_admin)]


async def get_job(video_id: str, store: JobStoreDep, owner: OwnerDep) -> JobRecord:
    """The job named in the path, visible to the caller, else 404 (other owners' jobs look absent).

    A stored record that cannot be read answers 409 (`UnreadableRecord`) to its owner only."""
    return (await _visible_job(video_id, store, owner, ranked=False))[0]


async def get_job_ranked(video_id: str, store: JobStoreDep, owner: OwnerDep) -> tuple[JobRecord, int | None]:
    """`get_job` with the job's queue position, read in the same Redis round trip."""
    return await _visible_job(video_id, store, owner, ranked=True)


async def _visible_job(
    video_id: str, store: AsyncJobStore, owner: str | None, *, ranked: bool
) -> tuple[JobRecord, int | None]:
    try:
        rec, pos = await store.get_ranked(video_id) if ranked else (await store.get(video_id), None)
    except UnreadableRecord as exc:
        if owner is not None and exc.owner != owner:
            raise NotFound(f"no video {video_id!r}") from None
        raise
    if rec is None or (owner is not None and rec.owner != owner):
        raise NotFound(f"no video {video_id!r}")
    return rec, pos


async def get_job_or_unreadable(
    video_id: str, store: JobStoreDep, owner: OwnerDep
) -> JobRecord | UnreadableRecord:
    """Like `get_job`, but an unreadable record of the caller's is returned, not raised (DELETE)."""
    try:
        return await get_job(video_id, store, owner)
    except UnreadableRecord as exc:
        return exc


JobDep = Annotated[JobRecord, Depends(get_job)]
JobOrUnreadableDep = Annotated[JobRecord | UnreadableRecord, Depends(get_job_or_unreadable)]

"""`POST /v1/videos/extensions`, `POST /v1/videos/edits`, `POST /v1/videos/{id}/remix` (OpenAI's
routes for `client.videos.extend`, `.edit` and `.remix`): new videos made from a source video.

Each reads its body and makes one call into `app.api.video_sources`, which builds the job's
`Creation` and hands it to the create path of ``POST /v1/videos`` (`app.api.jobs.create_job`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api import video_sources
from app.api.deps import JobDep, OwnerDep, StateDep
from app.api.forms import EDIT_BODY, EXTENSION_BODY, REMIX_BODY, read_source_body
from app.api.present import video_answer
from app.api.scheduling import merge_cancel_after_header, priority_limit
from app.core.idempotency import HEADER as IDEMPOTENCY_HEADER
from app.core.schemas import VideoPublic

router = APIRouter(prefix="/v1/videos", tags=["videos"])


@router.post("/extensions", status_code=202, response_model=VideoPublic, openapi_extra=EXTENSION_BODY)
async def extend_video(request: Request, response: Response, state: StateDep, owner: OwnerDep) -> VideoPublic:
    """The source followed by new segment(s), each conditioned on the end of the one before."""
    body, upload = await read_source_body(request, state.settings.max_body_bytes)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    merge_cancel_after_header(request, body)
    limit = priority_limit(request, state.settings)
    created = await video_sources.extend(
        state, body, upload, owner=owner, idempotency_key=key, priority_limit=limit
    )
    return await video_answer(created.record, state, request, response, replayed=created.replayed)


@router.post("/edits", status_code=202, response_model=VideoPublic, openapi_extra=EDIT_BODY)
async def edit_video(request: Request, response: Response, state: StateDep, owner: OwnerDep) -> VideoPublic:
    """Video-to-video: the source is encoded, noised to `strength` and denoised with the prompt."""
    body, upload = await read_source_body(request, state.settings.max_body_bytes)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    merge_cancel_after_header(request, body)
    limit = priority_limit(request, state.settings)
    created = await video_sources.edit(
        state, body, upload, owner=owner, idempotency_key=key, priority_limit=limit
    )
    return await video_answer(created.record, state, request, response, replayed=created.replayed)


@router.post("/{video_id}/remix", status_code=202, response_model=VideoPublic, openapi_extra=REMIX_BODY)
async def remix_video(
    rec: JobDep, request: Request, response: Response, state: StateDep, owner: OwnerDep
) -> VideoPublic:
    """The source's resolved parameters (size, duration, seed, model) with a new prompt."""
    sent, _ = await read_source_body(request, state.settings.max_body_bytes)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    merge_cancel_after_header(request, sent)
    limit = priority_limit(request, state.settings)
    created = await video_sources.remix(
        state, rec.id, sent, owner=owner, idempotency_key=key, priority_limit=limit
    )
    return await video_answer(created.record, state, request, response, replayed=created.replayed)

"""One error hierarchy for the gateway and the worker, split by what the caller should do.

    ServiceError                      base; ``status`` is the HTTP status it maps to
    ├── InvalidInput          400     bad request field(s); ``errors`` names each field + reason
    ├── NotFound              404     unknown (or not visible) job / object
    ├── Conflict              409     the request contradicts the job's state (cancel a finished job)
    ├── Forbidden             403     bad or expired signature
    ├── UnreadableRecord      409     the stored job record cannot be read or rendered; DELETE still works
    ├── TooManyStreams        429     too many open event streams (per key or per gateway); Retry-After
    ├── QueueUnavailable      503     Redis / broker unreachable; retry later
    ├── StorageError          502     the storage backend failed
    └── JobError                      raised inside the worker; ``code`` lands in the job's `error`
        ├── JobCancelled              cancel flag seen between denoising steps
        ├── JobTimeout                the per-job time limit ran out
        ├── TransientJobError         infrastructure hiccup; the task may be retried
        └── FatalWorkerError          the worker itself is broken (OOM, device lost)

`app.api.errors` maps these to ``application/problem+json`` in one place; routes do not catch them.
Each body also carries OpenAI's ``{"error": {message, type, param, code}}`` so OpenAI clients read
``e.type``/``e.param``/``e.code``. ``retryable`` says whether the same request could succeed if sent
again at once; ``False`` answers carry ``x-should-retry: false`` so SDKs do not retry in vain.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


class ServiceError(Exception):
    status: int = 500
    title: str = "Internal error"
    type_slug: str = "internal"
    # None: decided from the status (4xx other than 408/429 → not retryable); set to override
    retryable: bool | None = None

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors: list[FieldError] = errors or []


class InvalidInput(ServiceError):
    status, title, type_slug = 400, "Invalid request", "invalid-request"

    @classmethod
    def field(cls, field: str, reason: str) -> InvalidInput:
        return cls(f"{field}: {reason}", errors=[FieldError(field, reason)])


class NotFound(ServiceError):
    status, title, type_slug = 404, "Not found", "not-found"


class Conflict(ServiceError):
    status, title, type_slug = 409, "Conflict", "conflict"


class Forbidden(ServiceError):
    status, title, type_slug = 403, "Forbidden", "forbidden"


class UnreadableRecord(ServiceError):
    """A stored job record that fails to decode or render (written by an older, laxer version, or
    corrupted). 409: the record's state, not the request, is at fault (and 422 stays out of the API,
    whose validation errors are 400). Carries what could still be read, so ownership is checked and
    DELETE can remove it."""

    status, title, type_slug = 409, "Unreadable job record", "unreadable-record"
    retryable = False

    def __init__(self, job_id: str, *, owner: str | None, model: str | None, reason: str) -> None:
        super().__init__(
            f"the stored record of video {job_id} cannot be read ({reason}); "
            f"DELETE /v1/videos/{job_id} removes it"
        )
        self.job_id, self.owner, self.model = job_id, owner, model


class TooManyStreams(ServiceError):
    status, title, type_slug = 429, "Too many open streams", "too-many-streams"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after_s)}


class QueueUnavailable(ServiceError):
    status, title, type_slug = 503, "Service unavailable", "unavailable"


class StorageError(ServiceError):
    status, title, type_slug = 502, "Storage error", "storage"


class JobError(ServiceError):
    """Ends a job inside the worker; ``code`` is stored in the job's ``error.code``."""

    code: str = "internal_error"


class JobCancelled(JobError):
    code = "cancelled"


class DeadlinePassed(JobCancelled):
    """The request's own deadline (``cancel_after``) passed: cancelled, with the reason recorded."""


class JobTimeout(JobError):
    code = "timeout"


class TransientJobError(JobError):
    code = "transient_error"


class FatalWorkerError(JobError):
    code = "worker_error"

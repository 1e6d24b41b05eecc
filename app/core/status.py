"""The job status state machine.

    queued ──► in_progress ──► completed
      │            │  ▲ └────► failed
      │            │  └ (redelivery after a lost worker: in_progress → in_progress)
      │            └─────────► cancelled
      ├──────────────────────► cancelled
      └──────────────────────► failed

Only the transition functions of `app.core.jobstore` write a status; they check ``ALLOWED``
atomically inside Redis.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_pending(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.IN_PROGRESS)


TERMINAL: frozenset[JobStatus] = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# target status -> the statuses it may be entered from
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.IN_PROGRESS: frozenset({JobStatus.QUEUED, JobStatus.IN_PROGRESS}),
    JobStatus.COMPLETED: frozenset({JobStatus.IN_PROGRESS}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED, JobStatus.IN_PROGRESS}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED, JobStatus.IN_PROGRESS}),
}

# SSE / webhook event type announced by entering a status
EVENT_TYPES: dict[JobStatus, str] = {
    JobStatus.QUEUED: "video.queued",
    JobStatus.IN_PROGRESS: "video.started",
    JobStatus.COMPLETED: "video.completed",
    JobStatus.FAILED: "video.failed",
    JobStatus.CANCELLED: "video.cancelled",
}
PROGRESS_EVENT = "video.progress"
TERMINAL_EVENTS: frozenset[str] = frozenset(EVENT_TYPES[s] for s in TERMINAL)

"""Every Redis key name wanserve uses, in one place. Each starts with ``wanserve:``."""

from __future__ import annotations

PREFIX = "wanserve:"

# --- jobs --------------------------------------------------------------------------------------
JOB_PREFIX = PREFIX + "job:"  # + job id: the job hash (Lua scripts that build it take the prefix)
JOBS_INDEX = PREFIX + "jobs"  # zset: job id by created_at (ms), every job
DEADLINES = PREFIX + "deadlines"  # zset: job id by its deadline (unix s), jobs that asked for one


def job(job_id: str) -> str:
    """Hash: the job record, one field per `JobRecord` attribute (status raw, the rest JSON)."""
    return JOB_PREFIX + job_id


def events(job_id: str) -> str:
    """Stream: the job's events in order; stream ids are the SSE event ids."""
    return f"{JOB_PREFIX}{job_id}:events"


def cancel_flag(job_id: str) -> str:
    """String: present while a running job has been asked to stop."""
    return f"{JOB_PREFIX}{job_id}:cancel"


def owner_index(owner: str) -> str:
    """Zset: the jobs of one API key, like `JOBS_INDEX`."""
    return f"{PREFIX}jobs:owner:{owner}"


def job_republished(job_id: str) -> str:
    """Hash: ``n`` (re-publications by the queued-job sweep), ``at`` (the last one, unix s)."""
    return f"{PREFIX}job:{job_id}:republished"


def queued(model_id: str) -> str:
    """Zset: queued job ids of one model by priority band, then enqueue time (`app.core.priority`);
    ZRANK is the queue position."""
    return f"{PREFIX}queued:{model_id}"


def model_queue(model_id: str) -> str:
    """The Celery queue of one model id (a broker queue name, not a key we write)."""
    return f"model.{model_id}"


# --- running jobs: leases, the reaper, asset retention -----------------------------------------
LEASES = PREFIX + "leases"  # zset: running job id -> lease expiry (unix s)
LEASE_OWNERS = PREFIX + "lease_owners"  # hash: running job id -> worker id
REAPER_LOCK = PREFIX + "reaper:lock"  # string with TTL: the gateway running this reaper round
REAPER_HOUSEKEEPING = PREFIX + "reaper:housekeeping"  # string with TTL: a gateway did housekeeping lately
ASSET_EXPIRY = PREFIX + "asset_expiry"  # zset: job id -> when its stored files are deleted

# --- workers -----------------------------------------------------------------------------------
WORKERS = PREFIX + "workers"  # zset: worker id by last heartbeat (unix s)
PRESETS = PREFIX + "presets"  # hash: model id -> its preset JSON, as last published
MODELS_SEEN = PREFIX + "models:seen"  # zset: model id by the last heartbeat of any of its workers
EXTENDERS = PREFIX + "extenders"  # zset: extension worker id by last heartbeat (unix s)


def worker(worker_id: str) -> str:
    """Hash with TTL: a live worker's model, preset JSON, state, current job, heartbeat."""
    return f"{PREFIX}worker:{worker_id}"


def extender(worker_id: str) -> str:
    """Hash with TTL: a live prompt-extension worker."""
    return f"{PREFIX}extender:{worker_id}"


# --- metrics (app.core.metrics) ----------------------------------------------------------------
METRICS_PREFIX = PREFIX + "metrics:"
METRICS_JOBS = METRICS_PREFIX + "jobs"  # hash: "<status>|<error code>" -> jobs that ended so
METRICS_WEBHOOKS = METRICS_PREFIX + "webhooks"  # hash: delivery outcome -> attempts
METRICS_REAPER = METRICS_PREFIX + "reaper"  # hash: reaper outcome -> jobs
METRICS_MODELS = METRICS_PREFIX + "models"  # set: every model a job was queued for


def metrics_stage(stage: str) -> str:
    """Hash: one stage's duration histogram (``b<i>`` bucket counts, ``sum``, ``count``)."""
    return f"{METRICS_PREFIX}stage:{stage}"


# --- webhooks (app.core.webhooks) --------------------------------------------------------------
def webhook_log(job_id: str) -> str:
    """List: the job's webhook message ids, oldest first."""
    return f"{PREFIX}webhooks:{job_id}"


def webhook_message(msg_id: str) -> str:
    """Hash: one message's delivery state."""
    return f"{PREFIX}webhook:{msg_id}"


def webhook_attempts(msg_id: str) -> str:
    """List: one message's delivery attempts (JSON)."""
    return f"{PREFIX}webhook:{msg_id}:attempts"


def webhook_throttle(job_id: str) -> str:
    """String with TTL: a progress webhook of this job was sent recently."""
    return f"{PREFIX}webhook_throttle:{job_id}"


# --- API keys, limits, idempotency -------------------------------------------------------------
APIKEY_NAMES = PREFIX + "apikey_names"  # set: every key name
ACTIVE_ALL = PREFIX + "active_all"  # set: every active (queued or running) job id


def apikey(digest: str) -> str:
    """Hash: one API key (id, name, created_at, admin) under the SHA-256 of its token."""
    return f"{PREFIX}apikey:{digest}"


def apikey_name(name: str) -> str:
    """String: the digest of the key with this name."""
    return f"{PREFIX}apikey_name:{name}"


def rate_window(owner: str, window: int) -> str:
    """Counter with TTL: one owner's requests in one rate-limit window."""
    return f"{PREFIX}rl:{owner}:{window}"


def active_jobs(owner: str) -> str:
    """Set: one owner's active job ids."""
    return f"{PREFIX}active:{owner}"


def idempotency(owner: str, key_digest: str) -> str:
    """String with TTL: the job created for one owner's ``Idempotency-Key`` (by its SHA-256)."""
    return f"{PREFIX}idem:{owner}:{key_digest}"


def preview(job_id: str) -> str:
    """String with TTL: the running job's latest `video.preview` event data (JSON)."""
    return f"{PREFIX}job:{job_id}:preview"

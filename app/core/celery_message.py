"""The Celery task message of one job, as kombu's Redis transport stores it in the broker list.

Celery's own publish costs the gateway ~0.4 ms of CPU per job (building the message through
Celery and kombu) plus a thread hop to keep the synchronous client off the event loop. When the
broker is the job store's Redis, the create script pushes this text itself, in the same round
trip that stores the record (`app.core.jobstore_async.AsyncJobStore.create_ranked`), which also
makes "record stored" and "message queued" one atomic step.

The text is byte for byte what ``celery.send_task(task, args=(job_id,), task_id=job_id,
queue=queue, priority=p)`` makes kombu ``LPUSH`` (protocol 2, JSON, body base64-encoded as the
Redis channel does), apart from the two values that are random per publish there too
(``delivery_tag``, a fresh uuid4, and ``reply_to``, the producer's thread oid). The unit test
`tests/unit/test_celery_message.py` compares it with what the installed Celery/kombu publish, so
an upgrade that changes the format fails there, not in production.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass

from app.core.priority import BROKER_PRIORITY, broker_list

# the task body for positional args only: [args, kwargs, embed] with no callbacks or chains
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True)
class BrokerPush:
    """One message for the create script to ``LPUSH``: the list and the JSON text."""

    list_key: str
    message: str


@dataclass(frozen=True)
class TaskMessages:
    """Builds task messages for one producer: ``origin`` is Celery's ``gen<pid>@<host>`` node
    name, ``reply_to`` the app's oid (unused without a result backend, but kept as Celery sets it)."""

    origin: str
    reply_to: str

    def push(self, task: str, job_id: str, queue: str, priority: str) -> BrokerPush:
        step = BROKER_PRIORITY[priority]
        return BrokerPush(broker_list(queue, step), self.text(task, job_id, queue, step))

    def text(self, task: str, job_id: str, queue: str, step: int) -> str:
        args = [[job_id], {}, _EMBED]
        headers: dict[str, object] = {
            "lang": "py",
            "task": task,
            "id": job_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": job_id,
            "parent_id": None,
            "argsrepr": repr((job_id,)),
            "kwargsrepr": "{}",
            "origin": self.origin,
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }
        properties = {
            "correlation_id": job_id,
            "reply_to": self.reply_to,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": step,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        }
        message = {
            "body": base64.b64encode(json.dumps(args).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
        return json.dumps(message)

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
import re
import uuid
from dataclasses import dataclass, field

from app.core.priority import BROKER_PRIORITY, broker_list

# the task body for positional args only: [args, kwargs, embed] with no callbacks or chains
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True)
class BrokerPush:
    """One message for the create script to ``LPUSH``: the list and the JSON text."""

    list_key: str
    message: str


_PLAIN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")  # the same text in JSON and in repr()
# template slots: printable, so JSON and repr() leave them as they are
_ID, _TAG, _BODY = "@@job-id@@", "@@delivery-tag@@", "@@body@@"
_SLOT_COUNTS = {_ID: 4, _TAG: 1, _BODY: 1}  # id, root_id, argsrepr, correlation_id; tag; body
_SLOTS = re.compile("(" + "|".join(map(re.escape, _SLOT_COUNTS)) + ")")


@dataclass
class TaskMessages:
    """Builds task messages for one producer: ``origin`` is Celery's ``gen<pid>@<host>`` node
    name, ``reply_to`` the app's oid (unused without a result backend, but kept as Celery sets it)."""

    origin: str
    reply_to: str
    # (task, queue, step) -> the message text split at its slots, None where a name holds a slot's
    # text: building the nested dict and dumping it per job cost more than the rest of the push
    _templates: dict[tuple[str, str, int], list[str] | None] = field(default_factory=dict)

    def push(self, task: str, job_id: str, queue: str, priority: str) -> BrokerPush:
        step = BROKER_PRIORITY[priority]
        return BrokerPush(broker_list(queue, step), self.text(task, job_id, queue, step))

    def text(self, task: str, job_id: str, queue: str, step: int) -> str:
        parts = self._template(task, queue, step) if _PLAIN_ID.match(job_id) else None
        if parts is None:
            return self._build(task, job_id, queue, step, _body(job_id), str(uuid.uuid4()))
        fill = {_ID: job_id, _TAG: str(uuid.uuid4()), _BODY: _body(job_id)}
        return "".join([fill.get(p, p) for p in parts])

    def _template(self, task: str, queue: str, step: int) -> list[str] | None:
        key = (task, queue, step)
        if key not in self._templates:
            parts = _SLOTS.split(self._build(task, _ID, queue, step, _BODY, _TAG))
            exact = all(parts.count(slot) == n for slot, n in _SLOT_COUNTS.items())
            self._templates[key] = parts if exact else None
        return self._templates[key]

    def _build(self, task: str, job_id: str, queue: str, step: int, body: str, tag: str) -> str:
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
            "delivery_tag": tag,
        }
        message = {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
        return json.dumps(message)


def _body(job_id: str) -> str:
    """The task body: ``[args, kwargs, embed]``, JSON, base64 as the Redis channel stores it."""
    return base64.b64encode(json.dumps([[job_id], {}, _EMBED]).encode()).decode()

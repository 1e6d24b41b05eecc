"""``wanserve generate|status|list|cancel|models``: a small HTTP client for a running gateway.

The server URL and API key come from ``--url`` / ``--api-key`` or from ``WANSERVE_API_URL`` /
``WANSERVE_API_KEY``. Progress comes from the job's Server-Sent Events stream
(``GET /v1/videos/{id}/events``); when that stream is unavailable the client polls
``GET /v1/videos/{id}`` honouring ``openai-poll-after-ms``.

``app/cli/main.py`` mounts these verbs (:data:`COMMANDS`) on the one ``wanserve`` parser through
:func:`app.cli.client.parser.add_commands`.
"""

from __future__ import annotations

from app.cli.client.api import TERMINAL, ApiError, Client, Event, parse_sse, problem_message
from app.cli.client.commands import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    cmd_cancel,
    cmd_generate,
    cmd_list,
    cmd_models,
    cmd_status,
)
from app.cli.client.parser import DEFAULT_URL, build_parser, main
from app.cli.client.progress import Progress, QueueWatcher, merge_event, wait_for

COMMANDS = ("generate", "status", "list", "cancel", "models")

__all__ = [
    "COMMANDS",
    "DEFAULT_URL",
    "EXIT_CANCELLED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "TERMINAL",
    "ApiError",
    "Client",
    "Event",
    "Progress",
    "QueueWatcher",
    "build_parser",
    "cmd_cancel",
    "cmd_generate",
    "cmd_list",
    "cmd_models",
    "cmd_status",
    "main",
    "merge_event",
    "parse_sse",
    "problem_message",
    "wait_for",
]

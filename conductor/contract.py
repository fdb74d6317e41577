"""The contract between conductor and its workers, in one place.

A worker learns who it is from its environment (the ``*_ENV`` names below), a Claude worker
reports through the tools of the in-process server ``conductor`` (``BUS_TOOL_NAMES``, seen by
the model as ``mcp__conductor__<name>``), and a worker may post only ``WORKER_TYPES`` on the
bus (``conductor.workers.authorize_post`` enforces it). Everything that names one of these
imports it from here.

This module imports nothing heavy (no claude-agent-sdk, no pydantic), so templates and
``conductor validate`` can name the tools without loading the SDK.
"""

from __future__ import annotations

from typing import Final

from conductor.messages import MessageType

# -- the environment of a worker's processes ------------------------------------------------

ENV_PREFIX: Final = "CONDUCTOR_"
"""Every variable conductor sets for a worker starts with this."""
TRACK_ENV: Final = "CONDUCTOR_TRACK"
"""The track id; ``conductor bus post`` uses it when TRACK is left out."""
TASK_ENV: Final = "CONDUCTOR_TASK"
"""The task id."""
ATTEMPT_ENV: Final = "CONDUCTOR_ATTEMPT"
"""The attempt number, from 1."""
WORKER_ENV: Final = "CONDUCTOR_WORKER"
"""The worker id (``<task>.<attempt>``); it also marks the processes of one attempt."""
TOKEN_ENV: Final = "CONDUCTOR_WORKER_TOKEN"
"""The worker's secret; with it ``conductor bus post`` posts as that worker."""
WORKER_DIR_ENV: Final = "CONDUCTOR_WORKER_DIR"
"""The worker's ephemeral directory (its rendered skill file)."""
STATE_DIR_ENV: Final = "CONDUCTOR_STATE_DIR"
"""Root of run-state directories (also ``--state-dir``'s environment variable)."""
BUS_ENV: Final = "CONDUCTOR_BUS_DIR"
"""The track's bus directory; marks a process as a worker of that bus."""
REPO_ENV: Final = "CONDUCTOR_REPO"
"""The person's checkout."""
TAG_ENV: Final = "CONDUCTOR_RUN_TAG"
"""An opaque mark of one track's attempts, for attempts that must not learn where the bus is
(``conductor.processes.run_tag``)."""

PRIVATE_ENV: Final = (TOKEN_ENV, WORKER_DIR_ENV, STATE_DIR_ENV, BUS_ENV, REPO_ENV)
"""Variables that name conductor's state; an attempt in a copy gets them empty."""

# -- the tools served to a Claude worker ----------------------------------------------------

SERVER_KEY: Final = "conductor"
"""Key of the server in ``ClaudeAgentOptions.mcp_servers``."""
TOOL_PREFIX: Final = f"mcp__{SERVER_KEY}__"
"""How the model and ``allowed_tools`` see the server's tools; they are not evidence of work."""

REPORT_PROGRESS: Final = "report_progress"
LOCK_FILE: Final = "lock_file"
UNLOCK_FILE: Final = "unlock_file"
READ_MESSAGES: Final = "read_messages"
REPORT_COMPLETE: Final = "report_complete"
REPORT_FAILED: Final = "report_failed"

BUS_TOOL_NAMES: Final = (
    REPORT_PROGRESS,
    LOCK_FILE,
    UNLOCK_FILE,
    READ_MESSAGES,
    REPORT_COMPLETE,
    REPORT_FAILED,
)
"""The tools of the server, unqualified (``conductor.executors.bus_tools`` serves them)."""


def qualified(name: str) -> str:
    """``mcp__conductor__<name>``: how the model and ``allowed_tools`` see a bus tool."""
    return f"{TOOL_PREFIX}{name}"


def qualified_tool_names() -> list[str]:
    """``mcp__conductor__<tool>`` for every bus tool, as allowed_tools wants them."""
    return [qualified(name) for name in BUS_TOOL_NAMES]


# -- the messages a worker may post and read ------------------------------------------------

WORKER_TYPES: Final = frozenset(
    {
        MessageType.PROGRESS,
        MessageType.NOTE,
        MessageType.BLOCKED,
        MessageType.CLAIM_COMPLETE,
        MessageType.CLAIM_FAILED,
    }
)
"""Types a worker may post, about its own task only (the conductor owns every state
transition: a claim becomes TASK_COMPLETE only after the conductor checks it)."""

READABLE_TYPES: Final = frozenset(
    {
        MessageType.NOTE.value,
        MessageType.APPROVE.value,
        MessageType.SKIP.value,
        MessageType.BLOCKED.value,
        "GUIDANCE",
    }
)
"""Types ``read_messages`` shows a worker; everything else is bookkeeping noise to it."""

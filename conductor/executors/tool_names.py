"""Names of the bus tools conductor serves to each Claude session.

Kept apart from ``bus_tools`` (which imports claude-agent-sdk) so that templates and
``conductor validate`` can name the tools without loading the SDK.
"""

from __future__ import annotations

SERVER_KEY = "conductor"
"""Key of the server in ``ClaudeAgentOptions.mcp_servers``: tools are ``mcp__conductor__*``."""

BUS_TOOL_NAMES = (
    "report_progress",
    "lock_file",
    "unlock_file",
    "read_messages",
    "report_complete",
    "report_failed",
)
"""The tools of the server, unqualified."""


def qualified(name: str) -> str:
    """``mcp__conductor__<name>``: how the model and ``allowed_tools`` see a bus tool."""
    return f"mcp__{SERVER_KEY}__{name}"


def qualified_tool_names() -> list[str]:
    """``mcp__conductor__<tool>`` for every bus tool, as allowed_tools wants them."""
    return [qualified(name) for name in BUS_TOOL_NAMES]

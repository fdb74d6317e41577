"""Test doubles for conductor and for its users' own tests: no network, no API key.

- ``fake_cli_path()``: a fake ``claude`` executable for ``ClaudeAgentOptions.cli_path`` that
  speaks the Agent SDK's stream-json protocol and follows a script
  (``$CONDUCTOR_FAKE_SCRIPT``); see ``conductor.testing.fake_cli``.
- ``FakeMessagesAPI``: a local Anthropic Messages API driven by a scripted model, for running
  the real bundled CLI offline (``real_cli_env``, ``bundled_cli_path``); see
  ``conductor.testing.fake_api``.
- ``load_cli_script`` / ``load_api_script``: validate the two script formats
  (``conductor.testing.script``).
- ``ScriptedExecutor`` / ``Step``: an executor that replays scripted outcomes without any
  session (``conductor.testing.scripted``).

The guide is ``docs/offline-testing.md``. Names are imported on first use, so that
``python -m conductor.testing.fake_cli`` (the fake's own start) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conductor.testing.fake_api import FakeMessagesAPI, bundled_cli_path, real_cli_env
    from conductor.testing.fake_cli import (
        ENV_LOG,
        ENV_SCRIPT,
        ENV_STATE,
        fake_cli_path,
        read_fake_log,
    )
    from conductor.testing.script import ApiScript, CliScript, load_api_script, load_cli_script
    from conductor.testing.scripted import ScriptedExecutor, Step

_EXPORTS = {
    "ENV_LOG": "fake_cli",
    "ENV_SCRIPT": "fake_cli",
    "ENV_STATE": "fake_cli",
    "fake_cli_path": "fake_cli",
    "read_fake_log": "fake_cli",
    "FakeMessagesAPI": "fake_api",
    "bundled_cli_path": "fake_api",
    "real_cli_env": "fake_api",
    "ApiScript": "script",
    "CliScript": "script",
    "load_api_script": "script",
    "load_cli_script": "script",
    "ScriptedExecutor": "scripted",
    "Step": "scripted",
}

__all__ = [
    "ENV_LOG",
    "ENV_SCRIPT",
    "ENV_STATE",
    "ApiScript",
    "CliScript",
    "FakeMessagesAPI",
    "ScriptedExecutor",
    "Step",
    "bundled_cli_path",
    "fake_cli_path",
    "load_api_script",
    "load_cli_script",
    "read_fake_log",
    "real_cli_env",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value

"""Test doubles for conductor and for its users' own tests: no network, no API key.

- ``fake_cli_path()``: a fake ``claude`` executable for ``ClaudeAgentOptions.cli_path`` that
  speaks the Agent SDK's stream-json protocol and follows a script
  (``$CONDUCTOR_FAKE_SCRIPT``); see ``conductor.testing.fake_cli``.
- ``FakeMessagesAPI``: a local Anthropic Messages API driven by a scripted model, for running
  the real bundled CLI offline (``real_cli_env``, ``bundled_cli_path``); see
  ``conductor.testing.fake_api``.
- ``load_cli_script`` / ``load_api_script``: validate the two script formats
  (``conductor.testing.script``).

The guide is ``docs/offline-testing.md``.
"""

from __future__ import annotations

from conductor.testing.fake_cli import (
    ENV_LOG,
    ENV_SCRIPT,
    ENV_STATE,
    fake_cli_path,
    read_fake_log,
)
from conductor.testing.script import (
    ApiScript,
    CliScript,
    load_api_script,
    load_cli_script,
)

__all__ = [
    "ENV_LOG",
    "ENV_SCRIPT",
    "ENV_STATE",
    "ApiScript",
    "CliScript",
    "fake_cli_path",
    "load_api_script",
    "load_cli_script",
    "read_fake_log",
]

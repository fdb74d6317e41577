"""How fast a run without working credentials stops, with the real bundled Claude Code CLI.

Runs the bundled example track ``tracks/claude-offline`` (two Claude tasks) in a scratch
repository, offline, twice:

- **no credentials**: no ``ANTHROPIC_API_KEY`` nor ``CLAUDE_CODE_OAUTH_TOKEN``; the CLI says
  "Not logged in" without a request;
- **refused key**: a key the local fake Messages API answers with 401, which the CLI alone
  would retry ten times over about three minutes.

Each must end with exit 7 and a message naming both variables, having sent the API no
request (no credentials) or fewer than five (refused key), within the bar of 20 seconds
(the CLI starts in ~0.4 s; the rest is the track's copy and sandbox set-up).

Usage::

    python scripts/bench_auth_stop.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchlib import scratch_repo, verdict

from conductor.testing.fake_api import FAKE_API_KEY, FakeMessagesAPI, bundled_cli_path

BAR_SECONDS = 20.0
ROOT = Path(__file__).resolve().parent.parent


def run_example(base_url: str, key: str | None) -> tuple[float, int, str]:
    """Run the example track once; return wall seconds, exit code and output."""
    repo = scratch_repo("auth")
    shutil.copytree(ROOT / "tracks" / "claude-offline", repo / "tracks" / "claude-offline")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "example"], cwd=repo, check=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "ANTHROPIC_AUTH_TOKEN",
            "CONDUCTOR_CLAUDE_CLI",
            "CONDUCTOR_STATE_DIR",
        )
    }
    env.update(ANTHROPIC_BASE_URL=base_url, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    if key is not None:
        env["ANTHROPIC_API_KEY"] = key
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "conductor", "run", "tracks/claude-offline/track.yaml"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    shutil.rmtree(repo, ignore_errors=True)
    return elapsed, proc.returncode, proc.stdout + proc.stderr


def main() -> int:
    if bundled_cli_path() is None:
        print("no bundled Claude Code CLI in this claude-agent-sdk install")
        return 2
    ok = True
    script = {"default": [{"status": 401, "times": 100, "message": "invalid x-api-key"}]}
    for label, key in (("no credentials", None), ("refused key (401)", FAKE_API_KEY)):
        with FakeMessagesAPI(script) as api:
            elapsed, code, output = run_example(api.base_url, key)
            requests = len(api.requests)
        named = "ANTHROPIC_API_KEY" in output and "CLAUDE_CODE_OAUTH_TOKEN" in output
        limit = 0 if key is None else 4
        good = code == 7 and named and requests <= limit and elapsed <= BAR_SECONDS
        ok = ok and good
        print(
            f"{label:<18} exit {code}, {elapsed:5.1f} s, {requests} API requests, "
            f"variables named: {'yes' if named else 'no'}  "
            f"(bar: exit 7, <= {BAR_SECONDS:g} s, <= {limit} requests)  {verdict(good)}"
        )
        if code != 7:
            print(output[-2000:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

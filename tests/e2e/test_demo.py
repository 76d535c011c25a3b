"""`scripts/demo`, the README's first command, run as a newcomer runs it (issue 5, part 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from claude_wrap_testing.install import cache_root

from .demo import ANSWER

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_shows_the_shim_repairing_a_login(
    claude_path: Path, claude_version: str, loopback_only: str, tmp_path: Path
) -> None:
    # A HOME of its own, to prove the demo never writes to the user's: it must stay empty.
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp_path),
        # The venv this test runs in (scripts/test may make it elsewhere than .venv), and the
        # binary the session installed: inside the namespace there is no registry to reach.
        "CLAUDE_WRAP_VENV": sys.prefix,
        "CLAUDE_WRAP_E2E_CACHE": str(cache_root()),
    }
    done = subprocess.run(
        [str(REPO / "scripts" / "demo"), f"--claude-version={claude_version}"], env=env,
        cwd=tmp_path, capture_output=True,
        timeout=180, check=False,
    )
    out = done.stdout.decode()
    assert (done.returncode, done.stderr.decode()) == (0, ""), out
    # The narrated transcript, in order: logged out directly, logged in and answering through
    # the shim, repaired locally: no token request, the same access token (issue 28).
    expected = [
        "$ claude auth status    # the real binary, directly",
        '"loggedIn": false',
        "(exit status 1)",
        "Not logged in · Please run /login",
        "$ claude auth status    # through the shim",
        '"loggedIn": true',
        "(exit status 0)",
        "$ echo hello | claude --print    # through the shim",
        ANSWER,
        "requests to the token endpoint: 0",
        "access token: the same, still good",
        "scopes now stored: user:profile user:inference",
        "repaired locally: restored scopes",
        "done: the shim repaired the login locally, with no token request",
    ]
    at = 0
    for text in expected:
        found = out.find(text, at)
        assert found >= 0, f"{text!r} missing after offset {at} in:\n{out}"
        at = found + len(text)
    assert list(home.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("claude-wrap-demo-")] == []

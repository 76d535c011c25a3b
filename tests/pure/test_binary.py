"""binary.py: the real claude's version, from its package.json or one cached `--version` run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from claude_wrap.config import protocol
from claude_wrap.config.settings import Settings
from claude_wrap.refresh import binary

# A stand-in claude that answers --version and counts how often it was asked.
COUNTING = """#!{python}
import os, sys
with open(os.environ["COUNT_FILE"], "a") as f:
    f.write("x")
print(os.environ.get("ANSWER", "2.1.250") + " (Claude Code)")
"""


def counting_claude(folder: Path) -> Path:
    path = folder / "claude"
    path.write_text(COUNTING.format(python=sys.executable))
    path.chmod(0o755)
    return path


def test_the_version_beside_the_binary_needs_no_run(tmp_path: Path) -> None:
    package = tmp_path / "node_modules" / "@anthropic-ai" / "claude-code"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text(
        json.dumps({"name": "@anthropic-ai/claude-code", "version": "2.1.332"})
    )
    exe = counting_claude(package / "bin")
    link = tmp_path / "claude"
    link.symlink_to(exe)  # node_modules/.bin/claude is such a symlink
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "COUNT_FILE": str(tmp_path / "count")}
    assert binary.version_of(str(link), Settings(env)) == "2.1.332"
    assert not (tmp_path / "count").exists()


def test_user_agent_and_scopes_per_release() -> None:
    assert binary.user_agent("2.1.87") == "axios/1.13.6"
    assert binary.user_agent("2.1.90") == "axios/1.13.6"  # the tested release below it
    assert binary.user_agent("2.1.81") == "axios/1.13.6"  # older than all: the oldest's
    assert binary.user_agent("2.1.500") == "axios/1.15.2"
    assert binary.user_agent(None) == "axios/1.15.2"
    base = list(protocol.DEFAULT_SCOPES)
    assert binary.refresh_scopes("2.1.197", Settings({})) == base
    assert binary.refresh_scopes("2.1.332", Settings({})) == [*base, "user:plugins"]
    assert binary.refresh_scopes("2.1.332", Settings({"CLAUDE_CODE_CUSTOM_OAUTH_URL": "x"})) == base
    assert binary.refresh_scopes(None, Settings({})) == base
    assert binary.union(["user:inference", "user:x"], base) == [
        "user:inference", "user:x", *(s for s in base if s != "user:inference")
    ]

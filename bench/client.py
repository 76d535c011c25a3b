"""A real client's first answer: the TypeScript Agent SDK's one-shot query() through the shim
against the same query() on the real binary directly (issue 25).

claude_wrap_testing/drivers/sdk_ts.mjs runs one `query()` with `pathToClaudeCodeExecutable`
set to the shim or to the real binary, the two alternating, and reports the time from the call
to the result: what an application waits for (Node's start and the SDK's import are the same on
both sides and left out). The real binary talks to a fake Messages API on loopback
(claude_wrap_testing/fakeapi.py), inside bench/run's loopback-only namespace; the login is
healthy, so the shim's part is its hot path plus relaying a session whose stdin is a socket kept
open.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import Sandbox, alternate, login_doc, pair_stats
from claude_wrap_testing.clients import (
    NPM_PINS,
    TS_DRIVER,
    TS_SDK,
    ensure_npm_clients,
    installed_as_pinned,
    npm_folder,
)
from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.install import InstallError

ANSWER = "first answer"


def first_answer(root: Path, claude: Path, modules: Path, reps: int) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH")
    sb = Sandbox(root)
    sb.write_login(login_doc())
    cwd = root / "project"
    cwd.mkdir()
    (sb.cfg / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True,
        "projects": {str(cwd.resolve()): {"hasTrustDialogAccepted": True}},
    }))
    with FakeAnthropicAPI(ANSWER) as api:
        env = sb.env(
            claude.parent,
            CLAUDE_CONFIG_DIR=str(sb.cfg),
            ANTHROPIC_BASE_URL=api.url,
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_AUTOUPDATER="1",
            TMPDIR=str(root),
        )

        def ask(executable: str) -> float:
            done = subprocess.run(
                [node, str(TS_DRIVER), str(modules), executable, "once"], input=b"hello\n",
                capture_output=True, env=env, cwd=cwd, timeout=120, check=False,
            )
            lines = done.stdout.decode(errors="replace").splitlines()
            result = json.loads(lines[-1]) if lines else {}
            if done.returncode != 0 or result.get("result") != ANSWER:
                raise RuntimeError(
                    f"the TS SDK on {executable} did not answer (exit {done.returncode}): "
                    f"{lines[-1:]} {done.stderr.decode(errors='replace')[-500:]}"
                )
            ms: float = result["ms"]
            return ms

        ask(sb.shim)  # judge the login once: the shim's verdict is cached from here on
        before = sb.creds.stat().st_ctime_ns
        direct, shim = alternate(reps, lambda: ask(str(claude)), lambda: ask(sb.shim))
        stats: dict[str, Any] = pair_stats(direct, shim)
    stats["sdk"] = f"{TS_SDK}@{NPM_PINS[TS_SDK]}"
    stats["credentials_rewritten_by_claude"] = sb.creds.stat().st_ctime_ns != before
    return stats


def installed(*, install: bool) -> tuple[Path | None, str]:
    """The node_modules holding the TS SDK, installing it with npm when allowed; else None and
    why not."""
    if install:
        try:
            return ensure_npm_clients(), ""
        except (InstallError, OSError) as exc:
            return None, str(exc)
    if installed_as_pinned(npm_folder(), NPM_PINS):
        return npm_folder() / "node_modules", ""
    return None, f"not in {npm_folder()} and not installed here (--no-install, or no network)"

"""The real claude, run through the shim, starts with the signal dispositions it gets when run
directly: Python ignores SIGPIPE and SIGXFSZ for itself, and that must not leak across exec."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import Sandbox

# A `claude` that reports which signals it was started with ignored, then exits.
REPORTER = "#!/bin/sh\ngrep '^SigIgn:' /proc/$$/status\n"


def sig_ignored(argv: list[str], env: dict[str, str]) -> int:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True)
    return int(done.stdout.split()[1], 16)


def test_claude_inherits_no_ignored_signals_from_the_shim(sandbox: Sandbox, tmp_path: Path) -> None:
    reporter = tmp_path / "reporter" / "claude"
    reporter.parent.mkdir()
    reporter.write_text(REPORTER)
    reporter.chmod(0o755)
    env = {**sandbox.shim_env(), "PATH": f"{sandbox.shim.parent}:{reporter.parent}:/usr/bin:/bin"}
    # Run both from a clean start (subprocess restores SIGPIPE/SIGXFSZ for its children).
    direct = sig_ignored([str(reporter), "--version"], env)
    through_shim = sig_ignored([str(sandbox.shim), "--version"], env)
    assert direct == 0
    assert through_shim == direct, f"SigIgn through the shim: {through_shim:#x}"
    # Also on the path that judges the login first (no login stored: nothing to repair).
    assert sig_ignored([str(sandbox.shim), "-p", "hi"], env) == direct

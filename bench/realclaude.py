"""The real Claude Code binaries of the version matrix (claude_wrap/versions.py), each installed
once with npm into a cache outside the repository (the same layout as the end-to-end tests:
`~/.cache/claude-wrap/npm/<version>`)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from claude_wrap.config import versions

VERSIONS = versions.TESTED  # every release users run that we test: bench/run measures each
CLAUDE_CODE_VERSION = "2.1.197"  # the default of ensure() and binary_path()
PACKAGE = "@anthropic-ai/claude-code"


def cache_root() -> Path:
    override = os.environ.get("CLAUDE_WRAP_E2E_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "claude-wrap" / "npm"


def binary_path(version: str = CLAUDE_CODE_VERSION) -> Path:
    return cache_root() / version / "node_modules" / ".bin" / "claude"


def version_of(claude: Path) -> str | None:
    try:
        done = subprocess.run(
            [str(claude), "--version"], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = done.stdout.decode(errors="replace").split()
    return words[0] if done.returncode == 0 and words else None


def ensure(version: str = CLAUDE_CODE_VERSION, *, install: bool = True) -> Path | None:
    """The runnable `claude` at `version`, installed with npm when missing and allowed; None
    when it is not there and cannot be had (no npm, install not allowed or failed)."""
    path = binary_path(version)
    if path.exists():
        return path
    npm = shutil.which("npm")
    if not install or npm is None:
        return None
    folder = cache_root() / version
    folder.mkdir(parents=True, exist_ok=True)
    # Two runs (two worktrees, or the e2e tests) may install at once: npm into one prefix is not
    # safe, so take turns on the lock file the e2e harness uses too.
    with open(folder / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if version_of(path) != version:
            subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--save-exact",
                    "--prefix",
                    str(folder),
                    f"{PACKAGE}@{version}",
                ],
                capture_output=True,
                timeout=600,
                check=False,
            )
        if version_of(path) != version:
            # npm 11 may skip the package's postinstall, which puts the native executable over
            # the bin/claude.exe placeholder: run it ourselves then.
            script = folder / "node_modules" / PACKAGE / "install.cjs"
            node = shutil.which("node")
            if node and script.exists():
                subprocess.run(
                    [node, str(script)],
                    cwd=script.parent,
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
    return path if version_of(path) == version else None


def ensure_all(chosen: Sequence[str] = VERSIONS, *, install: bool = True) -> dict[str, Path | None]:
    """ensure() for each of `chosen` (the matrix by default), in its order."""
    return {v: ensure(v, install=install) for v in chosen}

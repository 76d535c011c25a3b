"""Installs the real Claude Code binary with npm, once, into a cache folder outside the repository.

The versions tested are pinned in claude_wrap/versions.py (TESTED) and nowhere else;
CLAUDE_WRAP_E2E_VERSIONS=2.1.332,latest,... chooses others (`latest`: the newest published
release, asked of the npm registry). Each install lives in `$CLAUDE_WRAP_E2E_CACHE/<version>`
(default `~/.cache/claude-wrap/npm/<version>`) and is reused by later runs as long as its
`claude --version` still names that version.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from claude_wrap.config import versions

PACKAGE = "@anthropic-ai/claude-code"
# The version a single-version run (scripts/demo, bench/soak) uses unless told otherwise.
CLAUDE_CODE_VERSION = versions.newest_tested()

NPM_TIMEOUT = 600  # a slow registry mirror; the download is ~250 MB


class InstallError(RuntimeError):
    """npm could not produce a runnable `claude`; the message says what to check."""


def cache_root() -> Path:
    override = os.environ.get("CLAUDE_WRAP_E2E_CACHE")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "claude-wrap" / "npm"


def latest_published() -> str:
    """The newest release on the npm registry (`npm view PACKAGE version`); needs the network."""
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm is not on PATH: cannot ask the registry for the latest release")
    command = [npm, "view", PACKAGE, "version"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"`{' '.join(command)}` did not finish in 120 s") from exc
    found = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0 or versions.parse(found) is None:
        raise InstallError(
            f"`{' '.join(command)}` failed (exit code {done.returncode}): "
            f"{done.stderr.decode(errors='replace').strip()[:300] or found!r}"
        )
    return found


def e2e_versions() -> tuple[str, ...]:
    """The versions the end-to-end tests run against: CLAUDE_WRAP_E2E_VERSIONS, or TESTED.

    `latest` in the list is resolved here, so call this before leaving the network.
    """
    chosen = os.environ.get("CLAUDE_WRAP_E2E_VERSIONS", "").strip()
    if not chosen:
        return versions.TESTED
    found: list[str] = []
    for word in (w.strip() for w in chosen.split(",")):
        if not word:
            continue
        version = latest_published() if word == "latest" else word
        if versions.parse(version) is None:
            raise InstallError(
                f"CLAUDE_WRAP_E2E_VERSIONS={chosen!r}: {word!r} is neither a version like "
                f"2.1.332 nor `latest`"
            )
        if version not in found:
            found.append(version)
    return tuple(found) or versions.TESTED


def installed_version(claude: Path) -> str | None:
    """What `claude --version` says ("2.1.197 (Claude Code)" -> "2.1.197"), None if it fails."""
    if not claude.exists():
        return None
    try:
        done = subprocess.run(
            [str(claude), "--version"], capture_output=True, timeout=60, check=False
        )
    except OSError:
        return None
    if done.returncode != 0:
        return None
    words = done.stdout.decode(errors="replace").split()
    return words[0] if words else None


def ensure_claude(version: str = CLAUDE_CODE_VERSION) -> Path:
    """The path of a runnable `claude` at `version`, installing it with npm when needed."""
    folder = cache_root() / version
    claude = folder / "node_modules" / ".bin" / "claude"
    folder.mkdir(parents=True, exist_ok=True)
    # Two test runs (two worktrees) may install at once: npm into one prefix is not safe.
    with open(folder / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(claude) == version:
            return claude
        npm = shutil.which("npm")
        if npm is None:
            raise InstallError(
                f"npm is not on PATH: install Node.js and npm to run the end-to-end tests "
                f"against {PACKAGE}@{version} (or set CLAUDE_WRAP_SKIP_E2E=1 to skip them)"
            )
        command = [npm, "install", "--no-audit", "--no-fund", "--save-exact",
                   "--prefix", str(folder), f"{PACKAGE}@{version}"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=NPM_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise InstallError(
                f"`{' '.join(command)}` did not finish in {NPM_TIMEOUT} s"
            ) from exc
        if done.returncode != 0:
            # npm names the cause first ("npm error code E404") and the log file last.
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            shown = lines if len(lines) <= 14 else [*lines[:10], "...", *lines[-3:]]
            raise InstallError(
                f"`{' '.join(command)}` failed with exit code {done.returncode}:\n"
                + "\n".join(shown)
            )
        if installed_version(claude) != version:
            # npm 11 may skip the package's postinstall (install.cjs), which puts the native
            # executable over the bin/claude.exe placeholder; run it ourselves then.
            script = folder / "node_modules" / PACKAGE / "install.cjs"
            node = shutil.which("node")
            if node and script.exists():
                subprocess.run(
                    [node, str(script)], cwd=script.parent, capture_output=True, timeout=120,
                    check=False,
                )
        found = installed_version(claude)
        if found != version:
            raise InstallError(
                f"after `npm install {PACKAGE}@{version}` into {folder}, {claude} reports "
                f"version {found!r}: delete that folder and run again"
            )
        return claude

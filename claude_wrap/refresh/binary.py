"""Which Claude Code release the real binary is, and what its own refresh request looks like.

A refresh should look like the one the version in use sends (the token endpoint's WAF is reported to
answer 429 to some User-Agents: docs/protocol.md section 4), so we send its User-Agent and at least
its scopes. Finding the version is cheap and happens only when a refresh is about to be sent (and in
doctor), never on a healthy shim run: the `package.json` of the npm package the binary belongs to,
else one `--version` run, cached in our state folder keyed on the binary's path, size and mtime.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess

from claude_wrap.config import locate, versions
from claude_wrap.config.protocol import DEFAULT_SCOPES, PLUGINS_SCOPE
from claude_wrap.findings import Finding, Level
from claude_wrap.storage import privatefile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings

PACKAGE = "@anthropic-ai/claude-code"
VERSION_TIMEOUT_S = 20.0

# Measured through the proxy (tests/e2e/test_binary_refresh.py): 2.1.332 asks for user:plugins,
# 2.1.197 does not; the first release between them that does is not known, so the newest tested
# release without it bounds it.
LAST_WITHOUT_PLUGINS = (2, 1, 197)
# The User-Agent each tested release sends to the token endpoint (its HTTP client's default),
# measured through the proxy; an untested release gets the one of the newest tested release at or
# below it (the oldest's when it is older than all).
USER_AGENTS = {
    "2.1.87": "axios/1.13.6",
    "2.1.197": "axios/1.15.2",
    "2.1.332": "axios/1.15.2",
    "2.1.337": "axios/1.15.2",
}


def real_path(settings: Settings) -> str | None:
    """The real claude the shim would run (CLAUDE_WRAP_REAL_CLAUDE, then PATH), None if none."""
    override = settings.real_claude_override
    if override and locate.check_override(override, None) is None:
        return override
    try:
        return locate.find_real_claude(settings, None)
    except locate.ClaudeNotFoundError:
        return None


def _from_package(real: str) -> str | None:
    """The version in the package.json of the npm package the binary is part of."""
    folder = os.path.dirname(os.path.realpath(real))
    for _ in range(3):  # cli.js sits beside it, bin/claude.exe one below
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(folder, "package.json"), encoding="utf-8") as f:
                meta = json.load(f)
            if isinstance(meta, dict) and meta.get("name") == PACKAGE:
                found = meta.get("version")
                if isinstance(found, str) and versions.parse(found):
                    return found
        folder = os.path.dirname(folder)
    return None


def _cache_file(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "binary-versions.json")


def _asked(real: str, settings: Settings) -> str | None:
    """One `--version` run, its answer cached under (path, size, mtime) of the binary."""
    try:
        st = os.stat(real)
    except OSError:
        return None
    key = f"{os.path.realpath(real)}:{st.st_size}:{st.st_mtime_ns}"
    cache: dict[str, object] = {}
    with contextlib.suppress(OSError, ValueError):
        with open(_cache_file(settings), encoding="utf-8") as f:
            loaded = json.load(f)
        if isinstance(loaded, dict):
            cache = loaded
    hit = cache.get(key)
    if isinstance(hit, str):
        return hit
    child = settings.unnested().child_env()  # should it be a shim after all: no pre-flight
    try:
        done = subprocess.run(
            [real, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            env=child,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    words = done.stdout.split()
    if done.returncode != 0 or not words or versions.parse(words[0]) is None:
        return None
    cache = {k: v for k, v in cache.items() if not k.startswith(os.path.realpath(real) + ":")}
    cache[key] = words[0]
    # Private from birth, like every file we create (no token here, but a path list).
    privatefile.replace(_cache_file(settings), json.dumps(cache).encode())
    return words[0]


def version_of(real: str, settings: Settings) -> str | None:
    """`2.1.332` for the binary at `real`, None when it cannot be told."""
    return _from_package(real) or _asked(real, settings)


def in_use(settings: Settings) -> str | None:
    """The version of the real claude in use, None when there is none or it cannot be told."""
    real = real_path(settings)
    return None if real is None else version_of(real, settings)


def newer_than_tested(version: str) -> bool:
    parsed = versions.parse(version)
    newest = versions.parse(versions.newest_tested())
    return parsed is not None and newest is not None and parsed > newest


def user_agent(version: str | None) -> str:
    """The User-Agent the release sends to the token endpoint (the newest tested when unknown)."""
    tested = sorted(USER_AGENTS, key=lambda v: versions.parse(v) or ())
    parsed = versions.parse(version) if version else None
    if parsed is None:
        return USER_AGENTS[tested[-1]]
    below = [v for v in tested if (versions.parse(v) or ()) <= parsed]
    return USER_AGENTS[below[-1] if below else tested[0]]


def refresh_scopes(version: str | None, settings: Settings) -> list[str]:
    """The scopes the release's own refresh asks for.

    Read in 2.1.332's bundle: it adds `user:plugins` when its OAuth config has
    PLUGINS_SCOPE_REGISTERED, which the production config has and which is cleared when
    CLAUDE_CODE_CUSTOM_OAUTH_URL or CLAUDE_CODE_OAUTH_CLIENT_ID is set. An unknown version asks
    for the base set only: never more than a release is known to ask for.
    """
    scopes = list(DEFAULT_SCOPES)
    parsed = versions.parse(version) if version else None
    registered = not settings.claude_oauth_customised
    if parsed is not None and parsed > LAST_WITHOUT_PLUGINS and registered:
        scopes.append(PLUGINS_SCOPE)
    return scopes


def union(stored: list[str], asked: list[str]) -> list[str]:
    """The stored scopes, in their order, then what the release asks for that they lack."""
    return [*stored, *(s for s in asked if s not in stored)]


# doctor's check ---------------------------------------------------------------------------


def _version_line(real: str, settings: Settings) -> tuple[str | None, str]:
    """(version line or None, why not)."""
    child = settings.unnested().child_env()  # should it be a shim after all, no pre-flight
    try:
        result = subprocess.run(
            [real, "--version"], capture_output=True, text=True, timeout=20, env=child, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        return None, f"`{real} --version` exited {result.returncode}"
    return lines[0], ""


def check_real_binary(settings: Settings, shim: str | None) -> list[Finding]:
    name = "real claude"
    override = settings.real_claude_override
    if override:
        problem = locate.check_override(override, shim)
        if problem is not None:
            return [
                Finding(
                    name,
                    Level.FAIL,
                    f"CLAUDE_WRAP_REAL_CLAUDE={override} {problem}",
                    "point CLAUDE_WRAP_REAL_CLAUDE at Claude Code's own executable, or unset it",
                )
            ]
        real = override
    else:
        try:
            real = locate.find_real_claude(settings, shim)
        except locate.ClaudeNotFoundError:
            return [
                Finding(
                    name,
                    Level.FAIL,
                    "no real claude found on PATH or in the usual places",
                    "install Claude Code (https://docs.claude.com/en/docs/claude-code), or set "
                    "CLAUDE_WRAP_REAL_CLAUDE to its executable",
                )
            ]
    version, why = _version_line(real, settings)
    if version is None:
        return [
            Finding(
                name,
                Level.WARN,
                f"{real} does not tell its version ({why})",
                "reinstall Claude Code, or set CLAUDE_WRAP_REAL_CLAUDE to a working executable",
                path=real,
            )
        ]
    found = [Finding(name, Level.OK, f"{real} ({version})", path=real, version=version)]
    number = version.split()[0]
    if newer_than_tested(number):
        # Said, but not a problem (doctor stays healthy): Claude Code updates itself, and a newer
        # release most likely works; only nobody has proven it yet.
        found.append(
            Finding(
                "claude version",
                Level.OK,
                f"Claude Code {number} is newer than the newest release claude-wrap was tested "
                f"with ({versions.newest_tested()})",
                "test it with `scripts/compat latest` (in a claude-wrap checkout, as root); on a "
                "FAIL, report it with the table and meanwhile pin the last release that passed "
                f"(`npm install -g {PACKAGE}@{versions.newest_tested()}`, "
                "DISABLE_AUTOUPDATER=1)",
                version=number,
            )
        )
    return found

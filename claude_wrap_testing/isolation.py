"""An isolated home for one run of the real `claude`, and a runner that times each run.

Each `ClaudeHome` is a throwaway HOME with its own CLAUDE_CONFIG_DIR, a `.claude.json` that
skips onboarding and trusts the project folder (docs/protocol.md section 7), and a credentials
file shaped like the one Claude Code writes (section 1). Its `env()` is built from scratch, not
from the test process's environment, so no ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN or proxy
setting of the machine running the tests can leak into a run.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect

from .tokenserver import TokenServer

# What a claude.ai login stores (docs/protocol.md section 4, the defaults Claude Code asks for).
SCOPES = (
    "user:inference",
    "user:profile",
    "user:sessions:claude_code",
    "user:mcp_servers",
    "user:file_upload",
)
HOUR_MS = 3_600_000
# The TUI is ready for a prompt: 2.1.87 and 2.1.197 draw "? for shortcuts" under the prompt,
# 2.1.332 "⏵⏵ auto mode on (shift+tab to cycle) · ← for agents" instead (2.1.197 has that too).
TUI_READY = re.compile(rb"shortcuts|agents")
# A top-level key Claude Code keeps next to the login; every rewrite must leave it untouched.
MCP_OAUTH = {
    "example-server|0123456789abcdef": {
        "serverName": "example-server",
        "serverUrl": "https://mcp.example.invalid/sse",
        "accessToken": "mcp-access-e2e",
        "expiresAt": 0,
    }
}


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def new_tokens(tag: str = "e2e") -> TokenPair:
    """A fresh token pair shaped like real ones, unique per call."""
    salt = secrets.token_hex(8)
    return TokenPair(f"sk-ant-oat01-{tag}-{salt}-AA", f"sk-ant-ort01-{tag}-{salt}-AA")


class ClaudeHome:
    """HOME, config dir, project folder and TMPDIR of one isolated run, all under `root`.

    With `tokens` (the test's TokenServer), every login `write_credentials` stores is registered
    with it, so that a refresh of that login revokes its access token (issue 26)."""

    def __init__(self, root: Path, api_url: str, tokens: TokenServer | None = None) -> None:
        self.tokens = tokens
        self.root = root
        self.home = root / "home"
        self.config_dir = self.home / ".claude"
        self.cwd = root / "project"
        self.tmp = root / "tmp"
        self.api_url = api_url
        for folder in (self.config_dir, self.cwd, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        self.cwd = self.cwd.resolve()
        state = {
            "hasCompletedOnboarding": True,
            "projects": {str(self.cwd): {"hasTrustDialogAccepted": True}},
        }
        (self.config_dir / ".claude.json").write_text(json.dumps(state))

    @property
    def credentials_path(self) -> Path:
        return self.config_dir / ".credentials.json"

    def env(self, **overrides: str | None) -> dict[str, str]:
        """The environment of one run; an override of None removes that variable."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.home),
            "USER": os.environ.get("USER", "root"),
            "TERM": "xterm-256color",
            "TMPDIR": str(self.tmp),
            "CLAUDE_CONFIG_DIR": str(self.config_dir),
            "ANTHROPIC_BASE_URL": self.api_url,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            # 2.1.87 runs `npm view` for its update check even so, and a TUI waits for it to
            # quit; no test may reach a registry.
            "DISABLE_AUTOUPDATER": "1",
            # 2.1.87 retries a 401 ten times with backoff (seen: 11 calls, 178 s, then the
            # failure); 2.1.197 and 2.1.332 retry a 401 once after a refresh whatever this says.
            "CLAUDE_CODE_MAX_RETRIES": "2",
        }
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def write_credentials(
        self,
        tokens: TokenPair,
        *,
        expires_at: int | None = None,
        scopes: Sequence[str] | None = SCOPES,
        subscription_type: str = "max",
        rate_limit_tier: str = "default_claude_max_20x",
        extra: dict[str, Any] | None = None,
        oauth_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Writes `.credentials.json` (mode 0600) the way Claude Code does; returns the data.

        `expires_at` is in ms (default: 8 hours from now); `scopes=None` leaves the key out,
        as third-party refreshers do; `extra` are more top-level keys (default: `mcpOAuth`);
        `oauth_extra` are more keys of the login itself (real files carry `clientId`...).
        """
        oauth: dict[str, Any] = {
            "accessToken": tokens.access,
            "refreshToken": tokens.refresh,
            "expiresAt": now_ms() + 8 * HOUR_MS if expires_at is None else expires_at,
        }
        if scopes is not None:
            oauth["scopes"] = list(scopes)
        oauth["subscriptionType"] = subscription_type
        oauth["rateLimitTier"] = rate_limit_tier
        oauth.update(oauth_extra or {})
        data: dict[str, Any] = {"claudeAiOauth": oauth}
        data.update({"mcpOAuth": MCP_OAUTH} if extra is None else extra)
        if self.tokens is not None:
            self.tokens.register(tokens.access, tokens.refresh)
        fd = os.open(self.credentials_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        os.chmod(self.credentials_path, 0o600)
        return data

    def read_credentials(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.credentials_path.read_text())
        return data


@dataclass(frozen=True)
class Run:
    """One finished run of a program: what a user would see, and how long it took."""

    args: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def out(self) -> str:
        return self.stdout.decode()

    @property
    def err(self) -> str:
        return self.stderr.decode()


@dataclass
class ClaudeBinary:
    """The real `claude`, with a log of how long each run took (reported after the session)."""

    path: Path
    version: str = ""
    timings: list[tuple[str, float]] = field(default_factory=list)

    def run(
        self,
        home: ClaudeHome,
        *args: str,
        input: bytes = b"",
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> Run:
        """Runs `claude *args` in `home` with stdin `input`, waits for it to exit."""
        started = time.monotonic()
        done = subprocess.run(
            [str(self.path), *args],
            input=input,
            capture_output=True,
            env=home.env() if env is None else env,
            cwd=home.cwd,
            timeout=timeout,
            check=False,
        )
        seconds = time.monotonic() - started
        self.note_time(" ".join(args), seconds)
        return Run(tuple(args), done.returncode, done.stdout, done.stderr, seconds)

    def note_time(self, label: str, seconds: float) -> None:
        """Adds a measurement, labelled with the running test (pytest sets the variable)."""
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
        self.timings.append((f"{label}   [{test}]", seconds))

    def spawn(
        self,
        home: ClaudeHome,
        *args: str,
        env: dict[str, str] | None = None,
        dimensions: tuple[int, int] = (40, 160),
    ) -> pexpect.spawn[bytes]:
        """Starts `claude *args` on a pty of its own (rows, columns), for the interactive TUI."""
        return pexpect.spawn(
            str(self.path),
            list(args),
            env=home.env() if env is None else env,
            cwd=str(home.cwd),
            dimensions=dimensions,
        )


def quit_tui(child: pexpect.spawn[bytes] | pexpect.spawn[str]) -> None:
    """Two Ctrl-C, as a user quits the TUI, then its exit. 2.1.87 (node) takes a pair sent
    back to back as one key and keeps running: seen to quit on a pair 0.3 s apart."""
    for _ in range(3):
        child.sendcontrol("c")
        time.sleep(0.3)
        child.sendcontrol("c")
        if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=20) == 0:
            break
    deadline = time.monotonic() + 30  # the terminal may close before the process ends
    while child.isalive() and time.monotonic() < deadline:
        time.sleep(0.1)

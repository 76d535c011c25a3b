"""Shared fixtures: a sandboxed HOME, a real token server, the installed shim, a fake claude.

Every test runs real processes against real files in a temporary folder; nothing is patched.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_wrap_testing import tokenserver
from claude_wrap_testing.tokenserver import TokenServer

REPO = Path(__file__).resolve().parent.parent
FAKE_CLAUDE = REPO / "claude_wrap_testing" / "fakeclaude.py"
WRAP = [sys.executable, "-m", "claude_wrap"]
SCOPES = ["user:inference", "user:profile", "user:sessions:claude_code"]
ACCESS = "sk-ant-oat01-fixture-access-AAAAAAAAAAAA"
REFRESH = "sk-ant-ort01-fixture-refresh-BBBBBBBBBBBB"


def now_ms() -> int:
    return int(time.time() * 1000)


def login_doc(
    *,
    scopes: list[str] | str | None = "default",
    expires_in_s: float = 8 * 3600,
    access: str = ACCESS,
    refresh: str | None = REFRESH,
    extra_top: dict[str, Any] | None = None,
) -> dict[str, Any]:
    oauth: dict[str, Any] = {"accessToken": access}
    if refresh is not None:
        oauth["refreshToken"] = refresh
    oauth["expiresAt"] = now_ms() + int(expires_in_s * 1000)
    if scopes == "default":
        oauth["scopes"] = list(SCOPES)
    elif scopes is not None:
        oauth["scopes"] = scopes
    oauth["subscriptionType"] = "max"
    oauth["rateLimitTier"] = "default_claude_max_20x"
    oauth["clientId"] = "keep-me"
    doc: dict[str, Any] = {"claudeAiOauth": oauth, "mcpOAuth": {"server": {"token": "keep"}}}
    doc.update(extra_top or {})
    return doc


class Sandbox:
    """A HOME of its own, with the environment a run gets.

    With a running TokenServer (given, or behind the URL given), the sandbox is as hard as the
    real service (issue 26): every login it writes is registered with the server, so that a
    refresh revokes its access token, and the fake `claude` asks the server whether its token
    still works (FAKE_CLAUDE_TOKEN_CHECK)."""

    def __init__(self, root: Path, tokens: TokenServer | str) -> None:
        token_url = tokens.url if isinstance(tokens, TokenServer) else tokens
        self.server = tokens if isinstance(tokens, TokenServer) else TokenServer.serving(tokens)
        self.root = root
        self.home = root / "home"
        self.cfg = self.home / ".claude"
        self.cfg.mkdir(parents=True)
        self.state = root / "state"
        self.fakebin = root / "fakebin"
        self.fakebin.mkdir()
        self.record = root / "record.jsonl"
        self.log = root / "claude-wrap.log"
        fake = self.fakebin / "claude"
        fake.write_text(
            f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(FAKE_CLAUDE)!r}, "
            "run_name='__main__')\n"
        )
        fake.chmod(0o755)
        self.fake = fake
        self.env: dict[str, str] = {
            "HOME": str(self.home),
            "PATH": f"{self.fakebin}:/usr/bin:/bin",
            "XDG_STATE_HOME": str(self.state),
            "CLAUDE_WRAP_TOKEN_URL": token_url,
            "CLAUDE_WRAP_LOG_FILE": str(self.log),
            "CLAUDE_WRAP_REFRESH_TIMEOUT": "5",
            "CLAUDE_WRAP_LOCK_TIMEOUT": "10",
            "FAKE_CLAUDE_RECORD": str(self.record),
            "LANG": "C.UTF-8",
        }
        if self.server is not None:
            self.env["FAKE_CLAUDE_TOKEN_CHECK"] = self.server.check_url
        self._shim: Path | None = None

    @property
    def creds(self) -> Path:
        return self.cfg / ".credentials.json"

    def write(self, doc: Any, mode: int = 0o600) -> bytes:
        raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        if self.server is not None:
            self.server.register_login(raw)
        self.creds.write_bytes(raw)
        self.creds.chmod(mode)
        return raw

    def read(self) -> Any:
        return json.loads(self.creds.read_bytes())

    def oauth(self) -> dict[str, Any]:
        return dict(self.read()["claudeAiOauth"])

    def wrap(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run `claude-wrap ARGS` in this sandbox."""
        env = {**self.env, **kw.pop("env", {})}
        return subprocess.run(
            [*WRAP, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60, **kw
        )

    @property
    def shim(self) -> Path:
        """The `claude` shim, installed by `claude-wrap install` into a folder of its own."""
        if self._shim is None:
            folder = self.root / "shimbin"
            result = self.wrap("install", "--dir", str(folder))
            assert result.returncode == 0, result.stderr
            self._shim = folder / "claude"
        return self._shim

    def shim_env(self, **extra: str) -> dict[str, str]:
        return {**self.env, "PATH": f"{self.shim.parent}:{self.env['PATH']}", **extra}

    def claude(
        self,
        *args: str,
        input: bytes | None = b"",
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `claude ARGS` through the shim, as a user's shell would find it on PATH."""
        return subprocess.run(
            [str(self.shim), *args],
            env=env or self.shim_env(),
            input=input,
            capture_output=True,
            timeout=timeout,
            cwd=self.root,
        )

    def runs(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


# What the faithful token service did in this session (issue 26), shown in the summary: a run
# where nothing was ever revoked or refused would not have tested it.
SERVICE: collections.Counter[str] = collections.Counter()


def tally(server: TokenServer) -> None:
    """Adds what `server` revoked and refused to the session's figures."""
    SERVICE["access tokens revoked by a refresh"] += len(server.revoked_access)
    SERVICE["fake claude token checks"] += server.checks
    SERVICE["fake claude token checks refused"] += server.refused


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    with TokenServer() as server:
        server.register(ACCESS, REFRESH)
        yield server
        tally(server)


@pytest.fixture
def sandbox(tmp_path: Path, token_server: TokenServer) -> Sandbox:
    return Sandbox(tmp_path, token_server)


# A test's kind is the folder it sits in (tests/README.md), as a marker: `pytest -m pure` is the
# fast loop, `pytest -m "not e2e"` everything that does not need the real Claude Code.
KINDS = ("pure", "process", "e2e", "reliability")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        folder = item.path.resolve().relative_to(here).parts[0]
        if folder in KINDS:
            item.add_marker(folder)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SERVICE:
        terminalreporter.section(
            f"token service ({'lenient' if tokenserver.LENIENT else 'faithful'}, issue 26)"
        )
        for key, value in SERVICE.items():
            terminalreporter.write_line(f"{key}: {value}")

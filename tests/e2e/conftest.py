"""End-to-end tests against the real Claude Code binary (npm `@anthropic-ai/claude-code`).

The version is pinned in `install.py` (CLAUDE_CODE_VERSION). The first test to run installs it
with npm into `$CLAUDE_WRAP_E2E_CACHE/<version>` (default `~/.cache/claude-wrap/npm/<version>`),
outside the repository; later runs reuse that install. If npm fails, the tests fail: they never
pass silently without the binary.

Right after the install, the pytest process moves itself into a network namespace that has only
loopback (`netns.py`; needs root or CAP_SYS_ADMIN, else the tests fail with a clear message), so
that the real binary, the fake API and every helper can reach 127.0.0.1 and nothing else.

Environment variables:
- CLAUDE_WRAP_SKIP_E2E=1  skip every test in this folder (for a laptop without npm or root;
  CI never sets it).
- CLAUDE_WRAP_E2E_CACHE   the folder that holds one npm install per version.
- CLAUDE_WRAP_E2E_RECORD=1  rewrite the output samples in samples/ from this run instead of
  checking this run against them (after bumping CLAUDE_CODE_VERSION).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..tokenserver import TokenServer
from .fakeapi import FakeAnthropicAPI
from .install import CLAUDE_CODE_VERSION, InstallError, ensure_claude
from .isolation import ClaudeBinary, ClaudeHome
from .netns import IsolationError, enter_loopback_only, namespace_id
from .tlsproxy import CertFiles, OAuthProxy, mint_throwaway_ca
from .wrapped import Shim, install_shim

_binaries: list[ClaudeBinary] = []


@pytest.fixture(scope="session", autouse=True)
def _e2e_enabled() -> None:
    # Session-scoped and autouse, so it runs before the install and the namespace move.
    if os.environ.get("CLAUDE_WRAP_SKIP_E2E") == "1":
        pytest.skip("CLAUDE_WRAP_SKIP_E2E=1: end-to-end tests against the real claude skipped")


@pytest.fixture(scope="session")
def claude_path(_e2e_enabled: None) -> Path:
    """The installed real `claude` at CLAUDE_CODE_VERSION (installed with npm if needed)."""
    try:
        return ensure_claude(CLAUDE_CODE_VERSION)
    except (InstallError, OSError) as exc:
        problem = str(exc)
    # Outside the except block, so the report shows the message alone, not a chained traceback.
    pytest.fail(f"could not install the real Claude Code to test against: {problem}",
                pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def loopback_only(claude_path: Path) -> str:
    """Moves this process into a loopback-only network namespace; returns its id.

    Depends on `claude_path` so that npm, which needs the registry, runs before the move.
    """
    try:
        enter_loopback_only()
    except IsolationError as exc:
        problem = str(exc)
    else:
        return namespace_id()
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def claude(claude_path: Path, loopback_only: str) -> ClaudeBinary:
    """The real `claude`, run only inside the loopback-only namespace."""
    binary = ClaudeBinary(claude_path)
    _binaries.append(binary)
    return binary


@pytest.fixture(scope="session")
def shim(claude: ClaudeBinary, tmp_path_factory: pytest.TempPathFactory) -> Shim:
    """The claude-wrap shim, installed once by `claude-wrap install` into a folder of its own."""
    return Shim(install_shim(tmp_path_factory.mktemp("shimbin")), claude)


@pytest.fixture
def fake_api() -> Iterator[FakeAnthropicAPI]:
    with FakeAnthropicAPI() as api:
        yield api


@pytest.fixture
def claude_home(tmp_path: Path, fake_api: FakeAnthropicAPI) -> ClaudeHome:
    """A throwaway HOME and config dir whose ANTHROPIC_BASE_URL is `fake_api`; no login yet."""
    return ClaudeHome(tmp_path, fake_api.url)


@pytest.fixture(scope="session")
def throwaway_ca(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """A CA minted for this session only, and a leaf for Claude's hosts that it signed."""
    return mint_throwaway_ca(tmp_path_factory.mktemp("throwaway-ca"))


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    with TokenServer(tag="e2e") as server:
        yield server


@pytest.fixture
def oauth_proxy(throwaway_ca: CertFiles, token_server: TokenServer) -> Iterator[OAuthProxy]:
    """The proxy that brings the real binary's own refresh to `token_server`; see tlsproxy.py."""
    with OAuthProxy(throwaway_ca, token_server) as proxy:
        yield proxy


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    timings = [t for binary in _binaries for t in binary.timings]
    if not timings:
        return
    terminalreporter.section(
        f"real claude {CLAUDE_CODE_VERSION}: run times (measured, not asserted)"
    )
    for label, seconds in timings:
        terminalreporter.write_line(f"{seconds:6.2f} s  claude {label}")

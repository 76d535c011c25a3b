"""End-to-end tests against the real Claude Code binary (npm `@anthropic-ai/claude-code`).

A version matrix: every case that uses the real binary (`claude_path`, `claude`, `shim`) runs
once per version, with the version as its id (`test_x[2.1.332]`). The versions are pinned in
claude_wrap/versions.py (TESTED); CLAUDE_WRAP_E2E_VERSIONS chooses others (install.py). Before the
first test, every version is installed with npm into `$CLAUDE_WRAP_E2E_CACHE/<version>` (default
`~/.cache/claude-wrap/npm/<version>`), outside the repository; later runs reuse those installs. If
npm fails, that version's tests fail: they never pass silently without the binary.

Right after the installs, the pytest process moves itself into a network namespace that has only
loopback (`netns.py`; needs root or CAP_SYS_ADMIN, else the tests fail with a clear message), so
that the real binary, the fake API and every helper can reach 127.0.0.1 and nothing else.

The harness named here (install.py, netns.py, clients.py, tlsproxy.py, wrapped.py, ...) is in
claude_wrap_testing/, which bench/ shares.

Environment variables:
- CLAUDE_WRAP_SKIP_E2E=1  skip every test in this folder (for a laptop without npm or root;
  CI never sets it).
- CLAUDE_WRAP_E2E_VERSIONS=2.1.332,latest  the versions to test instead of TESTED; `latest` is
  the newest published release (asked of the registry before the namespace move).
- CLAUDE_WRAP_E2E_CACHE   the folder that holds one npm install per version, and the real
  clients of test_clients.py (clients.py: one npm folder, one venv, shared by every version).
- CLAUDE_WRAP_E2E_RECORD=1  rewrite the output samples in samples/<version>/ from this run
  instead of checking this run against them (for a version added to the matrix).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_wrap_testing.clients import ensure_newest_ts_sdk, ensure_npm_clients, ensure_python_sdk
from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.install import InstallError, e2e_versions, ensure_claude
from claude_wrap_testing.isolation import ClaudeBinary, ClaudeHome
from claude_wrap_testing.netns import IsolationError, enter_loopback_only, namespace_id
from claude_wrap_testing.tlsproxy import CertFiles, OAuthProxy, mint_throwaway_ca
from claude_wrap_testing.tokenserver import TokenServer
from claude_wrap_testing.wrapped import Shim, install_shim
from tests.conftest import SERVICE, tally

_binaries: list[ClaudeBinary] = []
# Seconds and test count per version, from each test's report (setup, call and teardown).
_spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])


def _matrix() -> tuple[tuple[str, ...], str | None]:
    """The versions to test and, when they cannot be known, why (reported by `_installs`)."""
    if os.environ.get("CLAUDE_WRAP_SKIP_E2E") == "1":
        return ("skipped",), None
    try:
        return e2e_versions(), None
    except InstallError as exc:
        return ("unknown",), str(exc)


# Resolved at collection, while the process still has the network (`latest` asks the registry).
VERSIONS, _MATRIX_PROBLEM = _matrix()


@pytest.fixture(scope="session", autouse=True)
def _e2e_enabled() -> None:
    # Session-scoped and autouse, so it runs before the install and the namespace move.
    if os.environ.get("CLAUDE_WRAP_SKIP_E2E") == "1":
        pytest.skip("CLAUDE_WRAP_SKIP_E2E=1: end-to-end tests against the real claude skipped")


@pytest.fixture(scope="session")
def _installs(_e2e_enabled: None) -> dict[str, Path | str]:
    """Every version of the matrix installed (npm if needed): its path, or why it failed."""
    if _MATRIX_PROBLEM is not None:
        pytest.fail(_MATRIX_PROBLEM, pytrace=False)
    found: dict[str, Path | str] = {}
    for version in VERSIONS:
        try:
            found[version] = ensure_claude(version)
        except (InstallError, OSError) as exc:
            found[version] = str(exc)
    return found


# The clients' fixtures, each with its installer (clients.py).
_CLIENT_INSTALLERS = {
    "npm_clients": ensure_npm_clients,
    "newest_ts_sdk": ensure_newest_ts_sdk,
    "python_sdk": ensure_python_sdk,
}


@pytest.fixture(scope="session")
def _client_installs(
    request: pytest.FixtureRequest, _e2e_enabled: None
) -> dict[str, Path | str]:
    """The real clients (clients.py) a collected test uses, installed: path, or why it failed.
    A session that runs none of them installs nothing."""
    used = {name for item in request.session.items
            for name in getattr(item, "fixturenames", ()) if name in _CLIENT_INSTALLERS}
    found: dict[str, Path | str] = {}
    for name in sorted(used):
        try:
            found[name] = _CLIENT_INSTALLERS[name]()
        except (InstallError, OSError) as exc:
            found[name] = str(exc)
    return found


def _client(name: str, installs: dict[str, Path | str]) -> Path:
    found = installs.get(name, "not installed")
    if isinstance(found, Path):
        return found
    pytest.fail(f"could not install the clients of {name}: {found}", pytrace=False)


@pytest.fixture(scope="session")
def npm_clients(_client_installs: dict[str, Path | str], loopback_only: str) -> Path:
    """node_modules with Zed's ACP adapter and the TypeScript Agent SDK (clients.py)."""
    return _client("npm_clients", _client_installs)


@pytest.fixture(scope="session")
def newest_ts_sdk(_client_installs: dict[str, Path | str], loopback_only: str) -> Path:
    """node_modules with the newest TypeScript Agent SDK, without its own Claude Code."""
    return _client("newest_ts_sdk", _client_installs)


@pytest.fixture(scope="session")
def python_sdk(_client_installs: dict[str, Path | str], loopback_only: str) -> Path:
    """The python of a venv with the Python Agent SDK (clients.py)."""
    return _client("python_sdk", _client_installs)


@pytest.fixture(scope="session", params=VERSIONS, ids=str)
def claude_version(request: pytest.FixtureRequest) -> str:
    """The version of the matrix this case runs against (the fixture's id)."""
    version: str = request.param
    return version


@pytest.fixture(scope="session")
def claude_path(claude_version: str, _installs: dict[str, Path | str]) -> Path:
    """The installed real `claude` at `claude_version`."""
    found = _installs[claude_version]
    if isinstance(found, Path):
        return found
    # Outside any except block, so the report shows the message alone, not a traceback.
    pytest.fail(f"could not install the real Claude Code {claude_version} to test against: "
                f"{found}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def loopback_only(
    _installs: dict[str, Path | str], _client_installs: dict[str, Path | str]
) -> str:
    """Moves this process into a loopback-only network namespace; returns its id.

    Depends on `_installs` and `_client_installs` so that npm and pip, which need the
    registries, have installed every version of the matrix and the clients before the move.
    """
    try:
        enter_loopback_only()
    except IsolationError as exc:
        problem = str(exc)
    else:
        return namespace_id()
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def claude(claude_path: Path, claude_version: str, loopback_only: str) -> ClaudeBinary:
    """The real `claude`, run only inside the loopback-only namespace."""
    binary = ClaudeBinary(claude_path, version=claude_version)
    _binaries.append(binary)
    return binary


@pytest.fixture(scope="session")
def shim(claude: ClaudeBinary, tmp_path_factory: pytest.TempPathFactory) -> Shim:
    """The claude-wrap shim, installed once by `claude-wrap install` into a folder of its own."""
    return Shim(install_shim(tmp_path_factory.mktemp("shimbin")), claude)


@pytest.fixture
def fake_api(token_server: TokenServer) -> Iterator[FakeAnthropicAPI]:
    """The Messages API, refusing what `token_server` revoked, as the real one does (issue 26);
    a test that installs TokenFamilies points `check_token` at its `access_problem` instead."""
    with FakeAnthropicAPI(check_token=token_server.check) as api:
        yield api
        SERVICE["fake API calls refused for their token"] += api.refused


@pytest.fixture
def claude_home(
    tmp_path: Path, fake_api: FakeAnthropicAPI, token_server: TokenServer
) -> ClaudeHome:
    """A throwaway HOME and config dir whose ANTHROPIC_BASE_URL is `fake_api`; no login yet.
    The logins it writes are registered with `token_server`."""
    return ClaudeHome(tmp_path, fake_api.url, token_server)


@pytest.fixture(scope="session")
def throwaway_ca(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """A CA minted for this session only, and a leaf for Claude's hosts that it signed."""
    return mint_throwaway_ca(tmp_path_factory.mktemp("throwaway-ca"))


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    with TokenServer(tag="e2e") as server:
        yield server
        tally(server)


@pytest.fixture
def oauth_proxy(throwaway_ca: CertFiles, token_server: TokenServer) -> Iterator[OAuthProxy]:
    """The proxy that brings the real binary's own refresh to `token_server`; see tlsproxy.py."""
    with OAuthProxy(throwaway_ca, token_server) as proxy:
        yield proxy


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Adds each case's time (setup to teardown) to its version's total."""
    started = time.monotonic()
    yield
    callspec = getattr(item, "callspec", None)
    version = callspec.params.get("claude_version") if callspec is not None else None
    if version is not None:
        spent = _spent[str(version)]
        spent[0] += time.monotonic() - started
        spent[1] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _spent:
        terminalreporter.section("end-to-end time per Claude Code version (measured)")
        for version, (seconds, cases) in _spent.items():
            terminalreporter.write_line(
                f"{version:>10}  {seconds:7.1f} s  in {int(cases)} cases"
            )
    for binary in _binaries:
        if not binary.timings:
            continue
        terminalreporter.section(
            f"real claude {binary.version}: run times (measured, not asserted)"
        )
        for label, seconds in binary.timings:
            terminalreporter.write_line(f"{seconds:6.2f} s  claude {label}")

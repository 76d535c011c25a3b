"""The real clients users drive Claude Code with, run through the shim (issue 25).

- the TypeScript Agent SDK (npm), `pathToClaudeCodeExecutable` = the shim: it spawns claude with
  stream-json on a stdin that is a socket, kept open and idle between turns;
- the Python Agent SDK (PyPI), `cli_path` = the shim: pipes;
- Zed's ACP adapter (npm), `CLAUDE_CODE_EXECUTABLE` = the shim, driven by a minimal ACP client
  (acp.py) as Zed drives it: itself the TS SDK underneath, with the adapter's own options.

Each against every Claude Code of the matrix, inside the loopback-only namespace, the sandboxed
env of the other tests passed on by the client (both SDKs pass their caller's environment on).
The drivers, the pins and the installs are in claude_wrap_testing (drivers/, clients.py). Every
wait for an answer has a deadline: a shim that stalls a client fails the case instead of hanging
the suite.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import psutil
import pytest

from claude_wrap_testing.clients import ACP_ADAPTER, PY_DRIVER, TS_DRIVER
from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeHome, new_tokens, now_ms
from claude_wrap_testing.tlsproxy import OAuthProxy
from claude_wrap_testing.tokenserver import DEFAULT_SCOPE, TokenServer
from claude_wrap_testing.wrapped import Shim

from .acp import AcpClient
from .test_repair_real import release_scopes
from .test_wrapped import OAUTH_EXTRA
from .test_wrapped_watch import wait_for

# A turn answered by the fake API takes a second or two (2.1.87 under node: a few more); a
# stalled relay never answers. This bounds the hang, it times nothing.
DEADLINE = 90
# ts-sdk: the SDK at the version Zed's adapter pins; ts-sdk-newest: the newest release.
CLIENTS = ["ts-sdk", "ts-sdk-newest", "py-sdk", "acp"]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def assert_all_exit(processes: list[psutil.Process]) -> None:
    """The shim and claude under a client end once the client is gone: none is left behind."""
    _, alive = psutil.wait_procs(processes, timeout=DEADLINE)
    for left in alive:
        left.kill()
    assert [p.pid for p in alive] == [], "left running after the client ended"


class Client(Protocol):
    def turn(self, text: str) -> str:
        """Sends one user turn; returns the answer's text (fails the test on an error)."""

    def close(self) -> None: ...


class SdkDriver:
    """drivers/sdk_ts.mjs or drivers/sdk_py.py: a line on its stdin is a turn, a JSON line on
    its stdout the turn's result."""

    def __init__(self, command: list[str], home: ClaudeHome, env: dict[str, str]) -> None:
        self.errors = home.root / "client.stderr"
        with self.errors.open("wb") as err:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                cwd=home.cwd,
            )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(b"")

    def turn(self, text: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()
        try:
            line = self.lines.get(timeout=DEADLINE)
        except queue.Empty:
            pytest.fail(f"no answer to {text!r} in {DEADLINE} s: the client hangs\n"
                        + self.errors.read_text(errors="replace")[-2000:])
        assert line, "the client exited without an answer:\n" + self.errors.read_text()[-2000:]
        result: dict[str, Any] = json.loads(line)
        assert (result["type"], result["is_error"]) == ("result", False), result
        answer: str = result["result"]
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None
        children = descendants(self.process.pid)
        self.process.stdin.close()
        try:
            code = self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the client did not exit within {DEADLINE} s of its stdin's end")
        assert code == 0, self.errors.read_text()[-2000:]
        assert_all_exit(children)


class ZedAdapter:
    """The ACP adapter under a minimal ACP client: one session, one prompt per turn."""

    def __init__(self, modules: Path, home: ClaudeHome, env: dict[str, str]) -> None:
        self.errors = home.root / "client.stderr"
        with self.errors.open("wb") as err:
            agent = subprocess.Popen(
                ["node", str(modules / ACP_ADAPTER / "dist" / "index.js")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                cwd=home.cwd,
            )
        self.acp = AcpClient(agent, timeout=DEADLINE)
        assert self.acp.initialize()["protocolVersion"] == 1
        self.session = self.acp.new_session(str(home.cwd))

    def turn(self, text: str) -> str:
        answer = self.acp.prompt(self.session, text)
        assert answer.stop_reason == "end_turn", answer
        return answer.text

    def close(self) -> None:
        children = descendants(self.acp.agent.pid)
        self.acp.close()
        assert_all_exit(children)


@pytest.fixture(params=CLIENTS)
def client_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


class Opener:
    """Starts the chosen client on the shim in one test's home."""

    def __init__(
        self, kind: str, shim: Shim, home: ClaudeHome, npm: Path, newest: Path, python: Path
    ) -> None:
        self.kind, self.shim, self.home, self.python = kind, shim, home, python
        self.npm, self.newest = npm, newest
        self.opened: list[Client] = []

    def open(self, env: dict[str, str], *, session: bool) -> Client:
        mode = "session" if session else "once"
        executable = str(self.shim.path)
        client: Client
        if self.kind in ("ts-sdk", "ts-sdk-newest"):
            modules = self.npm if self.kind == "ts-sdk" else self.newest
            client = SdkDriver(["node", str(TS_DRIVER), str(modules), executable, mode],
                               self.home, env)
        elif self.kind == "py-sdk":
            client = SdkDriver([str(self.python), str(PY_DRIVER), executable, mode],
                               self.home, env)
        else:  # Zed's own options: its binary by this variable; root needs IS_SANDBOX
            client = ZedAdapter(self.npm, self.home,
                                {**env, "CLAUDE_CODE_EXECUTABLE": executable, "IS_SANDBOX": "1"})
        self.opened.append(client)
        return client


@pytest.fixture
def clients(
    client_kind: str, shim: Shim, claude_home: ClaudeHome, npm_clients: Path,
    newest_ts_sdk: Path, python_sdk: Path,
) -> Iterator[Opener]:
    opener = Opener(client_kind, shim, claude_home, npm_clients, newest_ts_sdk, python_sdk)
    yield opener
    for client in opener.opened:
        if isinstance(client, ZedAdapter):
            client.close()  # an SDK driver has been closed by its test


def one_shot(clients: Opener, env: dict[str, str], prompt: str) -> str:
    """One query (the SDKs' query() with a string; for Zed a session with one prompt)."""
    client = clients.open(env, session=False)
    answer = client.turn(prompt)
    if isinstance(client, SdkDriver):
        client.close()
    return answer


def test_a_healthy_login_answers(
    clients: Opener, shim: Shim, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
) -> None:
    fake_api.answer = f"healthy ({clients.kind})"
    tokens = new_tokens()
    claude_home.write_credentials(tokens, oauth_extra=OAUTH_EXTRA)
    started = time.monotonic()
    answer = one_shot(clients, shim.env(claude_home, token_server.url), "hello")
    shim.real.note_time(f"({clients.kind}, shim) first answer", time.monotonic() - started)
    assert answer == fake_api.answer
    assert token_server.requests == []
    assert fake_api.tokens_used() == [tokens.access]


def assert_stored(home: ClaudeHome, written: dict[str, Any], scopes: list[str]) -> None:
    """The login on disk has `scopes`, and every other field as written."""
    stored = home.read_credentials()
    assert stored["claudeAiOauth"]["scopes"] == scopes
    assert {k: stored["claudeAiOauth"][k] for k in OAUTH_EXTRA} == OAUTH_EXTRA
    assert stored["mcpOAuth"] == written["mcpOAuth"]


def test_a_login_without_scopes_is_repaired_locally_and_answers(
    clients: Opener, shim: Shim, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI,
    token_server: TokenServer, claude_version: str,
) -> None:
    # Another tool rewrote a good login without its scopes, one claude-wrap never saw: the
    # scopes the release asks for are put back with the stored token, no token request.
    fake_api.answer = f"repaired ({clients.kind})"
    tokens = new_tokens()
    written = claude_home.write_credentials(tokens, scopes=None, oauth_extra=OAUTH_EXTRA)
    answer = one_shot(clients, shim.env(claude_home, token_server.url), "hello")
    assert answer == fake_api.answer
    assert token_server.requests == []
    assert fake_api.tokens_used() == [tokens.access]
    assert_stored(claude_home, written, release_scopes(claude_version))


def test_a_due_login_without_scopes_is_refreshed_and_answers(
    clients: Opener, shim: Shim, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
) -> None:
    fake_api.answer = f"refreshed ({clients.kind})"
    tokens = new_tokens()
    written = claude_home.write_credentials(
        tokens, scopes=None, oauth_extra=OAUTH_EXTRA, expires_at=now_ms() - 60_000
    )
    fake_api.expire(tokens.access)  # only a refreshed token is answered
    answer = one_shot(clients, shim.env(claude_home, token_server.url), "hello")
    assert answer == fake_api.answer
    assert token_server.refresh_tokens_seen == [tokens.refresh]
    [issued] = token_server.issued
    assert fake_api.tokens_used() == [issued["access_token"]]
    assert_stored(claude_home, written, DEFAULT_SCOPE.split(" "))


def test_scopes_stripped_between_two_turns_are_restored_without_a_token_request(
    clients: Opener, shim: Shim, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
) -> None:
    fake_api.answer = f"two turns ({clients.kind})"
    tokens = new_tokens()
    written = claude_home.write_credentials(tokens, oauth_extra=OAUTH_EXTRA)
    client = clients.open(shim.env(claude_home, token_server.url), session=True)
    assert client.turn("first") == fake_api.answer
    # Another tool rewrites the login without scopes while the session sits idle, stdin open.
    stripped = json.loads(json.dumps(written))
    del stripped["claudeAiOauth"]["scopes"]
    path = claude_home.credentials_path
    with path.open("r+b") as f:
        f.truncate(0)
        f.write(json.dumps(stripped).encode())
    wait_for(lambda: "scopes" in _oauth_or_empty(claude_home), "the guard's repair", DEADLINE)
    assert client.turn("second") == fake_api.answer
    client.close()
    assert token_server.requests == []  # a local repair: the token was good
    assert set(fake_api.tokens_used()) == {tokens.access}
    assert len(fake_api.messages_calls()) >= 2


def test_a_401_in_the_middle_of_a_session_is_repaired_and_answered(
    clients: Opener, shim: Shim, claude_home: ClaudeHome, fake_api: FakeAnthropicAPI,
    token_server: TokenServer, oauth_proxy: OAuthProxy,
) -> None:
    fake_api.answer = f"after a 401 ({clients.kind})"
    tokens = new_tokens()
    written = claude_home.write_credentials(tokens, oauth_extra=OAUTH_EXTRA)
    # Both can refresh, as on a user's machine: the shim at the token server, the real
    # binary through the proxy to the same server.
    env = shim.env(claude_home, token_server.url, **oauth_proxy.env())
    client = clients.open(env, session=True)
    assert client.turn("first") == fake_api.answer
    refused: list[str] = []

    def refuse_once(token: str) -> str | None:
        # The service revoked the token after a rotation elsewhere; it says so once.
        if token == tokens.access and not refused:
            refused.append(token)
            return "revoked"
        return None

    fake_api.check_token = refuse_once
    assert client.turn("second") == fake_api.answer
    client.close()
    assert refused == [tokens.access]
    # Who repaired it is the release's own business (seen): 2.1.197 and later refresh
    # through the proxy (one request; 2.1.197's write drops refreshTokenExpiresAt, its own
    # doing), 2.1.87 retries with the same token. Never a refresh token spent twice, never
    # a login narrowed, and the answer came with a token the service took.
    seen = token_server.refresh_tokens_seen
    assert seen in ([], [tokens.refresh])
    stored = claude_home.read_credentials()["claudeAiOauth"]
    assert set(stored["scopes"]) >= set(written["claudeAiOauth"]["scopes"])
    assert stored["accessToken"] == fake_api.messages_calls()[-1].token


def _oauth_or_empty(home: ClaudeHome) -> dict[str, Any]:
    """The stored login, {} while a writer is half-way through the file."""
    try:
        return dict(home.read_credentials()["claudeAiOauth"])
    except (ValueError, KeyError):
        return {}

"""Faults at the token endpoint. For each: the exit status of `claude-wrap refresh`, the one line
the user sees, the file unchanged, claude still launched by the shim, and the requests bounded.

Nothing here leaves the machine: the unresolvable host is under the reserved `.invalid` TLD and
is looked up inside a network namespace with no interface up (`unshare --net`), so not even the
DNS query is sent; every other URL is loopback.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from claude_wrap_testing.tokenserver import Answer, Reply, Request, TokenServer
from tests.conftest import WRAP
from tests.reliability.conftest import FIGURES, RSandbox, count_requests, netns_prefix, user_lines
from tests.reliability.helpers import expired

MAX_ATTEMPTS = 4  # oauth.MAX_ATTEMPTS: the bound on requests per run
UNAVAILABLE = r"the token endpoint is unavailable \({reason}, (?P<n>\d) attempts?\); {when}"
UNKNOWN = (
    r"the token endpoint gave no usable answer \({reason}\); the refresh token was not sent "
    r"again, as it may already be spent; the file was left as it was; if claude then says you "
    r"are logged out, run `claude /login` to log in again"
)


@dataclass
class Fault:
    line: str  # regex of the one line, after "claude-wrap: "
    exit: int
    replies: list[Reply] = field(default_factory=list)
    budget: str = "1.5"
    shim_budget: str = "1.5"  # the shim's run need not wait out the full bound again
    url: str = ""  # "refused", "invalid", "tls-plain", "tls-self-signed", or "" (the server)
    requests: int | None = None  # exact count; None: the attempts the line reports


def unavailable(reason: str, when: str = "try again later") -> str:
    return UNAVAILABLE.format(reason=reason, when=when)


FAULTS = {
    "connection-refused": Fault(unavailable("connection refused"), 5, url="refused"),
    "name-not-resolved": Fault(
        unavailable("the host name could not be resolved"), 5, url="invalid"
    ),
    "tls-plain-http-port": Fault(
        unavailable("the TLS handshake failed"), 5, url="tls-plain", requests=0
    ),
    "tls-self-signed": Fault(unavailable("the TLS handshake failed"), 5, url="tls-self-signed"),
    "http-500": Fault(unavailable("HTTP 500"), 5, [Reply(500, b"oops")] * 4),
    "http-502": Fault(unavailable("HTTP 502"), 5, [Reply(502, b"bad gateway")] * 4, budget="5"),
    "http-429-retry-after-1": Fault(
        unavailable("HTTP 429", r"try again in 1 s"),
        5,
        [Reply(429, {"error": "rate_limited"}, {"Retry-After": "1"})] * 4,
    ),
    "http-429-retry-after-3600": Fault(
        unavailable("HTTP 429", r"try again in 3600 s"),
        5,
        [Reply(429, {"error": "rate_limited"}, {"Retry-After": "3600"})],
        requests=1,
    ),
    "http-404": Fault(
        unavailable("unexpected HTTP 404"), 5, [Reply(404, {"error": "not_found"})], requests=1
    ),
    "hang-past-the-timeout": Fault(
        UNKNOWN.format(reason="no answer within 2 s"), 6, [Reply(hang=True)], "2", "2", requests=1
    ),
    "truncated-body": Fault(
        UNKNOWN.format(reason="the connection failed mid-request: RemoteProtocolError"),
        6,
        [Reply(200, {"access_token": "x" * 40, "expires_in": 28800}, truncate=True)],
        requests=1,
    ),
    "closed-without-answer": Fault(
        UNKNOWN.format(reason="the connection failed mid-request: RemoteProtocolError"),
        6,
        [Reply(close=True)],
        requests=1,
    ),
    "non-json-body": Fault(
        UNKNOWN.format(reason="the answer is not JSON"),
        6,
        [Reply(200, b"<html>maintenance</html>")],
        requests=1,
    ),
    "200-without-access-token": Fault(
        UNKNOWN.format(reason="the answer has no access_token"),
        6,
        [Reply(200, {"token_type": "Bearer", "expires_in": 28800})],
        requests=1,
    ),
    "invalid-grant-400": Fault(
        # Then why the login died (judging/cause.py): a token claude-wrap never sent.
        r"the token endpoint rejected the stored refresh token \(HTTP 400, invalid_grant\): "
        r"another machine or program spent this login's refresh token \(the token endpoint "
        r"refused a refresh token claude-wrap had never sent\): .*run `claude /login`.*"
        # The shim's run after `refresh`: the same token, known dead, is not sent again.
        r"(?:; refused at [^;]*, not sent again)?; the file was left as it was",
        4,
        [Reply(400, {"error": "invalid_grant", "error_description": "nope"})],
        requests=1,
    ),
    "invalid-grant-401": Fault(
        # Then why the login died (judging/cause.py): a token claude-wrap never sent.
        r"the token endpoint rejected the stored refresh token \(HTTP 401, invalid_grant\): "
        r"another machine or program spent this login's refresh token \(the token endpoint "
        r"refused a refresh token claude-wrap had never sent\): .*run `claude /login`.*"
        # The shim's run after `refresh`: the same token, known dead, is not sent again.
        r"(?:; refused at [^;]*, not sent again)?; the file was left as it was",
        4,
        [Reply(401, {"error": "invalid_grant"})],
        requests=1,
    ),
}


class SelfSignedServer:
    """A loopback TLS server with a throwaway self-signed certificate; counts handshakes."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("the TLS fault needs the openssl command to make a throwaway certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def fault_url(
    request: pytest.FixtureRequest, token_server: TokenServer
) -> Iterator[Callable[[Fault], tuple[str, list[str], Callable[[], int]]]]:
    """(url, argv prefix, count of requests or connections) for a fault."""
    closers: list[Callable[[], None]] = []

    def make(fault: Fault) -> tuple[str, list[str], Callable[[], int]]:
        path = "/v1/oauth/token"
        if fault.url == "refused":
            with socket.create_server(("127.0.0.1", 0)) as s:
                port = s.getsockname()[1]  # closed again: nothing listens there
            return f"http://127.0.0.1:{port}{path}", [], lambda: 0
        if fault.url == "invalid":
            return f"https://token-endpoint.invalid{path}", netns_prefix(), lambda: 0
        if fault.url == "tls-plain":
            return (
                f"https://127.0.0.1:{token_server.port}{path}",
                [],
                lambda: len(token_server.requests),
            )
        if fault.url == "tls-self-signed":
            cert, key = request.getfixturevalue("certificate")
            server = SelfSignedServer(cert, key)
            closers.append(server.close)
            return f"https://127.0.0.1:{server.port}{path}", [], lambda: server.connections
        return token_server.url, [], lambda: len(token_server.requests)

    yield make
    for close in closers:
        close()


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_at_the_token_endpoint(
    name: str,
    sandbox: RSandbox,
    token_server: TokenServer,
    fault_url: Callable[[Fault], tuple[str, list[str], Callable[[], int]]],
) -> None:
    fault = FAULTS[name]
    raw = sandbox.write(expired(name))
    url, prefix, seen = fault_url(fault)
    env = {**sandbox.env, "CLAUDE_WRAP_TOKEN_URL": url, "CLAUDE_WRAP_REFRESH_TIMEOUT": fault.budget}
    pattern = re.compile("claude-wrap: " + fault.line)
    total = 0

    # `claude-wrap refresh`: its exit status and one line.
    token_server.script(*fault.replies)
    result = subprocess.run(
        [*prefix, *WRAP, "refresh"], env=env, capture_output=True, text=True, timeout=60
    )
    sandbox.keep("refresh stderr", result.stderr)
    sandbox.keep("refresh stdout", result.stdout)
    assert result.returncode == fault.exit, result.stderr
    [line] = user_lines(result.stderr)
    match = pattern.fullmatch(line)
    assert match, line
    requests = seen()
    expected = fault.requests
    if expected is None:
        expected = int(match["n"]) if fault.url in ("", "tls-self-signed") else 0
    assert requests == expected
    assert int(match.groupdict().get("n") or 1) <= MAX_ATTEMPTS
    assert "Traceback" not in result.stderr
    assert sandbox.creds.read_bytes() == raw, "the file changed"
    total += requests

    # The shim: the same line, then claude runs all the same.
    token_server.script(*fault.replies)
    runs = len(sandbox.runs())
    shim_env = {**sandbox.shim_env(), **{k: env[k] for k in ("CLAUDE_WRAP_TOKEN_URL",)}}
    shim_env["CLAUDE_WRAP_REFRESH_TIMEOUT"] = min(fault.budget, fault.shim_budget, key=float)
    shim = subprocess.run(
        [*prefix, str(sandbox.shim), "hi"], env=shim_env, capture_output=True, timeout=60
    )
    sandbox.keep("shim stderr", shim.stderr)
    assert shim.returncode == 0, shim.stderr
    assert len(sandbox.runs()) == runs + 1, "claude was not launched"
    [shim_line] = user_lines(shim.stderr)
    assert shim_line.endswith(" (running claude anyway)")
    assert pattern.fullmatch(shim_line.removesuffix(" (running claude anyway)")), shim_line
    assert sandbox.creds.read_bytes() == raw, "the file changed"
    assert seen() - requests <= MAX_ATTEMPTS
    total = seen()
    FIGURES["faults: cases"] += 1
    FIGURES["faults: runs"] += 2
    FIGURES["faults: requests or connections seen"] += total
    count_requests(token_server)


def test_a_slow_answer_within_the_budget_succeeds(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    sandbox.write(expired("slow"))
    env = {"CLAUDE_WRAP_REFRESH_TIMEOUT": "5"}
    token_server.default = _slow(token_server.default, 1.0)
    result = sandbox.wrap("refresh", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refreshed (expired -> ok)")
    assert user_lines(result.stderr) == []
    sandbox.write(expired("slow-shim"))
    shim = sandbox.claude("hi", env=sandbox.shim_env(**env))
    assert shim.returncode == 0
    assert user_lines(shim.stderr) == []
    assert sandbox.runs()[-1]["access_token"] == token_server.issued[-1]["access_token"]
    assert count_requests(token_server) == 2
    FIGURES["faults: cases"] += 1
    FIGURES["faults: runs"] += 2


def test_without_debug_the_user_sees_exactly_one_line(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(expired("quiet"))
    token_server.script(Reply(400, {"error": "invalid_grant"}))
    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_DEBUG": "0"})
    assert result.returncode == 4
    assert result.stderr == (
        "claude-wrap: the token endpoint rejected the stored refresh token (HTTP 400, "
        "invalid_grant): another machine or program spent this login's refresh token (the token "
        "endpoint refused a refresh token claude-wrap had never sent): another machine or program "
        "holds a copy of this login: run `claude /login`, then make the other one a guest of "
        "this machine (docs/guests.md) or stop it refreshing, or its next refresh ends this "
        "login again; the file was left as it was\n"
    )
    assert result.stdout == ""
    assert sandbox.creds.read_bytes() == raw
    assert count_requests(token_server) == 1


def _slow(step: Answer, delay: float) -> Answer:
    def make(server: TokenServer, request: Request) -> Reply:
        reply = step(server, request)
        reply.delay = delay
        return reply

    return make


def test_a_slow_start_does_not_eat_the_request_budget(
    sandbox: RSandbox, token_server: TokenServer, tmp_path: Path
) -> None:
    """On a loaded machine building the HTTP client (loading the CA bundle) can take seconds.
    The herd test once saw a shim give up with no request at all ('out of time, 1 attempt') and
    run claude with the expired token. Here a big CA bundle makes that start slow on purpose."""
    import certifi

    bundle = tmp_path / "big-ca-bundle.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes() * 15)
    sandbox.write(expired("slowstart"))
    env = {"SSL_CERT_FILE": str(bundle), "CLAUDE_WRAP_REFRESH_TIMEOUT": "0.5"}
    result = sandbox.wrap("refresh", env=env)
    assert result.returncode == 0, result.stderr
    assert count_requests(token_server) == 1
    sandbox.write(expired("slowstart-shim"))
    shim = sandbox.claude("hi", env=sandbox.shim_env(**env))
    assert user_lines(shim.stderr) == [], shim.stderr
    assert sandbox.runs()[-1]["access_token"] == token_server.issued[-1]["access_token"]
    FIGURES["faults: cases"] += 1
    FIGURES["faults: runs"] += 2

"""Secrets: temp files 0600 from the moment they exist, plain http refused for any token URL that
is not loopback, and no token in any process's argv or in the child's environment.

(Every test of this suite also scans its captured outputs and every log file for every token it
used, in debug mode: see conftest.secrets_scan.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import psutil
import pytest

from claude_wrap_testing.tokenserver import Answer, Reply, Request, TokenServer
from tests.conftest import WRAP
from tests.reliability.conftest import (
    FIGURES,
    RSandbox,
    count_requests,
    netns_prefix,
    user_lines,
    watch,
)
from tests.reliability.helpers import argv_env_leaks, expired

CREATE = re.compile(
    r'^\d+ +(openat|open|creat|mkdir|mkdirat)\((?:AT_FDCWD, )?"([^"]+)", (.*)\) = \d+'
)
CHMOD = re.compile(r"^\d+ +(chmod|fchmod|fchmodat|fchmodat2)\(")


def test_every_file_it_creates_is_private_from_birth(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    """strace every file and folder `claude-wrap refresh` creates, under umask 000: each is
    created 0600 (folders 0700) by the creating call itself, and nothing is chmod-ed after."""
    if shutil.which("strace") is None:
        pytest.fail("this test needs strace (apt-get install strace)")
    sandbox.write(expired("birth"))
    trace = sandbox.root / "strace.txt"
    result = subprocess.run(
        ["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=%file,fchmod", *WRAP, "refresh"],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0),
    )
    sandbox.keep("refresh stderr", result.stderr)
    assert result.returncode == 0, result.stderr
    created: dict[str, str] = {}
    for line in trace.read_text().splitlines():
        assert not CHMOD.match(line), f"a mode changed after creation: {line}"
        m = CREATE.match(line)
        if not m or str(sandbox.root) not in m[2]:
            continue
        call, path, rest = m.groups()
        if call.startswith("mkdir") or "O_CREAT" in rest:
            created[path] = rest.split(",")[-1].strip()
    temps = [p for p in created if ".credentials.json.tmp." in p]
    assert temps, "no temp file was created"
    assert any(p.endswith(".log") for p in created)
    for path, mode in created.items():
        # (a lock folder is made as `<lock>.cw-<pid>-<hex>` and renamed into place: lock.py)
        if os.path.isdir(path) or path.endswith(".lock") or ".lock.cw-" in path:
            assert mode in ("0700",), (path, mode)
        else:
            assert mode == "0600", (path, mode)
    assert sandbox.creds.stat().st_mode & 0o777 == 0o600
    assert sandbox.log.stat().st_mode & 0o777 == 0o600
    FIGURES["secrets: files and folders created, all private at birth"] += len(created)


def test_the_temp_file_is_0600_while_the_request_is_out(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    sandbox.write(expired("inflight"))
    token_server.script(Reply(hang=True))
    proc = subprocess.Popen(
        [*WRAP, "refresh"],
        env={**sandbox.env, "CLAUDE_WRAP_REFRESH_TIMEOUT": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.umask(0),  # noqa: PLW1509 - nothing else runs in the child
    )
    try:
        for _ in range(400):
            if token_server.requests:
                break
            time.sleep(0.025)
        temps = [p for p in sandbox.cfg.iterdir() if ".tmp." in p.name]
        assert len(temps) == 1, temps
        assert temps[0].stat().st_mode & 0o777 == 0o600
    finally:
        _, err = proc.communicate(timeout=60)
        sandbox.keep("stderr", err)
    assert proc.returncode == 6
    assert [p for p in sandbox.cfg.iterdir() if ".tmp." in p.name] == []


NOT_LOOPBACK = [
    "http://example.com/v1/oauth/token",
    "HTTP://EXAMPLE.COM/v1/oauth/token",
    "http://127.0.0.1.nip.io/v1/oauth/token",
    "http://localhost.example/v1/oauth/token",
    "http://0.0.0.0/v1/oauth/token",
    "http://10.0.0.1:8080/v1/oauth/token",
    "http://[::ffff:8.8.8.8]/v1/oauth/token",
    "http://127.0.0.1@example.com/v1/oauth/token",
    "ftp://127.0.0.1/v1/oauth/token",
    "platform.claude.com/v1/oauth/token",
]


@pytest.mark.parametrize("url", NOT_LOOPBACK)
def test_plain_http_is_refused_for_any_url_that_is_not_loopback(
    sandbox: RSandbox, url: str
) -> None:
    """Run in a network namespace with nothing up: even a slip could not send a byte out."""
    raw = sandbox.write(expired("http"))
    env = {**sandbox.env, "CLAUDE_WRAP_TOKEN_URL": url}
    result = subprocess.run(
        [*netns_prefix(), *WRAP, "refresh"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    sandbox.keep("stderr", result.stderr)
    assert result.returncode == 2, result.stderr
    [line] = user_lines(result.stderr)
    assert line.startswith("claude-wrap: "), line
    assert "must be https" in line or "is not an https URL" in line, line
    assert sandbox.creds.read_bytes() == raw
    FIGURES["secrets: non-loopback http URLs refused"] += 1


def test_a_redirect_never_carries_the_token_elsewhere(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(expired("redirect"))
    token_server.script(Reply(307, b"", {"Location": "http://example.com/v1/oauth/token"}))
    result = sandbox.wrap("refresh")
    assert result.returncode == 5
    [line] = user_lines(result.stderr)
    assert "unexpected HTTP 307" in line
    assert count_requests(token_server) == 1
    assert sandbox.creds.read_bytes() == raw


@pytest.mark.parametrize("how", ["shim", "refresh"])
def test_no_token_in_argv_or_environment_of_any_process(
    sandbox: RSandbox, token_server: TokenServer, how: str
) -> None:
    """Sample argv and environ of the wrapper and its children (psutil) all along the run: while
    the request is out and while claude runs."""
    old = expired(f"argv-{how}")
    sandbox.write(old)
    token_server.default = _slow(token_server.default, 0.8)
    if how == "shim":
        argv = [str(sandbox.shim), "hi"]
        env = sandbox.shim_env(FAKE_CLAUDE_SLEEP="1.5")
    else:
        argv = [*WRAP, "refresh"]
        env = sandbox.env
    proc = subprocess.Popen(
        argv, env=env, cwd=sandbox.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    tokens = {old["claudeAiOauth"]["accessToken"], old["claudeAiOauth"]["refreshToken"]}
    seen = {"wrapper": 0, "claude": 0}
    leaks: list[str] = []
    try:
        while proc.poll() is None:
            tokens |= watch().tokens()
            try:
                root = psutil.Process(proc.pid)
                family = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in family:
                cmd, found = argv_env_leaks(p, tokens)
                if "fakebin/claude" in cmd:
                    seen["claude"] += 1
                elif cmd:
                    seen["wrapper"] += 1
                leaks += [f"{cmd[:60]}: {t}" for t in found]
            time.sleep(0.01)
    finally:
        _, err = proc.communicate(timeout=60)
        sandbox.keep("stderr", err)
    assert proc.returncode == 0, err
    assert not leaks, leaks
    assert seen["wrapper"] > 0
    if how == "shim":
        assert seen["claude"] > 0, "never saw claude running"
        assert sandbox.runs()[-1]["access_token"] == token_server.issued[-1]["access_token"]
    assert count_requests(token_server) == 1
    FIGURES["secrets: argv/environ samples"] += seen["wrapper"] + seen["claude"]


def _slow(step: Answer, delay: float) -> Answer:
    def make(server: TokenServer, request: Request) -> Reply:
        reply = step(server, request)
        reply.delay = delay
        return reply

    return make

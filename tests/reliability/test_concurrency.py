"""Many processes, one expired login: one token request, everyone ends with the new token, and
a reader polling the file never sees it partial or missing.
Knob: CLAUDE_WRAP_CONCURRENCY (default 32 processes, half shims, half `claude-wrap refresh`).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading

from claude_wrap_testing.tokenserver import Reply, TokenServer, ok
from tests.conftest import WRAP
from tests.reliability.conftest import FIGURES, RSandbox, count_requests
from tests.reliability.helpers import expired, temp_files

PROCESSES = int(os.environ.get("CLAUDE_WRAP_CONCURRENCY") or 32)


def test_many_processes_one_request_all_end_with_the_new_token(
    sandbox: RSandbox, token_server: TokenServer
) -> None:
    old = expired("herd")
    sandbox.write(old)
    make = ok()
    # A slow answer keeps the race open while every process is starting.
    token_server.default = lambda server, request: _slow(make(server, request))
    # The bound on a lock wait, not a timing claim: 32 cold starts on two busy cores.
    env = {**sandbox.shim_env(), "CLAUDE_WRAP_LOCK_TIMEOUT": "60"}

    reads = {"whole": 0}
    problems: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                raw = sandbox.creds.read_bytes()
            except FileNotFoundError:
                problems.append("missing")
                continue
            try:
                token = json.loads(raw)["claudeAiOauth"]["accessToken"]
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"partial: {exc}: {raw[:60]!r}")
                continue
            reads["whole"] += 1
            if token != old["claudeAiOauth"]["accessToken"] and not token.startswith(
                "sk-ant-oat01-test-access-"
            ):
                problems.append(f"unknown token {token[:20]}")

    polling = threading.Thread(target=reader)
    polling.start()
    procs = []
    try:
        for i in range(PROCESSES):
            argv = [*WRAP, "refresh"] if i % 2 else [str(sandbox.shim), "hi"]
            procs.append(
                subprocess.Popen(
                    argv,
                    env=env,
                    cwd=sandbox.root,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        stop.set()
        polling.join()

    for (out, err), p, i in zip(outs, procs, range(PROCESSES), strict=True):
        sandbox.keep(f"process {i} stderr", err)
        sandbox.keep(f"process {i} stdout", out)
        assert p.returncode == 0, (i, err)
    assert count_requests(token_server) == 1
    new = sandbox.oauth()["accessToken"]
    assert new == token_server.issued[0]["access_token"]
    runs = sandbox.runs()
    assert len(runs) == PROCESSES // 2
    stale = [
        outs[i][1].decode(errors="replace")
        for i, p in enumerate(procs)
        if any(r["pid"] == p.pid and r["access_token"] != new for r in runs)
    ]
    assert not stale, f"a claude started with the old token; its shim said: {stale}"
    assert {r["access_token"] for r in runs} == {new}
    assert not problems, problems[:5]
    assert reads["whole"] > 0
    assert temp_files(sandbox.cfg) == []
    FIGURES["concurrency: processes"] += PROCESSES
    FIGURES["concurrency: token requests"] += len(token_server.requests)
    FIGURES["concurrency: whole reads by the polling reader"] += reads["whole"]
    FIGURES["concurrency: partial or missing reads"] += len(problems)


def _slow(reply: Reply) -> Reply:
    reply.delay = 0.5
    return reply

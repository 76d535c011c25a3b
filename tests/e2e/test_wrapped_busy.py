"""The shim and the real `claude` when another Claude Code process holds the refresh lock
(docs/protocol.md section 10): the shim waits for that lock, never refreshes over it, and runs
claude again once the holder has let go, with the token the holder stored.

A stand-in for the real binary (CLAUDE_WRAP_REAL_CLAUDE, as wrapped.STRIP_ONCE) does, on its first
run only, after the shim's pre-flight: the access token expires and the two refresh locks appear,
held by "another process" (this test), which has not finished; then it execs the real binary.
Once that first claude has exited, the test plays the holder finishing its refresh: a new token
in the file, the locks released.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeBinary, ClaudeHome, new_tokens, now_ms
from claude_wrap_testing.tokenserver import TokenServer
from claude_wrap_testing.wrapped import Shim

from .test_binary_forms import BUSY_PRINT, has_forms
from .test_wrapped import FORMATS

LOCK_ONCE = """#!{python}
import json, os, sys
marker = {marker!r}
if not os.path.exists(marker) and sys.argv[1:] != ["--version"]:
    cfg = os.environ["CLAUDE_CONFIG_DIR"]
    path = os.path.join(cfg, ".credentials.json")
    with open(path) as f:
        data = json.load(f)
    data["claudeAiOauth"]["expiresAt"] = {expired}
    tmp = path + ".expire"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)
    os.mkdir(os.path.join(cfg, ".oauth_refresh.lock"))
    os.mkdir(os.path.realpath(cfg) + ".lock")
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("output", ["text", "stream-json"])
def test_a_busy_lock_is_waited_for_and_the_run_retried_with_the_holders_token(
    claude: ClaudeBinary,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    output: str,
) -> None:
    fake_api.answer = f"one clean answer ({output})"
    tokens, fresh = new_tokens(), new_tokens("holder")
    claude_home.write_credentials(tokens)
    folder = claude_home.root / "standin"
    folder.mkdir()
    stand_in, marker = folder / "claude", folder / "locked"
    stand_in.write_text(LOCK_ONCE.format(
        python=sys.executable, marker=str(marker), real=str(claude.path),
        expired=now_ms() - 60_000,
    ))
    stand_in.chmod(0o755)
    env = shim.env(claude_home, token_server.url, CLAUDE_WRAP_REAL_CLAUDE=str(stand_in),
                   CLAUDE_WRAP_LOCK_TIMEOUT="90")
    cfg = claude_home.config_dir
    locks = [cfg / ".oauth_refresh.lock", Path(os.path.realpath(cfg) + ".lock")]
    args, check = FORMATS[output]

    def the_holder_finishes() -> None:
        deadline = time.monotonic() + 120  # bounds a hang only
        while not marker.exists() or not marker.read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        pid = int(marker.read_text())
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # The holder stores its new token, then lets go of its locks (as Claude Code does).
        claude_home.write_credentials(fresh)
        for lock in reversed(locks):
            # 2.1.87 and 2.1.197 count a lock stale after 10 s untouched and may have taken it.
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(lock)

    holder = threading.Thread(target=the_holder_finishes)
    holder.start()
    try:
        run = shim.run(claude_home, "--print", *args, input=b"hello\n", env=env, timeout=180)
    finally:
        holder.join()
    assert marker.exists()
    assert token_server.requests == []  # nobody refreshed: not we, not claude
    if has_forms(claude):
        # The first claude found the lock busy and said so; nothing of it reached the consumer.
        assert (run.returncode, run.err) == (0, ""), run.out
        check(run, fake_api.answer)
        assert BUSY_PRINT not in run.out
        assert fake_api.tokens_used() == [fresh.access]  # the retry, with the holder's token
        assert json.loads(claude_home.credentials_path.read_text())["claudeAiOauth"][
            "accessToken"] == fresh.access
    else:
        # Older releases give up on the lock and send the stored token (accepted here).
        assert (run.returncode, run.err) == (0, ""), run.out
        check(run, fake_api.answer)
        assert fake_api.tokens_used() == [tokens.access]

"""The refresh locks and the refresh request against the real binary (docs/protocol.md section 9).

Both directions of a holder killed mid-refresh: the real claude takes over the locks a SIGKILLed
claude-wrap left, and claude-wrap those a SIGKILLed claude left; then claude-wrap's refresh request
is compared with the one the real binary sent. Releases after 2.1.197 name the holder in
`.oauth_refresh.lock.owner` and take over at once when it proves the holder gone; older ones know
no record and take over only a stale lock (10 s), so for them that is what is asserted. 2.1.337
appends `"parentPid"` to the record (docs/protocol.md section 10); we write it as 2.1.337 does, and
every release of the matrix must still honour it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from claude_wrap.config import versions
from claude_wrap.config.settings import Settings
from claude_wrap.locks import lockowner
from claude_wrap.refresh import binary
from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeBinary, ClaudeHome, new_tokens, now_ms
from claude_wrap_testing.tlsproxy import OAuthProxy
from claude_wrap_testing.tokenserver import Reply, TokenServer
from claude_wrap_testing.wrapped import Shim, start

OWNER = ".oauth_refresh.lock.owner"
# The newest release's record, key by key (2.1.337); 2.1.332's lacks the last.
RECORD_KEYS = ["pid", "procStart", "pidDomain", "pidSpace", "lockBirthtimeMs",
               "legacyLockBirthtimeMs", "parentPid"]


def release(claude: ClaudeBinary) -> tuple[int, ...]:
    found = binary.version_of(str(claude.path), Settings({}))
    parsed = versions.parse(found or "")
    assert parsed is not None, f"no version for {claude.path}"
    return parsed


def knows_owner_records(claude: ClaudeBinary) -> bool:
    return release(claude) > binary.LAST_WITHOUT_PLUGINS  # both arrived after 2.1.197


def writes_parent_pid(claude: ClaudeBinary) -> bool:
    return release(claude) >= (2, 1, 337)


def lock_dirs(home: ClaudeHome) -> list[Path]:
    cfg = home.config_dir
    return [cfg / ".oauth_refresh.lock", Path(os.path.realpath(cfg) + ".lock")]


def wait_for_request(server: TokenServer, count: int = 1) -> None:
    deadline = time.monotonic() + 60
    while len(server.requests) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.requests) >= count, "the refresh never reached the token server"


def wrap_refresh(
    home: ClaudeHome, env: dict[str, str], **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "claude_wrap", "refresh"],
        env={**env, **extra}, cwd=home.cwd, capture_output=True, text=True, timeout=120,
        check=False,
    )


def test_claude_takes_over_the_locks_of_a_killed_claude_wrap(
    claude: ClaudeBinary,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    oauth_proxy: OAuthProxy,
) -> None:
    tokens = new_tokens()
    claude_home.write_credentials(tokens, expires_at=now_ms() - 60_000)
    token_server.script(Reply(hang=True))  # claude-wrap's request is never answered
    wrap = start(
        claude_home, [sys.executable, "-m", "claude_wrap", "refresh"],
        env=shim.env(claude_home, token_server.url),
    )
    try:
        wait_for_request(token_server)
        record = json.loads((claude_home.config_dir / OWNER).read_text())
    finally:
        wrap.kill()
        wrap.wait()
    assert record["pid"] == wrap.pid
    # Written as the newest release writes it, whichever release reads it next.
    assert list(record) == RECORD_KEYS
    assert record["parentPid"] == os.getpid()  # this test started it
    assert all(p.is_dir() for p in lock_dirs(claude_home))
    if not knows_owner_records(claude):
        # This release knows no owner record: it takes over a lock only once stale, after its
        # 10 s; as if those had passed.
        for path in lock_dirs(claude_home):
            when = time.time() - 11
            os.utime(path, (when, when))
    # Fresh locks (for the newest release): only our owner record lets it in before 60 s.
    run = claude.run(claude_home, "--print", input=b"hello\n",
                     env=claude_home.env(**oauth_proxy.env()))
    assert (run.returncode, run.out) == (0, fake_api.answer + "\n"), run.out + run.err
    assert token_server.refresh_tokens_seen == [tokens.refresh, tokens.refresh]
    [issued] = token_server.issued
    assert claude_home.read_credentials()["claudeAiOauth"]["accessToken"] == issued["access_token"]
    refresh_lock, legacy_lock = lock_dirs(claude_home)
    assert not legacy_lock.exists()
    if knows_owner_records(claude):
        assert not refresh_lock.exists()
    # (2.1.87 takes the legacy lock only: it leaves our `.oauth_refresh.lock`, as it would any.)
    # A release that knows records removes ours with the lock; an older one leaves it, harmless:
    # it names a folder that is gone (birth time), so nobody trusts it again.
    assert (claude_home.config_dir / OWNER).exists() != knows_owner_records(claude)


def test_claude_wrap_takes_over_the_locks_of_a_killed_claude(
    claude: ClaudeBinary,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    oauth_proxy: OAuthProxy,
) -> None:
    tokens = new_tokens()
    claude_home.write_credentials(tokens, expires_at=now_ms() - 60_000)
    token_server.script(Reply(hang=True))  # the real claude's request is never answered
    real = start(claude_home, [str(claude.path), "--print"], input=b"hello\n",
                 env=claude_home.env(**oauth_proxy.env()))
    try:
        wait_for_request(token_server)
        record_file = claude_home.config_dir / OWNER
        record = json.loads(record_file.read_text()) if record_file.exists() else None
        held = [p for p in lock_dirs(claude_home) if p.is_dir()]
    finally:
        real.kill()
        real.wait()
    # Every release takes the legacy lock; 2.1.87 that one only.
    assert lock_dirs(claude_home)[1] in held
    # A lock wait far shorter than any stale time.
    result = wrap_refresh(claude_home, shim.env(claude_home, token_server.url),
                          CLAUDE_WRAP_LOCK_TIMEOUT="5")
    if knows_owner_records(claude):
        assert record is not None, "this release wrote no owner record"
        # Its record in the form we compute for ourselves: same machine, pid namespace, lock.
        assert record["pidDomain"] == lockowner.pid_domain()
        assert record["pidSpace"] == lockowner.pid_space()
        # Its keys, in its order: ours are the newest release's (parentPid appended last).
        if writes_parent_pid(claude):
            assert list(record) == RECORD_KEYS
            assert record["parentPid"] == os.getpid()  # this test started it
        else:
            assert list(record) == RECORD_KEYS[:-1]
        assert result.returncode == 0, result.stderr
        assert token_server.refresh_tokens_seen == [tokens.refresh, tokens.refresh]
        assert not any(p.exists() for p in lock_dirs(claude_home))
        assert not (claude_home.config_dir / OWNER).exists()
    else:
        # No record: its holder may be alive until the 60 s have passed, so we wait, and send
        # nothing.
        assert record is None
        assert result.returncode == 8, result.stderr
        assert token_server.refresh_tokens_seen == [tokens.refresh]
        assert all(p.is_dir() for p in held)


def test_claude_wraps_refresh_request_matches_the_real_binarys(
    claude: ClaudeBinary,
    shim: Shim,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    oauth_proxy: OAuthProxy,
) -> None:
    claude_home.write_credentials(new_tokens(), expires_at=now_ms() - 60_000)
    run = claude.run(claude_home, "--print", input=b"hello\n",
                     env=claude_home.env(**oauth_proxy.env()))
    assert run.returncode == 0, run.out + run.err
    claude_home.write_credentials(new_tokens(), expires_at=now_ms() - 60_000)
    result = wrap_refresh(claude_home, shim.env(claude_home, token_server.url))
    assert result.returncode == 0, result.stderr
    theirs, ours = token_server.requests
    assert theirs.body is not None and ours.body is not None
    assert ours.headers["user-agent"] == theirs.headers["user-agent"]
    assert ours.headers["content-type"] == theirs.headers["content-type"]
    assert set(ours.body["scope"].split()) >= set(theirs.body["scope"].split())
    assert {k: v for k, v in ours.body.items() if k not in ("refresh_token", "scope")} == {
        k: v for k, v in theirs.body.items() if k not in ("refresh_token", "scope")
    }

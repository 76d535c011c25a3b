"""Local repair and the memory of a login (issue 14): what another tool stripped is put back
without a token request while the access token is good; a refresh asks for what the login had.
Real processes: claude-wrap, the shim, claude_wrap_testing/fakeclaude.py, the token server on
loopback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest

from claude_wrap_testing.tokenserver import DEFAULT_SCOPE, TokenServer, ok
from tests.conftest import ACCESS, REFRESH, SCOPES, Sandbox, login_doc, now_ms

if TYPE_CHECKING:
    from collections.abc import Callable

PLUGINS = [*SCOPES, "user:plugins"]
EDITOR = ("-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose")


def strip(sandbox: Sandbox, *, expires_in_s: float = 8 * 3600, access: str = ACCESS) -> None:
    """Rewrite the file the hostile way (claude_wrap_testing/hostile.py): truncate, then write
    in place, with only the three token fields: no scopes, no subscriptionType, no other key."""
    doc = {"claudeAiOauth": {
        "accessToken": access,
        "refreshToken": REFRESH,
        "expiresAt": now_ms() + int(expires_in_s * 1000),
    }}
    data = json.dumps(doc).encode()
    fd = os.open(sandbox.creds, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data[: len(data) // 2])
        os.write(fd, data[len(data) // 2 :])
    finally:
        os.close(fd)


def strip_by_rename(sandbox: Sandbox) -> None:
    tmp = sandbox.cfg / ".creds.tmp"
    tmp.write_text(json.dumps({"claudeAiOauth": {
        "accessToken": ACCESS, "refreshToken": REFRESH, "expiresAt": now_ms() + 8 * 3600_000}}))
    os.replace(tmp, sandbox.creds)


def remembered(sandbox: Sandbox, doc: dict[str, Any]) -> None:
    """The login as claude-wrap first sees it on a path that renews logins (`refresh`, with
    nothing to do), and the memory is written. (`status` only looks: it writes nothing.)"""
    sandbox.write(doc)
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nothing to do"), result.stdout


def wait_for(predicate: Callable[[], object], what: str, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.005)


def whole(sandbox: Sandbox) -> bool:
    try:
        return "scopes" in sandbox.oauth()
    except (ValueError, KeyError):
        return False


def memory_files(sandbox: Sandbox) -> list[Any]:
    folder = sandbox.state / "claude-wrap" / "logins"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_a_stripped_login_with_a_good_token_is_repaired_locally_with_no_token_request(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    remembered(sandbox, login_doc())
    strip(sandbox)
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("repaired without a refresh: restored scopes")
    assert token_server.requests == []
    oauth = sandbox.oauth()
    assert (oauth["accessToken"], oauth["refreshToken"]) == (ACCESS, REFRESH)  # as they were
    assert oauth["scopes"] == SCOPES
    assert oauth["subscriptionType"] == "max"
    assert oauth["rateLimitTier"] == "default_claude_max_20x"
    assert oauth["clientId"] == "keep-me"
    assert list(oauth)[:4] == ["accessToken", "refreshToken", "expiresAt", "scopes"]
    assert stat.S_IMODE(sandbox.creds.stat().st_mode) == 0o600
    assert "repaired locally: restored scopes, subscriptionType" in sandbox.log.read_text()


def test_the_memory_is_private_and_holds_no_token(sandbox: Sandbox) -> None:
    remembered(sandbox, login_doc(scopes=PLUGINS))
    (path,) = memory_files(sandbox)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert ACCESS not in text and REFRESH not in text
    data = json.loads(text)
    assert "accessToken" not in text and "refreshToken" not in text
    assert data["scopes"] == PLUGINS
    assert data["fields"] == {
        "subscriptionType": "max", "rateLimitTier": "default_claude_max_20x", "clientId": "keep-me"
    }
    # No part of a token either: the longest piece of the refresh token found in the file.
    assert not any(REFRESH[i : i + 8] in text for i in range(len(REFRESH) - 8))


def test_a_remembered_user_plugins_survives_a_strip(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    remembered(sandbox, login_doc(scopes=PLUGINS))
    strip(sandbox)
    result = sandbox.claude("-p", "hi", env=sandbox.shim_env())  # through the shim
    assert result.returncode == 0, result.stderr
    assert sandbox.oauth()["scopes"] == PLUGINS
    assert token_server.requests == []


def test_an_expired_stripped_login_refreshes_asking_for_the_remembered_scopes(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    remembered(sandbox, login_doc(scopes=PLUGINS))
    strip(sandbox, expires_in_s=-60)
    token_server.script(ok(scope=None))  # the server does not say which scopes it granted
    result = sandbox.claude("-p", "hi", env=sandbox.shim_env())
    assert result.returncode == 0, result.stderr
    (request,) = token_server.requests
    assert request.body is not None
    # The remembered set first, then what the release in use asks for besides (binary.py).
    asked = request.body["scope"].split()
    assert asked[: len(PLUGINS)] == PLUGINS
    oauth = sandbox.oauth()
    assert oauth["scopes"] == asked  # what was asked for: never fewer than before
    assert oauth["accessToken"] == token_server.issued[0]["access_token"]
    assert oauth["subscriptionType"] == "max"  # put back beside the new token


def test_a_strip_while_the_token_is_expired_refreshes_exactly_once(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    remembered(sandbox, login_doc())
    strip(sandbox, expires_in_s=-60)
    first = sandbox.claude("-p", "hi", env=sandbox.shim_env())
    second = sandbox.claude("-p", "again", env=sandbox.shim_env())
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    (request,) = token_server.requests
    assert request.body is not None
    asked = request.body["scope"].split()
    assert asked[: len(SCOPES)] == SCOPES  # the remembered set, then the release's own
    assert sandbox.oauth()["scopes"] == DEFAULT_SCOPE.split()  # the server's answer says


# What the fake claude's release asks for in its own refresh (binary.refresh_scopes): 2.1.197 the
# five claude.ai scopes, later releases user:plugins too, unless Claude Code's OAuth is customised.
BASE = ["user:profile", "user:inference", "user:sessions:claude_code", "user:mcp_servers",
        "user:file_upload"]


def test_a_stripped_login_of_another_subscription_is_not_given_the_old_fields(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    remembered(sandbox, login_doc(scopes=PLUGINS))
    other = login_doc(scopes=None, access="sk-ant-oat01-another-account-CCCCCCCCCC")
    other["claudeAiOauth"]["subscriptionType"] = "pro"
    sandbox.write(other)
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert token_server.requests == []  # repaired as a login never seen (issue 28)
    oauth = sandbox.oauth()
    assert oauth["scopes"] == BASE  # the release's (2.1.197), not the other account's plugins
    assert oauth["subscriptionType"] == "pro"


@pytest.mark.parametrize(
    ("version", "extra", "scopes"),
    [
        ("2.1.197", {}, BASE),
        ("2.1.332", {}, [*BASE, "user:plugins"]),
        ("2.1.337", {}, [*BASE, "user:plugins"]),
        ("2.1.332", {"CLAUDE_CODE_CUSTOM_OAUTH_URL": "https://127.0.0.1:9/x"}, BASE),
        ("2.1.332", {"CLAUDE_CODE_OAUTH_CLIENT_ID": "another-client"}, BASE),
    ],
    ids=["2.1.197", "2.1.332", "2.1.337", "custom-url", "custom-client"],
)
def test_a_stripped_login_never_seen_gets_the_scopes_its_release_asks_for(
    sandbox: Sandbox, token_server: TokenServer, version: str, extra: dict[str, str],
    scopes: list[str],
) -> None:
    # Issue 28: no memory of this login (claude-wrap never saw it whole), access token good.
    doc = login_doc(scopes=None)
    doc["claudeAiOauth"]["someFutureField"] = {"keep": True}
    sandbox.write(doc)
    env = {"FAKE_CLAUDE_VERSION": version, **extra}
    result = sandbox.claude("-p", "hi", env=sandbox.shim_env(**env))  # through the shim
    assert result.returncode == 0, result.stderr
    assert b"Not logged in" not in result.stdout, result.stdout
    assert token_server.requests == []
    oauth = sandbox.oauth()
    assert oauth["scopes"] == scopes
    assert (oauth["accessToken"], oauth["refreshToken"]) == (ACCESS, REFRESH)
    assert oauth["someFutureField"] == {"keep": True}
    assert sandbox.read()["mcpOAuth"] == {"server": {"token": "keep"}}
    assert stat.S_IMODE(sandbox.creds.stat().st_mode) == 0o600
    assert "repaired locally: restored scopes" in sandbox.log.read_text()
    # The next refresh asks for the union and stores what the server answered.
    token_server.script(ok(scope="user:inference user:profile user:granted"))
    forced = sandbox.wrap("refresh", "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    (request,) = token_server.requests
    assert request.body is not None
    assert request.body["scope"].split() == scopes
    assert sandbox.oauth()["scopes"] == ["user:inference", "user:profile", "user:granted"]


def test_a_local_repair_never_narrows_the_scopes_a_login_kept(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(scopes=["user:profile", "user:some-other"]))  # no user:inference
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert token_server.requests == []
    assert sandbox.oauth()["scopes"] == [*BASE, "user:some-other"]


def test_an_expired_stripped_login_never_seen_is_refreshed(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(scopes=None, expires_in_s=-60))
    assert sandbox.wrap("refresh").returncode == 0
    assert len(token_server.requests) == 1  # a due token: the refresh's job, as before
    assert memory_files(sandbox)  # the refreshed login is remembered from now on


def test_a_healthy_run_does_not_read_the_memory(sandbox: Sandbox) -> None:
    # The hot path: once the verdict cache says healthy, a run opens no file of ours but it.
    remembered(sandbox, login_doc())
    (path,) = memory_files(sandbox)
    assert sandbox.claude("-p", "warm", env=sandbox.shim_env()).returncode == 0
    far_back = (1_000_000_000, path.stat().st_mtime_ns)  # atime before mtime: a read moves it
    os.utime(path, ns=far_back)
    path.read_bytes()
    if path.stat().st_atime_ns == far_back[0]:
        pytest.skip("this filesystem does not record reads (noatime)")
    os.utime(path, ns=far_back)
    assert sandbox.claude("-p", "hot", env=sandbox.shim_env()).returncode == 0
    assert path.stat().st_atime_ns == far_back[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("how", "kind"), [("in_place", "auto"), ("rename", "auto"), ("in_place", "poll")]
)
def test_a_strip_during_a_stream_json_session_is_repaired_before_the_next_prompt(
    sandbox: Sandbox, token_server: TokenServer, how: str, kind: str
) -> None:
    remembered(sandbox, login_doc())
    proc = subprocess.Popen(
        [str(sandbox.shim), *EDITOR], env=sandbox.shim_env(CLAUDE_WRAP_NOTIFY=kind),
        cwd=sandbox.root,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def ask(word: str) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"type": "user", "text": word}).encode() + b"\n")
        proc.stdin.flush()
        while True:
            event = json.loads(proc.stdout.readline())
            if event["type"] == "assistant":
                return dict(event["fake_login"])

    try:
        assert ask("one") == {"problem": None, "access_tail": ACCESS[-9:]}
        stripped = time.monotonic()
        (strip if how == "in_place" else strip_by_rename)(sandbox)
        wait_for(lambda: whole(sandbox), "the guard's repair, with no prompt sent")
        delay_ms = (time.monotonic() - stripped) * 1000
        print(f"strip ({how}, watch {kind}) -> repair: {delay_ms:.1f} ms (stream-json session)")
        assert ask("two") == {"problem": None, "access_tail": ACCESS[-9:]}
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert token_server.requests == []
    assert sandbox.oauth()["scopes"] == SCOPES

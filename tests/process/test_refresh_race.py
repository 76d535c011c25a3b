"""A tool that takes no lock spends the refresh token between our read and our request.

Found by the soak (issue 9): a shim read the file under the locks, spent a second building its
HTTP client on a loaded machine, then sent a token that the hostile refresher (which takes no
lock) had spent and replaced meanwhile; the server took it for a replay and revoked the login.
claude-wrap now reads the file again right before each request leaves.

To make the moment deterministic, the token endpoint answers our first attempt 503 (so the
token provably was not consumed and we try again after a pause) and, before answering, plays the
hostile tool itself: it spends the stored token and rewrites the file the way old tools did.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from claude_wrap_testing.tokenserver import (
    DEFAULT_SCOPE,
    Reply,
    Request,
    TokenFamilies,
    TokenServer,
)
from tests.conftest import Sandbox, login_doc


def _families(sandbox: Sandbox, token_server: TokenServer) -> tuple[TokenFamilies, dict[str, Any]]:
    families = TokenFamilies(access_ttl_s=3600)
    token_server.default = families
    oauth = families.login()
    doc = login_doc(expires_in_s=-60, access=oauth["accessToken"], refresh=oauth["refreshToken"])
    sandbox.write(doc)
    return families, doc


def _hostile_then_503(
    sandbox: Sandbox, families: TokenFamilies, *, keep_scopes: bool
) -> Any:
    def answer(server: TokenServer, request: Request) -> Reply:
        stored = sandbox.oauth()
        spend = Request("/v1/oauth/token", {"user-agent": "old-tool"},
                        {"refresh_token": stored["refreshToken"]}, b"", 0.0)
        body = families(server, spend).body
        assert isinstance(body, dict) and "access_token" in body, body
        oauth: dict[str, Any] = {"accessToken": body["access_token"],
                                 "refreshToken": body["refresh_token"],
                                 "expiresAt": stored["expiresAt"] + 7_200_000}
        if keep_scopes:
            oauth["scopes"] = DEFAULT_SCOPE.split()
        sandbox.creds.write_text(json.dumps({"claudeAiOauth": oauth}))
        return Reply(503, {"error": "overloaded"})

    return answer


def test_a_token_spent_and_replaced_behind_our_back_is_not_sent(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    families, doc = _families(sandbox, token_server)
    token_server.script(_hostile_then_503(sandbox, families, keep_scopes=False))
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    # Our retry carried the token the other tool left in the file, not the one it spent.
    first, second = token_server.refresh_tokens_seen
    assert first == doc["claudeAiOauth"]["refreshToken"]
    assert second != first
    assert (families.invalid_grants, families.revoked) == (0, set())
    oauth = sandbox.oauth()
    assert oauth["scopes"] == DEFAULT_SCOPE.split()  # repaired, as the other tool dropped them
    assert families.access_ok(oauth["accessToken"])


def test_a_usable_login_left_behind_our_back_is_adopted(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    families, _ = _families(sandbox, token_server)
    token_server.script(_hostile_then_503(sandbox, families, keep_scopes=True))
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert len(token_server.requests) == 1  # nothing more was spent
    assert families.invalid_grants == 0
    assert families.access_ok(sandbox.oauth()["accessToken"])


def test_a_file_left_half_written_behind_our_back_sends_nothing(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    families, _ = _families(sandbox, token_server)

    def answer(server: TokenServer, request: Request) -> Reply:
        # The other tool spent the token and stopped half-way through its in-place write.
        stored = sandbox.oauth()
        spend = Request("/v1/oauth/token", {"user-agent": "old-tool"},
                        {"refresh_token": stored["refreshToken"]}, b"", 0.0)
        body = families(server, spend).body
        assert isinstance(body, dict)
        whole = json.dumps({"claudeAiOauth": {"accessToken": body["access_token"],
                                              "refreshToken": body["refresh_token"]}})
        sandbox.creds.write_text(whole[: len(whole) // 2])
        return Reply(503, {"error": "overloaded"})

    token_server.script(answer)
    result = sandbox.wrap("refresh")
    half = sandbox.creds.read_bytes()
    assert result.returncode == 3, result.stderr
    assert "being rewritten by another program" in result.stderr
    assert "nothing was sent" in result.stderr
    # The token it held was spent by the other tool: it was not sent a second time.
    assert len(token_server.requests) == 1
    assert (families.invalid_grants, families.revoked) == (0, set())
    assert half == sandbox.creds.read_bytes()  # left alone


# An old tool rewriting the file in place, caught half-way: it truncated the file, wrote the first
# half, and (descheduled on a loaded machine, as the soak saw) holds it open a moment before the
# rest. Argument: the file, the whole new content, where to say "half written", how long to hold.
HALF_WRITER = """
import os, sys, time
path, data, ready, hold = sys.argv[1], sys.argv[2].encode(), sys.argv[3], float(sys.argv[4])
fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
os.write(fd, data[: len(data) // 2])
open(ready, "w").close()
time.sleep(hold)
os.write(fd, data[len(data) // 2 :])
os.close(fd)
"""


def _half_write(sandbox: Sandbox, doc: dict[str, Any], hold_s: float) -> subprocess.Popen[bytes]:
    ready = sandbox.root / "half-written"
    writer = subprocess.Popen([sys.executable, "-c", HALF_WRITER, str(sandbox.creds),
                               json.dumps(doc), str(ready), str(hold_s)])
    deadline = time.monotonic() + 30
    while not ready.exists():  # a bound on waiting, not an assertion on timing
        assert writer.poll() is None and time.monotonic() < deadline, "the writer did not start"
        time.sleep(0.01)
    json_error = None
    try:
        json.loads(sandbox.creds.read_bytes())
    except ValueError as exc:
        json_error = exc
    assert json_error is not None  # the file really is half-written now
    return writer


def test_the_keeper_waits_for_a_file_half_way_through_an_in_place_rewrite(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    # The soak (issue 9) saw `claude-wrap keep` read the hostile's half-written file, say "not
    # valid JSON" and give up, although the file was whole again a moment later.
    sandbox.write(login_doc())
    writer = _half_write(sandbox, login_doc(expires_in_s=-60, scopes=None), hold_s=1.0)
    try:
        result = sandbox.wrap("keep")
    finally:
        writer.wait(30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(token_server.requests) == 1  # it waited for the whole file and refreshed it
    assert "user:inference" in sandbox.oauth()["scopes"]


def test_the_shims_pre_flight_waits_for_a_file_half_way_through_an_in_place_rewrite(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc())
    writer = _half_write(sandbox, login_doc(scopes=None), hold_s=1.0)
    try:
        result = sandbox.claude("-p", "hi")
    finally:
        writer.wait(30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""  # no "not valid JSON" from the pre-flight
    assert result.stdout.startswith(b"fake answer")
    assert token_server.requests == []  # a good token: its scopes put back locally
    assert "user:inference" in sandbox.oauth()["scopes"]


def test_a_broken_file_nobody_is_writing_is_still_reported_as_broken(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    # The wait is for a writer at work; a file left broken and closed ends it (how soon is for
    # bench/, not here) with the same one-line error as before, nothing sent, nothing changed.
    broken = sandbox.write(b'{"claudeAiOauth": {"accessToken": ')
    result = sandbox.wrap("keep")
    assert result.returncode == 3
    assert "not valid JSON" in result.stderr and str(sandbox.creds) in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert token_server.requests == []
    assert sandbox.creds.read_bytes() == broken

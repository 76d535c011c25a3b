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
from typing import Any

from tests.conftest import Sandbox, login_doc
from tests.tokenserver import DEFAULT_SCOPE, Reply, Request, TokenFamilies, TokenServer


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

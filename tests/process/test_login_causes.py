"""Why a login died, and the wait for a successor before a revoked login's token is spent
(issue 26, item 5): each cause gets its own line in `status` (and `doctor`, `log`), and after
the API revoked the access token claude-wrap watches the file before it replays anything.

The token service is TokenFamilies, faithful: a rotation revokes the previous access token, a
replayed refresh token gets invalid_grant and ends the family. The fake claude prints the
refusal the real one prints for a revoked token (FAKE_CLAUDE_FAIL_MESSAGE): the API's answer,
as the shim's watch sees it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest

from claude_wrap_testing.tokenserver import Reply, Request, TokenFamilies, TokenServer
from tests.conftest import Sandbox, now_ms

# What the real claude prints for a superseded access token (2.1.332+, --print: docs/protocol.md
# section 10), and for a 401 naming the whole login revoked (the API's own words after the status).
SUPERSEDED_PRINT = (
    "Failed to authenticate: OAuth token revoked. Please log in again or contact your "
    "administrator."
)
LOGIN_REVOKED_PRINT = (
    'Failed to authenticate. API Error: 401 {"type":"error","error":{"type":'
    '"authentication_error","message":"OAuth token has been revoked. Please obtain a new '
    'token."}}'
)
WAIT_S = 3.0  # refresher.SUCCESSOR_WAIT_S


def _faithful(sandbox: Sandbox, token_server: TokenServer) -> tuple[TokenFamilies, dict[str, Any]]:
    families = TokenFamilies()
    assert not families.lenient
    token_server.default = families
    first = families.login()
    sandbox.write({"claudeAiOauth": first})
    return families, first


def _rotate_elsewhere(families: TokenFamilies, token_server: TokenServer, refresh: str) -> Any:
    """Another program spends the refresh token (not through our token server's log: it is
    not claude-wrap's request); the service revokes our access token. Returns the new pair."""
    spend = Request("/v1/oauth/token", {"user-agent": "lockless-tool"},
                    {"refresh_token": refresh}, b"", time.time())
    body = families(token_server, spend).body
    assert isinstance(body, dict) and "access_token" in body, body
    return body


def _write_like_a_tool(sandbox: Sandbox, body: dict[str, Any]) -> None:
    oauth = {
        "accessToken": body["access_token"],
        "refreshToken": body["refresh_token"],
        "expiresAt": now_ms() + int(body["expires_in"] * 1000),
        "scopes": body["scope"].split(),
        "subscriptionType": "max",
    }
    tmp = sandbox.creds.with_name(".credentials.json.tmp.tool")
    tmp.write_text(json.dumps({"claudeAiOauth": oauth}))
    tmp.chmod(0o600)
    os.replace(tmp, sandbox.creds)


def _refused_env(sandbox: Sandbox, message: str) -> dict[str, str]:
    return sandbox.shim_env(FAKE_CLAUDE_FAIL_FIRST="1", FAKE_CLAUDE_FAIL_MESSAGE=message)


def _died_line(sandbox: Sandbox) -> str:
    done = sandbox.wrap("status")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [x for x in done.stdout.splitlines() if x.startswith("died: ")]
    assert len(lines) == 1, done.stdout
    return lines[0]


def test_a_successor_written_after_the_revoked_401_is_adopted_and_nothing_is_spent(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """A lock-less tool on this machine rotated the login; claude met the revoked access token;
    the tool writes the new pair 0.5 s later. claude-wrap waits for it and adopts it: no request
    of its own, so the family lives. Without the wait it replayed the spent token at once (seen:
    one invalid_grant, the family revoked, the run failed)."""
    families, first = _faithful(sandbox, token_server)
    body = _rotate_elsewhere(families, token_server, first["refreshToken"])
    written: list[float] = []

    def tool() -> None:
        deadline = time.monotonic() + 30
        while not sandbox.record.exists():  # claude's run met the revoked token
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.5)
        _write_like_a_tool(sandbox, body)
        written.append(time.monotonic())

    writer = threading.Thread(target=tool)
    writer.start()
    run = sandbox.claude("-p", "hi", env=_refused_env(sandbox, SUPERSEDED_PRINT))
    writer.join()

    assert run.returncode == 0, run.stdout + run.stderr
    assert token_server.requests == []  # nothing sent: the successor was adopted
    assert (families.invalid_grants, families.revoked) == (0, set())
    assert [r["access_token"] for r in sandbox.runs()] == [first["accessToken"],
                                                             body["access_token"]]
    assert sandbox.oauth()["refreshToken"] == body["refresh_token"]
    log = sandbox.wrap("log").stdout
    assert "adopted: the API revoked the access token; another program wrote its successor" in log
    # Within the wait, not at its end (how long after the 401: the log says; not asserted).
    assert f"successor {WAIT_S:.1f} s later" not in log
    assert sandbox.wrap("status").returncode == 0


def test_with_no_successor_the_stored_token_is_spent_once_after_the_wait(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """The copy that rotated is on another machine: nothing appears. After the bounded wait the
    stored token is sent, exactly once; its invalid_grant is never retried; and the login's death
    is put down to a copy elsewhere, in status, doctor and log alike."""
    families, first = _faithful(sandbox, token_server)
    _rotate_elsewhere(families, token_server, first["refreshToken"])
    started = time.monotonic()
    run = sandbox.claude("-p", "hi", env=_refused_env(sandbox, SUPERSEDED_PRINT))
    took = time.monotonic() - started

    assert run.returncode == 1
    assert len(token_server.requests) == 1, token_server.requests
    assert token_server.refresh_tokens_seen == [first["refreshToken"]]
    assert took >= WAIT_S, took
    err = run.stderr.decode()
    assert "another machine or program spent this login's refresh token" in err, err

    line = _died_line(sandbox)
    assert line.startswith("died: another machine or program spent this login's refresh token ("
                           "the API revoked the access token before its expiry and no newer token"
                           " appeared on disk within 3 s"), line
    assert "make the other one a guest of this machine (docs/guests.md)" in line
    doctor = json.loads(sandbox.wrap("doctor", "--json").stdout)
    [death] = [f for f in doctor["findings"] if f["check"] == "login death"]
    assert (death["level"], death["cause"]) == ("fail", "spent_elsewhere")
    [failed] = [x for x in sandbox.wrap("log").stdout.splitlines() if "  FAILED: " in x]
    assert "(HTTP 400, invalid_grant): another machine or program spent this login's" in failed
    # Asked again, nothing more is sent: status and doctor only look; and another run that meets
    # the refusal again (the file still holds an access token that looks good) sends nothing:
    # a token refused with invalid_grant is never sent again, by any process of ours.
    assert len(token_server.requests) == 1
    again = sandbox.claude("-p", "hi", env={
        **_refused_env(sandbox, SUPERSEDED_PRINT),
        "FAKE_CLAUDE_COUNTER": str(sandbox.root / "second-count"),
    })
    assert again.returncode == 1
    assert "not sent again" in again.stderr.decode(), again.stderr
    assert len(token_server.requests) == 1


def test_an_invalid_grant_on_a_token_claude_wrap_never_sent_is_a_copy_elsewhere(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    families, first = _faithful(sandbox, token_server)
    first["expiresAt"] = now_ms() - 60_000
    sandbox.write({"claudeAiOauth": first})
    _rotate_elsewhere(families, token_server, first["refreshToken"])
    done = sandbox.wrap("refresh")
    assert done.returncode == 4, done.stderr
    assert "another machine or program spent" in done.stderr
    line = _died_line(sandbox)
    assert line.startswith("died: another machine or program spent this login's refresh token ("
                           "the token endpoint refused a refresh token claude-wrap had never "
                           "sent)"), line


def test_a_login_revoked_on_the_server_is_said_so_without_waiting(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """The API named the whole login revoked: nobody will write a successor, so no wait; the
    one refresh meets invalid_grant; the cause is the server, and no guest is suggested."""
    families, first = _faithful(sandbox, token_server)
    family = families.family(first["refreshToken"])
    assert family is not None
    families.revoked.add(family)  # a logout everywhere, the account's revocation
    started = time.monotonic()
    run = sandbox.claude("-p", "hi", env=_refused_env(sandbox, LOGIN_REVOKED_PRINT))
    took = time.monotonic() - started
    assert run.returncode == 1
    assert len(token_server.requests) == 1
    assert took < WAIT_S + 5, took
    line = _died_line(sandbox)
    assert line.startswith("died: the login was ended on the server (the API answered that the "
                           "login's token was revoked"), line
    assert "guest" not in line


def test_a_token_claude_wrap_sent_whose_answer_was_lost_is_the_server_s_doing(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """Our own request spent the token and its answer never came back; a later process of ours
    sends the same token (the file still holds it) and meets invalid_grant. Not someone else's
    copy: the line says claude-wrap itself had sent it."""
    families, first = _faithful(sandbox, token_server)
    first["expiresAt"] = now_ms() - 60_000
    sandbox.write({"claudeAiOauth": first})

    def spend_then_drop(server: TokenServer, request: Request) -> Reply:
        families(server, request)
        return Reply(close=True)

    token_server.script(spend_then_drop)
    lost = sandbox.wrap("refresh")
    assert lost.returncode == 6, lost.stderr  # outcome unknown
    again = sandbox.wrap("refresh")
    assert again.returncode == 4, again.stderr
    line = _died_line(sandbox)
    assert line.startswith("died: the login was ended on the server (the token endpoint refused a "
                           "refresh token claude-wrap itself had sent at "), line


@pytest.mark.parametrize("blanked", [False, True], ids=["expired", "blanked-by-claude"])
def test_the_time_limit_is_its_own_line(sandbox: Sandbox, blanked: bool) -> None:
    ended = now_ms() - 3_600_000
    oauth: dict[str, Any] = {
        "accessToken": "sk-ant-oat01-ended-AAAAAAAAAAAA",
        "refreshToken": "sk-ant-ort01-ended-BBBBBBBBBBBB",
        "expiresAt": now_ms() - 60_000,
        "refreshTokenExpiresAt": ended,
        "scopes": ["user:inference", "user:profile"],
    }
    if blanked:  # what Claude Code 2.1.332+ leaves after the endpoint said so
        oauth.update(accessToken="", refreshToken="", expiresAt=0, loginEnded="time_limit")
    sandbox.write({"claudeAiOauth": oauth})
    line = _died_line(sandbox)
    assert line.startswith("died: the login reached its time limit ("), line
    assert line.endswith("no refresh renews it: run `claude /login`"), line
    status = json.loads(sandbox.wrap("status", "--json").stdout)
    assert status["death"]["cause"] == "time_limit"


def test_a_new_login_is_never_blamed_on_the_old_death(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    families, first = _faithful(sandbox, token_server)
    first["expiresAt"] = now_ms() - 60_000
    sandbox.write({"claudeAiOauth": first})
    _rotate_elsewhere(families, token_server, first["refreshToken"])
    assert sandbox.wrap("refresh").returncode == 4
    _died_line(sandbox)
    second = families.login()  # `claude /login`
    second["expiresAt"] = now_ms() - 60_000  # and already due: not usable, yet not dead
    sandbox.write({"claudeAiOauth": second})
    done = sandbox.wrap("status")
    assert "died:" not in done.stdout, done.stdout
    assert json.loads(sandbox.wrap("status", "--json").stdout)["death"] is None

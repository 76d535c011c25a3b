"""`claude-wrap status` and `claude-wrap refresh` as a user runs them: real processes, a real
token server on loopback, real files. Assertions on the file, its mode, the server's log."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from claude_wrap_testing.tokenserver import (
    DEFAULT_SCOPE,
    Reply,
    Request,
    TokenFamilies,
    TokenServer,
    invalid_grant,
    ok,
)
from tests.conftest import ACCESS, REFRESH, REPO, SCOPES, WRAP, Sandbox, login_doc, now_ms


def test_status_says_missing_scopes_in_one_line_and_refresh_fixes_it(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(scopes=None))
    status = sandbox.wrap("status")
    assert status.returncode == 1
    first = status.stdout.splitlines()[0]
    assert first.startswith("login: missing_scopes (no scopes are stored)")
    assert "claude-wrap refresh" in first

    # The access token is good: the scopes are put back locally, though this login was never
    # seen whole (issue 28): the ones the release in use asks for (fakeclaude: 2.1.197).
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("repaired without a refresh: restored scopes")
    assert token_server.requests == []
    oauth = sandbox.oauth()
    assert oauth["scopes"] == ["user:profile", "user:inference", "user:sessions:claude_code",
                               "user:mcp_servers", "user:file_upload"]
    assert oauth["accessToken"] == ACCESS
    assert sandbox.wrap("status").returncode == 0


def test_a_stripped_and_expired_login_is_refreshed_and_scopes_written(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(scopes=None, expires_in_s=-60))
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert "scopes written" in result.stdout
    oauth = sandbox.oauth()
    assert oauth["scopes"] == DEFAULT_SCOPE.split()
    assert oauth["accessToken"] == token_server.issued[0]["access_token"]
    assert sandbox.wrap("status").returncode == 0


def test_refresh_request_is_the_one_claude_code_sends(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(expires_in_s=-60))
    assert sandbox.wrap("refresh").returncode == 0
    (request,) = token_server.requests
    assert request.path == "/v1/oauth/token"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    # The real claude here (fakeclaude) says it is 2.1.197: its User-Agent, and the stored
    # scopes with what 2.1.197 asks for added (measured: tests/e2e/test_binary_refresh.py).
    assert request.headers["user-agent"] == "axios/1.15.2"
    assert request.body == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
        "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
        "scope": " ".join([*SCOPES, "user:mcp_servers", "user:file_upload"]),
    }


@pytest.mark.parametrize(
    ("version", "env", "agent", "plugins"),
    [
        ("2.1.87", {}, "axios/1.13.6", False),
        ("2.1.332", {}, "axios/1.15.2", True),
        ("2.1.400", {}, "axios/1.15.2", True),  # newer than tested: the newest tested's form
        ("2.1.332", {"CLAUDE_CODE_OAUTH_CLIENT_ID": "c"}, "axios/1.15.2", False),
    ],
)
def test_refresh_request_takes_the_form_of_the_version_in_use(
    sandbox: Sandbox,
    token_server: TokenServer,
    version: str,
    env: dict[str, str],
    agent: str,
    plugins: bool,
) -> None:
    stored = [*DEFAULT_SCOPE.split(), "user:extra"]  # one no release asks for: kept all the same
    sandbox.write(login_doc(expires_in_s=-60, scopes=stored))
    assert sandbox.wrap("refresh", env={"FAKE_CLAUDE_VERSION": version, **env}).returncode == 0
    (request,) = token_server.requests
    assert request.headers["user-agent"] == agent
    assert request.body is not None
    assert request.body["scope"] == " ".join([*stored, *(["user:plugins"] if plugins else [])])


def test_client_id_from_the_environment(sandbox: Sandbox, token_server: TokenServer) -> None:
    sandbox.write(login_doc(expires_in_s=-60))
    env = {"CLAUDE_CODE_OAUTH_CLIENT_ID": "my-client"}
    assert sandbox.wrap("refresh", env=env).returncode == 0
    body = token_server.requests[0].body
    assert body is not None  # the request was JSON
    assert body["client_id"] == "my-client"


def test_every_other_field_survives_and_the_file_is_0600(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    doc = login_doc(scopes=None, extra_top={"unknownTop": [1, {"a": "é"}]})
    doc["claudeAiOauth"]["refreshTokenExpiresAt"] = 123
    sandbox.write(doc, mode=0o644)
    assert sandbox.wrap("refresh").returncode == 0
    after = sandbox.read()
    before_oauth = doc["claudeAiOauth"]
    for key in ("subscriptionType", "rateLimitTier", "clientId", "refreshTokenExpiresAt"):
        assert after["claudeAiOauth"][key] == before_oauth[key]
    assert after["mcpOAuth"] == doc["mcpOAuth"]
    assert after["unknownTop"] == [1, {"a": "é"}]
    assert stat.S_IMODE(sandbox.creds.stat().st_mode) == 0o600
    # Written compactly, as Claude Code writes it, with no temp file left behind.
    assert b": " not in sandbox.creds.read_bytes()
    assert sorted(p.name for p in sandbox.cfg.iterdir()) == [".credentials.json"]


@pytest.mark.parametrize("rotate", [True, False])
def test_refresh_token_rotation(sandbox: Sandbox, token_server: TokenServer, rotate: bool) -> None:
    token_server.default = ok(rotate=rotate, scope=None)
    sandbox.write(login_doc(expires_in_s=-1))
    assert sandbox.wrap("refresh").returncode == 0
    oauth = sandbox.oauth()
    expected = token_server.issued[0]["refresh_token"] if rotate else REFRESH
    assert oauth["refreshToken"] == expected
    # No scope in the answer: what was asked is what was granted (RFC 6749, 5.1): the stored
    # ones first, then what the release in use asks for besides (binary.py); never fewer.
    assert oauth["scopes"][: len(SCOPES)] == SCOPES
    assert oauth["scopes"] == (token_server.requests[-1].body or {})["scope"].split()
    assert abs(oauth["expiresAt"] - (now_ms() + 28800 * 1000)) < 60_000


def test_healthy_login_makes_no_request(sandbox: Sandbox, token_server: TokenServer) -> None:
    raw = sandbox.write(login_doc())
    result = sandbox.wrap("refresh", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["action"] == "none"
    assert token_server.requests == []
    assert sandbox.creds.read_bytes() == raw


def test_force_refreshes_a_healthy_login(sandbox: Sandbox, token_server: TokenServer) -> None:
    sandbox.write(login_doc())
    result = sandbox.wrap("refresh", "--force", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["action"] == "refreshed"
    assert len(token_server.requests) == 1


def test_refresh_window_is_configurable(sandbox: Sandbox, token_server: TokenServer) -> None:
    sandbox.write(login_doc(expires_in_s=1200))  # 20 minutes left
    assert sandbox.wrap("refresh").returncode == 0
    assert token_server.requests == []  # outside the default 10-minute window
    assert sandbox.wrap("refresh", env={"CLAUDE_WRAP_REFRESH_WINDOW": "1800"}).returncode == 0
    assert len(token_server.requests) == 1
    bad = sandbox.wrap("refresh", env={"CLAUDE_WRAP_REFRESH_WINDOW": "soon"})
    assert bad.returncode == 2
    assert "CLAUDE_WRAP_REFRESH_WINDOW" in bad.stderr


def test_invalid_grant_is_never_retried_and_never_blanks_the_file(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(login_doc(scopes=None, expires_in_s=-60))
    token_server.script(invalid_grant(400))
    result = sandbox.wrap("refresh")
    assert result.returncode == 4
    assert len(token_server.requests) == 1
    assert sandbox.creds.read_bytes() == raw
    (line,) = result.stderr.splitlines()
    assert "invalid_grant" in line
    assert "claude /login" in line


def test_server_errors_are_retried_within_the_budget(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(expires_in_s=-1))
    token_server.script(Reply(500, b"oops"), Reply(502, b"bad gateway"))
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert len(token_server.requests) == 3
    # All three carried the same (unspent) refresh token: the server said it failed.
    assert token_server.refresh_tokens_seen == [REFRESH] * 3


def test_429_honours_retry_after(sandbox: Sandbox, token_server: TokenServer) -> None:
    sandbox.write(login_doc(expires_in_s=-1))
    token_server.script(Reply(429, {"error": "rate_limited"}, headers={"Retry-After": "1"}))
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    first, second = token_server.requests
    assert second.at - first.at >= 1.0


def test_retry_after_past_the_budget_gives_up_at_once(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-1))
    token_server.script(Reply(429, {"error": "rate_limited"}, headers={"Retry-After": "3600"}))
    result = sandbox.wrap("refresh")
    assert result.returncode == 5
    assert len(token_server.requests) == 1
    assert "try again in 3600 s" in result.stderr
    assert sandbox.creds.read_bytes() == raw


def test_a_hang_is_an_unknown_outcome_and_the_token_is_not_sent_again(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-1))
    token_server.script(Reply(hang=True))
    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_REFRESH_TIMEOUT": "1"})
    assert result.returncode == 6
    assert len(token_server.requests) == 1
    assert "not sent again" in result.stderr
    assert sandbox.creds.read_bytes() == raw


# One process calling ensure_fresh twice, as the shim does (its pre-flight, then the output
# watcher's repair after claude fails): it prints what each call raised.
TWICE = """
from claude_wrap.config.settings import Settings
from claude_wrap.refresh import refresher
settings = Settings.from_process()
for _ in range(2):
    try:
        refresher.ensure_fresh(settings)
    except Exception as exc:
        print(type(exc).__name__)
"""


@pytest.mark.parametrize(
    ("reply", "error"),
    [(invalid_grant(400), "RefreshRejectedError"),
     (Reply(hang=True), "RefreshOutcomeUnknownError")],
    ids=["invalid_grant", "no-answer"],
)
def test_a_token_that_failed_is_not_sent_again_in_the_same_process(
    sandbox: Sandbox, token_server: TokenServer, reply: Reply, error: str
) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-1))
    token_server.script(reply)  # later requests would succeed: none may come
    result = subprocess.run(
        [sys.executable, "-c", TWICE], env={**sandbox.env, "CLAUDE_WRAP_REFRESH_TIMEOUT": "1"},
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.stdout.split() == [error, error], result.stderr
    assert token_server.refresh_tokens_seen == [REFRESH]
    assert sandbox.creds.read_bytes() == raw


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b"<html>not json</html>"),
        Reply(200, {"token_type": "Bearer", "expires_in": 10}),
        Reply(200, {"access_token": "a", "expires_in": "soon"}),
        Reply(200, {"access_token": "a", "expires_in": 10}, truncate=True),
    ],
    ids=["garbage", "no-access-token", "bad-expires-in", "truncated"],
)
def test_bad_answers_write_nothing(
    sandbox: Sandbox, token_server: TokenServer, reply: Reply
) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-1))
    token_server.script(reply)
    result = sandbox.wrap("refresh")
    assert result.returncode == 6, result.stderr
    assert len(token_server.requests) == 1
    assert sandbox.creds.read_bytes() == raw
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_plain_http_is_refused_for_anything_but_loopback(sandbox: Sandbox) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-1))
    env = {"CLAUDE_WRAP_TOKEN_URL": "http://auth.example.invalid/v1/oauth/token"}
    result = sandbox.wrap("refresh", env=env)
    assert result.returncode == 2
    assert "plain http" in result.stderr
    assert sandbox.creds.read_bytes() == raw


def test_symlinked_file_is_written_through_and_stays_a_link(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    real = sandbox.root / "dotfiles" / "credentials.json"
    real.parent.mkdir()
    real.write_text(json.dumps(login_doc(scopes=None)))
    sandbox.creds.symlink_to(real)
    assert sandbox.wrap("refresh").returncode == 0
    assert sandbox.creds.is_symlink()
    assert json.loads(real.read_text())["claudeAiOauth"]["scopes"] == DEFAULT_SCOPE.split()


def test_claude_config_dir_is_honoured(sandbox: Sandbox, token_server: TokenServer) -> None:
    other = sandbox.root / "other-config"
    other.mkdir()
    (other / ".credentials.json").write_text(json.dumps(login_doc(scopes=None)))
    env = {"CLAUDE_CONFIG_DIR": str(other)}
    assert sandbox.wrap("refresh", env=env).returncode == 0
    assert "scopes" in json.loads((other / ".credentials.json").read_text())["claudeAiOauth"]
    assert not sandbox.creds.exists()


def test_no_home_falls_back_to_the_password_database(tmp_path: os.PathLike[str]) -> None:
    import pwd
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "XDG_STATE_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", "from claude_wrap.config.settings import Settings; "
         "print(Settings.from_process().credentials_file)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    home = pwd.getpwuid(os.getuid()).pw_dir
    assert result.stdout.strip() == os.path.join(home, ".claude", ".credentials.json")


@pytest.mark.parametrize(
    ("content", "state", "code"),
    [
        (None, "missing", 3),
        (b"{not json", "malformed", 3),
        (
            json.dumps(
                {
                    "claudeAiOauth": {
                        "accessToken": "",
                        "refreshToken": "",
                        "expiresAt": 0,
                        "scopes": SCOPES,
                    }
                }
            ).encode(),
            "logged_out",
            3,
        ),
        (
            json.dumps({"claudeAiOauth": {"accessToken": ACCESS, "expiresAt": 10**12}}).encode(),
            "no_refresh_token",
            3,
        ),
    ],
    ids=["missing", "malformed", "logged_out", "no_refresh_token"],
)
def test_unfixable_states(
    sandbox: Sandbox, token_server: TokenServer, content: bytes | None, state: str, code: int
) -> None:
    if content is not None:
        sandbox.write(content)
    status = sandbox.wrap("status", "--json")
    assert json.loads(status.stdout)["state"] == state
    assert status.returncode == 1
    result = sandbox.wrap("refresh")
    assert result.returncode == code
    (line,) = result.stderr.splitlines()
    assert str(sandbox.creds) in line
    assert token_server.requests == []
    if content is not None:
        assert sandbox.creds.read_bytes() == content


def test_status_json_shows_no_secret(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    result = sandbox.wrap("status", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["state"] == "ok"
    assert data["access_token_tail"] == ACCESS[-4:]
    assert ACCESS not in result.stdout
    assert REFRESH not in result.stdout
    assert data["subscription_type"] == "max"
    assert data["has_refresh_token"] is True


# The refresher no longer knows guests (issue 16: renewal.py picks, so the two import nothing of
# each other): called for a guest anyway, it must stop before anything is read or sent.
GUEST_CALLS_REFRESHER = """
from claude_wrap.config.settings import Settings
from claude_wrap.refresh import refresher
try:
    refresher.ensure_fresh(Settings.from_process())
except RuntimeError as exc:
    print(exc)
"""


def test_the_refresher_refuses_a_guest_and_sends_nothing(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-1))  # a copy of the owner's, refresh token and all
    share = sandbox.root / "share"
    share.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", GUEST_CALLS_REFRESHER],
        env={**sandbox.env, "CLAUDE_WRAP_GUEST": f"folder:{share}"},
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert "called for a guest; use renewal.ensure_fresh" in result.stdout, result.stderr
    assert token_server.requests == []
    assert sandbox.creds.read_bytes() == raw


def test_a_failing_sent_callback_never_keeps_the_answer_from_being_read(
    token_server: TokenServer,
) -> None:
    """`sent` runs once the token is on the wire (the shim opens its gate there): were it to
    fail, the answer must still be read, or the new token would be lost with the old one spent."""
    from claude_wrap.refresh import oauth  # in-process: the callback is ours to break

    def broken() -> None:
        raise OSError("the gate's fd was gone")

    answer = oauth.refresh_tokens(
        "rt-old",
        ["user:inference"],
        url=token_server.url,
        client_id="test-client",
        budget_s=10,
        sent=broken,
    )
    assert len(token_server.requests) == 1
    assert answer["access_token"] == token_server.issued[0]["access_token"]


@pytest.mark.parametrize(
    ("how", "signum"),
    [
        ("refresh", signal.SIGTERM),  # a service manager stopping `keep`
        ("refresh", signal.SIGHUP),
        ("refresh", signal.SIGINT),  # Ctrl-C
        ("shim", signal.SIGINT),  # Ctrl-C while the pre-flight's spinner turns
    ],
    ids=["refresh-SIGTERM", "refresh-SIGHUP", "refresh-SIGINT", "shim-SIGINT"],
)
def test_a_stop_while_the_request_is_out_waits_until_its_answer_is_stored(
    sandbox: Sandbox, token_server: TokenServer, how: str, signum: int
) -> None:
    """The server spends the refresh token when it reads it. Stopped then, we used to keep the
    spent token and lose its successor in flight: the next refresh got invalid_grant and the
    single-use server revoked the login. Now the stop waits for the answer, stored, then comes:
    the run still ends as the signal says, and the login lives on."""
    families = TokenFamilies()

    def slow(server: TokenServer, request: Request) -> Reply:
        return dataclasses.replace(families(server, request), delay=1.0)

    token_server.default = slow
    login = families.login()
    login["expiresAt"] = now_ms() - 60_000
    sandbox.write({"claudeAiOauth": login})
    argv = [str(sandbox.shim), "-p", "hi"] if how == "shim" else [*WRAP, "refresh"]
    env = sandbox.shim_env() if how == "shim" else sandbox.env
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not token_server.requests:  # the request is at the server, its answer 1 s away
        assert time.monotonic() < deadline and proc.poll() is None, "no request came"
        time.sleep(0.005)
    time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode in (-signum, 128 + signum), err  # it stopped, as asked
    assert b"Traceback" not in err
    assert families.refreshes == 1
    stored = sandbox.oauth()
    assert stored["refreshToken"] != login["refreshToken"]  # not the spent one: its successor
    assert sandbox.wrap("refresh", "--force").returncode == 0  # and it refreshes again
    assert families.revoked == set()


def test_a_stop_held_through_a_refused_refresh_still_stops_the_run(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """The held stop comes after a failed answer too: SIGTERM during a request the server
    refuses ends the run by the signal (143), not with the refusal's own status (4)."""
    token_server.default = lambda server, request: dataclasses.replace(invalid_grant(), delay=1.0)
    raw = sandbox.write(login_doc(expires_in_s=-60))
    proc = subprocess.Popen([*WRAP, "refresh"], env=sandbox.env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not token_server.requests:
        assert time.monotonic() < deadline and proc.poll() is None, "no request came"
        time.sleep(0.005)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), err
    assert b"Traceback" not in err
    assert sandbox.creds.read_bytes() == raw  # a refusal changes nothing

"""The macOS Keychain backend, run on any OS against a fake `security` executable.

The fake keeps items in a JSON file and records every call (argv and stdin), so the tests see
exactly what a real `security` would have been asked, and check that no secret ever reached argv.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from claude_wrap_testing.tokenserver import Reply, Request, TokenServer
from tests.conftest import ACCESS, REFRESH, Sandbox, login_doc

FAKE_SECURITY = Path(__file__).resolve().parents[2] / "claude_wrap_testing" / "fakesecurity.py"
SERVICE = "Claude Code-credentials"
ACCOUNT = "alice"


class Keychain:
    def __init__(self, sandbox: Sandbox) -> None:
        self.store = sandbox.root / "keychain.json"
        self.record = sandbox.root / "security.jsonl"
        tool = sandbox.fakebin / "security"
        tool.write_text(
            f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(FAKE_SECURITY)!r}, "
            "run_name='__main__')\n"
        )
        tool.chmod(0o755)
        sandbox.env.update(
            {
                "CLAUDE_WRAP_STORAGE": "keychain",
                "USER": ACCOUNT,
                "FAKE_SECURITY_STORE": str(self.store),
                "FAKE_SECURITY_RECORD": str(self.record),
            }
        )

    def items(self) -> list[dict[str, str]]:
        return json.loads(self.store.read_text()) if self.store.exists() else []

    def put(self, doc: Any, service: str = SERVICE, account: str = ACCOUNT) -> None:
        raw = json.dumps(doc, ensure_ascii=False).encode()
        items = [i for i in self.items() if (i["service"], i["account"]) != (service, account)]
        items.append({"service": service, "account": account, "hex": raw.hex()})
        # Renamed into place: a `security` reading meanwhile sees the old items or the new.
        tmp = self.store.with_name("keychain.json.put")
        tmp.write_text(json.dumps(items))
        tmp.replace(self.store)

    def get(self, service: str = SERVICE, account: str = ACCOUNT) -> Any:
        for item in self.items():
            if (item["service"], item["account"]) == (service, account):
                return json.loads(bytes.fromhex(item["hex"]))
        return None

    def calls(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


@pytest.fixture
def keychain(sandbox: Sandbox) -> Keychain:
    return Keychain(sandbox)


def assert_no_secret_in_argv(kc: Keychain, secrets: list[str]) -> None:
    calls = kc.calls()
    assert calls
    for call in calls:
        argv = " ".join(call["argv"])
        for secret in secrets:
            assert secret not in argv
            assert secret.encode().hex() not in argv
        # The account is always given: an MCP-only item may share the service name.
        if call["argv"][:1] != ["-i"]:
            assert call["argv"][call["argv"].index("-a") + 1] == ACCOUNT


def test_refresh_repairs_the_keychain_item_and_keeps_every_field(
    sandbox: Sandbox, keychain: Keychain, token_server: TokenServer
) -> None:
    keychain.put(login_doc(scopes=None, expires_in_s=-60, extra_top={"note": "größe"}))
    # The trap: an MCP-only item under the same service name with account "unknown".
    keychain.put({"mcpOAuth": {"other": 1}}, account="unknown")

    result = sandbox.wrap("refresh")

    assert result.returncode == 0, result.stderr
    assert "scopes written" in result.stdout
    assert token_server.refresh_tokens_seen == [REFRESH]
    doc = keychain.get()
    oauth = doc["claudeAiOauth"]
    assert "user:inference" in oauth["scopes"]
    assert oauth["accessToken"] == token_server.issued[0]["access_token"]
    assert oauth["refreshToken"] == token_server.issued[0]["refresh_token"]
    assert (oauth["subscriptionType"], oauth["clientId"]) == ("max", "keep-me")
    assert doc["mcpOAuth"] == {"server": {"token": "keep"}}
    assert doc["note"] == "größe"  # non-ASCII data: `security -w` prints it as hex
    assert keychain.get(account="unknown") == {"mcpOAuth": {"other": 1}}
    assert not sandbox.creds.exists()  # nothing written to a file on the side
    # The write went through `security -i`'s stdin, never argv.
    writes = [c for c in keychain.calls() if c["argv"] == ["-i"]]
    assert len(writes) == 1
    assert writes[0]["stdin"].startswith(f'add-generic-password -U -a "{ACCOUNT}" -s "{SERVICE}"')
    issued = token_server.issued[0]
    assert_no_secret_in_argv(
        keychain, [ACCESS, REFRESH, issued["access_token"], issued["refresh_token"]]
    )


def test_status_names_the_item_of_the_config_dir(sandbox: Sandbox, keychain: Keychain) -> None:
    work = sandbox.home / ".claude-work"
    work.mkdir()
    suffix = hashlib.sha256(str(work).encode()).hexdigest()[:8]
    keychain.put(login_doc(), service=f"{SERVICE}-{suffix}")

    mine = sandbox.wrap("status", "--json", env={"CLAUDE_CONFIG_DIR": str(work)})
    default = sandbox.wrap("status", "--json")

    assert mine.returncode == 0, mine.stderr
    data = json.loads(mine.stdout)
    assert (data["state"], data["storage"]) == ("ok", "keychain")
    assert f"{SERVICE}-{suffix}" in data["file"]
    # ~/.claude has its own, unsuffixed item, which is not there.
    assert default.returncode == 1
    assert json.loads(default.stdout)["state"] == "missing"


def test_a_write_that_does_not_land_is_an_error_not_a_silent_loss(
    sandbox: Sandbox, keychain: Keychain, token_server: TokenServer
) -> None:
    keychain.put(login_doc(expires_in_s=-60))
    before = keychain.items()

    result = sandbox.wrap("refresh", env={"FAKE_SECURITY_IGNORE_WRITES": "1"})

    assert result.returncode == 7, result.stderr
    assert "could not save the login to the macOS Keychain item" in result.stderr
    assert "claude /login" in result.stderr  # the new refresh token was lost: say what to do
    assert "Traceback" not in result.stderr
    assert keychain.items() == before


def test_the_keychain_path_takes_claude_codes_lock_dirs(
    sandbox: Sandbox, keychain: Keychain, token_server: TokenServer
) -> None:
    keychain.put(login_doc(expires_in_s=-60))
    (sandbox.cfg / ".oauth_refresh.lock").mkdir()  # a live holder (fresh mtime)

    result = sandbox.wrap("refresh", env={"CLAUDE_WRAP_LOCK_TIMEOUT": "0.5"})

    assert result.returncode == 8, result.stderr
    assert ".oauth_refresh.lock" in result.stderr
    assert token_server.requests == []


def test_unreadable_keychain_is_one_clear_line(sandbox: Sandbox, keychain: Keychain) -> None:
    keychain.store.write_text("[]")
    result = sandbox.wrap("refresh", env={"PATH": "/nonexistent"})
    assert result.returncode == 3
    assert "the `security` tool is not on PATH" in result.stderr
    assert "CLAUDE_WRAP_STORAGE=file" in result.stderr
    assert "fix or remove" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_storage_setting_is_checked(sandbox: Sandbox) -> None:
    result = sandbox.wrap("status", env={"CLAUDE_WRAP_STORAGE": "vault"})
    assert result.returncode == 2
    assert "CLAUDE_WRAP_STORAGE='vault'" in result.stderr


def test_a_login_too_large_for_one_security_line_is_refused_before_spending(
    sandbox: Sandbox, keychain: Keychain, token_server: TokenServer
) -> None:
    # MCP logins make the item large: past ~2000 bytes its hex no longer fits one line of
    # `security -i`, and claude-wrap will not put it on a command line instead.
    big = login_doc(expires_in_s=-60, extra_top={"mcpOAuth": {"srv": {"meta": "m" * 2500}}})
    keychain.put(big)
    before = keychain.items()

    result = sandbox.wrap("refresh")

    assert result.returncode == 7
    assert "too large to write through `security -i`" in result.stderr
    assert token_server.requests == []  # the refresh token was not spent
    assert keychain.items() == before
    assert not [c for c in keychain.calls() if c["argv"] == ["-i"]]


def test_a_login_that_grows_too_large_is_not_written_nor_echoed(
    sandbox: Sandbox, keychain: Keychain, token_server: TokenServer
) -> None:
    keychain.put(login_doc(expires_in_s=-60))
    huge = "sk-ant-oat01-" + "h" * 3000  # the answer makes the login too large to write

    def answer(server: TokenServer, request: Request) -> Reply:
        return Reply(200, {"access_token": huge, "expires_in": 28800, "refresh_token": "r" * 40})

    token_server.script(answer)
    before = keychain.items()

    result = sandbox.wrap("refresh")

    assert result.returncode == 7
    assert "too large" in result.stderr
    assert "claude /login" in result.stderr  # the new refresh token is lost: say so
    assert "hhhh" not in result.stderr
    assert keychain.items() == before
    assert "hhhh" not in sandbox.log.read_text()


def test_the_fake_cuts_long_lines_as_the_real_tool_does(
    sandbox: Sandbox, keychain: Keychain
) -> None:
    """The fake's own fidelity: an over-long `security -i` line corrupts the item and fails."""
    data = ("x" * 3000).encode().hex()
    line = f'add-generic-password -U -a "{ACCOUNT}" -s "{SERVICE}" -X "{data}"\n'
    result = subprocess.run(
        [str(sandbox.fakebin / "security"), "-i"],
        input=line,
        env=sandbox.env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "unknown command" in result.stderr
    stored = bytes.fromhex(keychain.items()[0]["hex"])
    assert stored != b"x" * 3000  # truncated


def test_an_account_name_unsafe_for_security_i_is_refused_before_spending(
    sandbox: Sandbox, keychain: Keychain, token_server: TokenServer
) -> None:
    odd = 'al"ice'
    keychain.put(login_doc(expires_in_s=-60), account=odd)
    result = sandbox.wrap("refresh", env={"USER": odd})
    assert result.returncode == 7
    assert "the account name holds a quote" in result.stderr
    assert token_server.requests == []

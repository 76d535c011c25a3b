"""Guests borrow an owner's login (claude_wrap/guest.py), with real parts: a real sshd on
127.0.0.1 with a key made for the test and the forced-command line of docs/guests.md, the owner
and each guest in HOMEs of their own, the owner's token endpoint a real server on loopback, the fake
claude answering in the guest. The whole module runs in a loopback-only network namespace.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from claude_wrap_testing.netns import enter_loopback_only, namespace_id
from claude_wrap_testing.sshd import Sshd
from claude_wrap_testing.tokenserver import TokenServer
from tests.conftest import REFRESH, Sandbox, login_doc
from tests.process.test_shim import imported_modules
from tests.reliability.helpers import argv_env_leaks

EXIT_OWNER_UNREACHABLE = 9


@pytest.fixture(scope="module", autouse=True)
def _loopback_only() -> str:
    if os.getuid() != 0:
        pytest.skip("the guest tests run sshd in a loopback-only namespace: needs root")
    enter_loopback_only()
    return namespace_id()


class Owner:
    def __init__(self, root: Path, tokens: TokenServer) -> None:
        self.box = Sandbox(root, tokens.url)
        self.box.env["CLAUDE_WRAP_LOCK_TIMEOUT"] = "60"
        self.tokens = tokens
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.box.env.items())
        # The forced command of docs/guests.md, with the owner's sandbox as its environment.
        self.command = f"env -i {env} {sys.executable} -m claude_wrap token --json --min-valid 1200"


@pytest.fixture
def owner(tmp_path: Path, token_server: TokenServer) -> Owner:
    box = Owner(tmp_path / "owner", token_server)
    box.box.write(login_doc(expires_in_s=60))  # due: the first guest's ask refreshes it
    return box


@pytest.fixture
def sshd(tmp_path: Path, owner: Owner) -> Iterator[Sshd]:
    with Sshd(tmp_path / "sshd", owner.command) as server:
        yield server


@pytest.fixture
def guest_tokens() -> Iterator[TokenServer]:
    """A token endpoint the guests are pointed at: a guest must never ask it anything."""
    with TokenServer("g") as server:
        yield server


def make_guest(root: Path, guest_tokens: TokenServer, how: str, **extra: str) -> Sandbox:
    box = Sandbox(root, guest_tokens.url)
    box.env["CLAUDE_WRAP_GUEST"] = how
    box.env["CLAUDE_WRAP_GUEST_TIMEOUT"] = "120"
    box.env.update(extra)
    return box


def ssh_guest(root: Path, guest_tokens: TokenServer, sshd: Sshd) -> Sandbox:
    return make_guest(root, guest_tokens, "ssh:owner", CLAUDE_WRAP_GUEST_SSH=sshd.ssh_command)


def owner_secrets(owner: Owner) -> set[str]:
    return {REFRESH, *(i["refresh_token"] for i in owner.tokens.issued if "refresh_token" in i)}


def files_holding(root: Path, secrets: set[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {s[:14]}" for s in secrets if s.encode() in data]
    return hits


def test_token_prints_the_access_token_alone_and_json_is_an_exec_credential(
    owner: Owner,
) -> None:
    plain = owner.box.wrap("token")
    assert plain.returncode == 0, plain.stderr
    new = owner.tokens.issued[-1]
    assert plain.stdout == new["access_token"] + "\n"
    assert len(owner.tokens.requests) == 1
    as_json = owner.box.wrap("token", "--json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["apiVersion"] == "client.authentication.k8s.io/v1"
    assert doc["kind"] == "ExecCredential"
    assert doc["status"]["token"] == new["access_token"]
    assert doc["status"]["expirationTimestamp"].endswith("Z")
    assert "user:inference" in doc["claudeWrap"]["scopes"]
    assert len(owner.tokens.requests) == 1  # still good for the default --min-valid
    for out in (plain.stdout, as_json.stdout):
        assert not [s for s in owner_secrets(owner) if s in out]


def test_token_on_a_login_that_cannot_be_refreshed_exits_as_refresh_does(owner: Owner) -> None:
    owner.box.write(login_doc(expires_in_s=-10, refresh=None))
    result = owner.box.wrap("token")
    assert result.returncode == 3
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_guest_over_ssh_pulls_a_token_and_claude_answers(
    tmp_path: Path, owner: Owner, sshd: Sshd, guest_tokens: TokenServer
) -> None:
    guest = ssh_guest(tmp_path / "guest", guest_tokens, sshd)
    result = guest.claude("--print", "hi")
    assert result.returncode == 0, result.stderr
    assert b"hi" in result.stdout
    assert result.stderr == b""
    new = owner.tokens.issued[-1]
    assert guest.runs()[-1]["access_token"] == new["access_token"]
    stored = guest.oauth()
    assert stored["accessToken"] == new["access_token"]
    assert "refreshToken" not in stored
    assert "user:inference" in stored["scopes"]
    assert len(owner.tokens.requests) == 1
    assert guest_tokens.requests == []
    # A healthy second run stays on the hot path: no ssh, nothing asked of the owner.
    assert sshd.logins() == 1
    again = guest.claude("--print", "again")
    assert again.returncode == 0, again.stderr
    assert sshd.logins() == 1
    assert len(owner.tokens.requests) == 1
    assert files_holding(guest.root, owner_secrets(owner)) == []


def test_a_healthy_guest_run_stays_on_the_hot_path(
    tmp_path: Path, owner: Owner, sshd: Sshd, guest_tokens: TokenServer
) -> None:
    """Once pulled, a guest's run is the shim's healthy run: the verdict cache, no JSON, no
    subprocess (ssh), no httpx; and the owner is not asked."""
    guest = ssh_guest(tmp_path / "guest", guest_tokens, sshd)
    assert guest.claude("--print", "hi").returncode == 0  # pulls, remembers the verdict
    assert sshd.logins() == 1
    names = imported_modules(guest, guest.shim_env())
    heavy = {
        "httpx", "loguru", "psutil", "pexpect", "json", "subprocess", "claude_wrap.guests.guest"
    }
    assert not heavy & names, heavy & names
    assert "claude_wrap.guests.rollover" in names  # the session would still roll over
    assert sshd.logins() == 1


def test_sixteen_guests_asking_at_once_make_one_refresh_at_the_owner(
    tmp_path: Path, owner: Owner, sshd: Sshd, guest_tokens: TokenServer
) -> None:
    guests = [ssh_guest(tmp_path / f"guest{i}", guest_tokens, sshd) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda g: g.wrap("refresh", "--json"), guests))
    assert [r.returncode for r in results] == [0] * 16, [r.stderr for r in results]
    assert len(owner.tokens.requests) == 1
    assert sshd.logins() == 16
    new = owner.tokens.issued[-1]["access_token"]
    assert {g.oauth()["accessToken"] for g in guests} == {new}
    assert guest_tokens.requests == []
    secrets = owner_secrets(owner)
    for g in guests:
        assert files_holding(g.root, secrets) == []


def test_an_unreachable_owner_is_one_line_and_its_own_exit_status(
    tmp_path: Path, owner: Owner, sshd: Sshd, guest_tokens: TokenServer
) -> None:
    guest = ssh_guest(tmp_path / "guest", guest_tokens, sshd)
    assert guest.wrap("refresh").returncode == 0
    sshd.__exit__()  # the owner goes away
    sshd.proc = None
    doc = guest.read()
    doc["claudeAiOauth"]["expiresAt"] = int(time.time() * 1000) + 120_000  # due, still valid
    guest.write(doc)
    before = guest.creds.read_bytes()
    result = guest.wrap("refresh")
    assert result.returncode == EXIT_OWNER_UNREACHABLE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "cannot get a token from the owner of this login (ssh:owner)" in lines[0]
    assert "the last token still works until the owner next rotates" in lines[0]
    assert guest.creds.read_bytes() == before
    # Through the shim: the same one line, and claude runs on the token it still has.
    run = guest.claude("--print", "hi")
    assert run.returncode == 0
    err = run.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "(running claude anyway)" in err[0], err
    assert b"hi" in run.stdout
    assert guest_tokens.requests == []


def test_a_refresh_token_in_a_guests_file_is_removed_unsent(
    tmp_path: Path, owner: Owner, sshd: Sshd, guest_tokens: TokenServer
) -> None:
    guest = ssh_guest(tmp_path / "guest", guest_tokens, sshd)
    guest.write(login_doc(expires_in_s=30))  # a copy of the owner's file, refresh token and all
    result = guest.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert "a guest never refreshes, so it was removed unsent" in result.stderr
    stored = guest.oauth()
    assert "refreshToken" not in stored
    assert stored["clientId"] == "keep-me"  # every other field kept
    assert guest.read()["mcpOAuth"] == {"server": {"token": "keep"}}
    assert guest_tokens.requests == []
    assert owner.tokens.refresh_tokens_seen == [REFRESH]  # sent once, by the owner alone


def test_a_container_reads_the_folder_the_owners_keeper_keeps_fresh(
    tmp_path: Path, owner: Owner, guest_tokens: TokenServer
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    made = owner.box.wrap("share", str(shared))
    assert made.returncode == 0, made.stderr
    token_file = shared / "claude-wrap-token.json"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert len(owner.tokens.requests) == 1
    guest = make_guest(tmp_path / "guest", guest_tokens, f"folder:{shared}")
    run = guest.claude("--print", "hi")
    assert run.returncode == 0, run.stderr
    first = owner.tokens.issued[-1]["access_token"]
    assert guest.runs()[-1]["access_token"] == first
    # The owner's login rotates; its keeper writes the folder; the guest's next pull sees it.
    assert owner.box.wrap("refresh", "--force").returncode == 0
    kept = owner.box.wrap("keep")
    assert kept.returncode == 0, kept.stderr
    second = owner.tokens.issued[-1]["access_token"]
    assert second != first
    assert json.loads(token_file.read_text())["status"]["token"] == second
    assert guest.wrap("refresh", "--force").returncode == 0
    assert guest.oauth()["accessToken"] == second
    # Its status names the owner, not `/login`: no refresh token here is by design.
    shown = guest.wrap("status")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout if isinstance(shown.stdout, str) else shown.stdout.decode()
    assert f"guest of: folder:{shared}" in text and "/login" not in text
    assert json.loads(guest.wrap("status", "--json").stdout)["guest_of"] == f"folder:{shared}"
    assert files_holding(guest.root, owner_secrets(owner)) == []
    assert files_holding(shared, owner_secrets(owner)) == []
    assert guest_tokens.requests == []


def test_a_guest_with_no_folder_token_says_so_in_one_line(
    tmp_path: Path, guest_tokens: TokenServer
) -> None:
    guest = make_guest(tmp_path / "guest", guest_tokens, f"folder:{tmp_path / 'nothing'}")
    result = guest.wrap("refresh")
    assert result.returncode == EXIT_OWNER_UNREACHABLE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "claude-wrap share" in lines[0], lines
    assert "there is no token left that works" in lines[0]


def test_no_refresh_token_in_argv_or_environment_of_the_guest_side(
    tmp_path: Path, owner: Owner, sshd: Sshd, guest_tokens: TokenServer
) -> None:
    """argv and environ of the guest's shim, ssh and claude, sampled all along a run (psutil),
    and every file the guest side holds afterwards: none holds a refresh token."""
    guest = ssh_guest(tmp_path / "guest", guest_tokens, sshd)
    proc = subprocess.Popen(
        [str(guest.shim), "--print", "hi"],
        env=guest.shim_env(FAKE_CLAUDE_SLEEP="1.5"),
        cwd=guest.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    secrets = {REFRESH}
    samples, leaks = 0, []
    try:
        while proc.poll() is None:
            secrets |= owner_secrets(owner)
            try:
                root = psutil.Process(proc.pid)
                family = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in family:
                cmd, found = argv_env_leaks(p, secrets)
                samples += bool(cmd)
                leaks += [f"{cmd[:60]}: {t}" for t in found]
            time.sleep(0.01)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert samples > 0
    assert leaks == []
    assert files_holding(guest.root, owner_secrets(owner)) == []


def test_exec_hands_the_token_through_an_inherited_pipe_never_argv(owner: Owner) -> None:
    reader = (
        "import os,sys;fd=int(os.environ['CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR']);"
        "t=os.read(fd,65536).decode();print(t);print(repr(os.read(fd,10)));"
        "print('CLAUDE_CODE_OAUTH_TOKEN' in os.environ)"
    )
    result = owner.box.wrap("exec", "--", sys.executable, "-c", reader)
    assert result.returncode == 0, result.stderr
    new = owner.tokens.issued[-1]["access_token"]
    assert result.stdout.splitlines() == [new, "b''", "False"]  # the token, then end of file
    via_env = owner.box.wrap(
        "exec", "--env", "--", sys.executable, "-c",
        "import os;print(os.environ['CLAUDE_CODE_OAUTH_TOKEN'])",
    )  # fmt: skip
    assert via_env.stdout.strip() == new

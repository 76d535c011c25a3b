"""A login made on a guest is never destroyed (issue 26, item 4): after `claude /login` on a
guest, its folder holds a refresh token the owner never handed out (claude-wrap hands out none),
so the guest steps aside for that folder: no pull, nothing stripped, the login kept fresh as any
owner's, and one line says so (the shim, keep, refresh: once). Real processes: the owner shares a
folder (`claude-wrap share`), the guest reads it; each side has its own token server, and the
guest's own login is of a family of the guest's server, as a `/login` there would make."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_wrap_testing.tokenserver import TokenFamilies, TokenServer
from tests.conftest import WRAP, Sandbox

REPO = Path(__file__).resolve().parents[2]
LINE = "holds a login of its own"


@pytest.fixture
def owner_families(token_server: TokenServer) -> TokenFamilies:
    fam = TokenFamilies(tag="own")
    token_server.default = fam
    return fam


@pytest.fixture
def guest_server() -> Iterator[TokenServer]:
    with TokenServer("g") as server:
        yield server


@pytest.fixture
def guest_families(guest_server: TokenServer) -> TokenFamilies:
    fam = TokenFamilies(tag="gst")
    guest_server.default = fam
    return fam


@pytest.fixture
def shared(tmp_path: Path, token_server: TokenServer, owner_families: TokenFamilies) -> Path:
    owner = Sandbox(tmp_path / "owner", token_server.url)
    owner.write({"claudeAiOauth": owner_families.login()})
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o700)
    done = owner.wrap("share", str(folder))
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture
def guest(tmp_path: Path, guest_server: TokenServer, shared: Path) -> Sandbox:
    box = Sandbox(tmp_path / "guest", guest_server.url)
    box.env["CLAUDE_WRAP_GUEST"] = f"folder:{shared}"
    done = box.wrap("keep")
    assert done.returncode == 0, done.stderr
    assert "refreshToken" not in box.oauth()  # a guest as before: the owner's token
    return box


def slash_login(box: Sandbox, families: TokenFamilies, expires_in_s: float = 8 * 3600) -> Any:
    """Write a login as `claude /login` does: the whole section, other keys kept."""
    oauth = families.login()
    oauth["expiresAt"] = int((time.time() + expires_in_s) * 1000)
    doc = {**box.read(), "claudeAiOauth": oauth}
    box.write(doc)
    return oauth


def own_lines(result: subprocess.CompletedProcess[Any]) -> list[str]:
    err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    return [line for line in err.splitlines() if LINE in line]


def test_a_login_of_the_guests_own_survives_its_keeper(
    guest: Sandbox, guest_families: TokenFamilies, owner_families: TokenFamilies
) -> None:
    mine = slash_login(guest, guest_families)
    first = guest.wrap("keep")
    assert first.returncode == 0, first.stderr
    [line] = own_lines(first)
    assert "guest of folder:" in line and "~/.claude" in line and "claude /logout" in line
    assert guest.oauth() == mine  # nothing pulled over it, nothing stripped
    again = guest.wrap("keep")
    assert (again.returncode, own_lines(again)) == (0, [])  # said once
    assert guest.oauth() == mine
    shown = guest.wrap("guest")
    assert LINE in shown.stdout and "claude /logout" in shown.stdout
    status = guest.wrap("status")
    assert status.returncode == 0, status.stdout
    [guest_line] = [x for x in status.stdout.splitlines() if x.startswith("guest of: ")]
    assert "holds a login of its own" in guest_line, status.stdout
    assert "no refresh token is kept here" not in status.stdout
    assert owner_families.refreshes == 0
    assert guest_families.refreshes == 0


def test_the_own_login_is_kept_fresh_as_an_owners_and_the_shim_says_so_once(
    guest: Sandbox, guest_families: TokenFamilies
) -> None:
    slash_login(guest, guest_families, expires_in_s=60)  # due: the guest's own window is 600 s
    run = guest.claude("--print", "hi")
    assert run.returncode == 0, run.stderr
    assert len(own_lines(run)) == 1
    after = guest.oauth()
    assert guest_families.refreshes == 1  # refreshed at its own endpoint, as an owner would
    assert guest_families.access_ok(after["accessToken"])
    assert after["refreshToken"]  # still a login of its own
    assert own_lines(guest.claude("--print", "hi")) == []
    refreshed = guest.wrap("refresh", "--force")
    assert refreshed.returncode == 0, refreshed.stderr
    assert own_lines(refreshed) == []
    assert guest_families.refreshes == 2
    assert guest_families.invalid_grants == 0


def test_guest_folder_on_a_folder_with_its_own_login_says_so_and_strips_nothing(
    guest: Sandbox, guest_families: TokenFamilies, shared: Path
) -> None:
    mine = slash_login(guest, guest_families)
    env = {k: v for k, v in guest.env.items() if k != "CLAUDE_WRAP_GUEST"}
    done = subprocess.run(
        [*WRAP, "guest", "--folder", str(shared)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert LINE in done.stdout
    assert guest.oauth() == mine


def test_after_logout_the_guest_borrows_again_and_a_new_login_is_told_again(
    guest: Sandbox, guest_families: TokenFamilies
) -> None:
    slash_login(guest, guest_families)
    assert len(own_lines(guest.wrap("keep"))) == 1
    guest.creds.unlink()  # `claude /logout`
    back = guest.wrap("keep")
    assert back.returncode == 0, back.stderr
    assert "refreshToken" not in guest.oauth()
    slash_login(guest, guest_families)
    assert len(own_lines(guest.wrap("keep"))) == 1


def test_keep_watch_leaves_the_own_login_alone_while_the_owner_rotates(
    tmp_path: Path,
    guest: Sandbox,
    guest_families: TokenFamilies,
    token_server: TokenServer,
    shared: Path,
) -> None:
    watcher = subprocess.Popen(
        [*WRAP, "keep", "--watch"], env=guest.env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        mine = slash_login(guest, guest_families)
        owner = Sandbox.__new__(Sandbox)
        owner.__dict__.update(Sandbox(tmp_path / "owner2", token_server.url).__dict__)
        owner.root = tmp_path / "owner"
        owner.home = owner.root / "home"
        owner.cfg = owner.home / ".claude"
        owner.state = owner.root / "state"
        owner.env.update(HOME=str(owner.home), XDG_STATE_HOME=str(owner.state))
        assert owner.wrap("refresh", "--force").returncode == 0
        assert owner.wrap("keep").returncode == 0  # rewrites the shared token file
        token = json.loads((shared / "claude-wrap-token.json").read_text())["status"]["token"]
        assert token == owner.oauth()["accessToken"]
        time.sleep(1.5)
        assert guest.oauth() == mine
    finally:
        watcher.send_signal(signal.SIGTERM)
        _, err = watcher.communicate(timeout=30)
    assert guest.oauth() == mine
    assert len([line for line in err.splitlines() if LINE in line]) == 1

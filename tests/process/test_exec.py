"""`claude-wrap exec` keeps its word under rotation (issue 26, item 3), and `token --json` says
a token's true life: real processes, a real token server on loopback whose rotations revoke the
previous access token (TokenFamilies), the owner rotating with `claude-wrap refresh --force`.

The command is a small Python script standing in for a CMD that starts claude: it reads the
credentials file of the config folder it was given, as Claude Code does."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_wrap_testing.tokenserver import TokenFamilies, TokenServer
from tests.conftest import WRAP, Sandbox

REPO = Path(__file__).resolve().parents[2]

# The CMD: says its folder and pid, then on each line of stdin prints the token it would use
# now (the private credentials file's), until stdin ends.
CMD = r"""
import json, os, sys
cfg = os.environ["CLAUDE_CONFIG_DIR"]
print(json.dumps({"cfg": cfg, "pid": os.getpid(),
                  "secure": os.environ.get("CLAUDE_SECURESTORAGE_CONFIG_DIR"),
                  "active": os.environ.get("CLAUDE_WRAP_ACTIVE"),
                  "env_token": "CLAUDE_CODE_OAUTH_TOKEN" in os.environ}), flush=True)
for line in sys.stdin:
    with open(os.path.join(cfg, ".credentials.json")) as f:
        print(json.dumps(json.load(f)["claudeAiOauth"]), flush=True)
"""


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def families(token_server: TokenServer) -> TokenFamilies:
    fam = TokenFamilies(tag="x")
    token_server.default = fam
    return fam


@pytest.fixture
def owner(tmp_path: Path, token_server: TokenServer, families: TokenFamilies) -> Sandbox:
    box = Sandbox(tmp_path / "owner", token_server.url)
    box.env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    box.write({"claudeAiOauth": families.login(), "mcpOAuth": {"server": {"token": "keep"}}})
    (box.cfg / "settings.json").write_text('{"model": "opus"}')
    (box.home / ".claude.json").write_text('{"hasCompletedOnboarding": true}')
    return box


class Exec:
    """`claude-wrap exec -- python CMD` running in the owner's sandbox, talked to by lines."""

    def __init__(self, box: Sandbox, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*WRAP, "exec", *args, "--", sys.executable, "-c", CMD],
            env=box.env, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.info = json.loads(self.proc.stdout.readline())
        self.cfg = Path(self.info["cfg"])

    def token(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def end(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=30)


def minder_pid(private: Path) -> int:
    pid_file = private / ".claude-wrap-minder"
    wait_for(pid_file.exists, "the minder's pid file")
    return int(pid_file.read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_an_execd_command_rolls_over_at_each_rotation(
    owner: Sandbox, families: TokenFamilies
) -> None:
    """The CMD's folder holds the owner's access token and never a refresh token; each time the
    owner rotates (its old token revoked at once), the new one is in the CMD's file within
    about a second, and the CMD's settings are the owner's own (the mirror)."""
    run = Exec(owner)
    try:
        first = owner.oauth()
        assert run.info["secure"] == str(run.cfg)
        assert run.info["active"] == "1"  # a shim in CMD steps aside
        assert run.info["env_token"] is False
        assert run.cfg.stat().st_mode & 0o777 == 0o700
        assert (run.cfg / "settings.json").read_text() == '{"model": "opus"}'
        assert (run.cfg / ".claude.json").resolve() == owner.home / ".claude.json"
        held = run.token()
        assert held["accessToken"] == first["accessToken"]
        assert "refreshToken" not in held
        assert held["scopes"] == first["scopes"]
        latencies = []
        for _ in range(2):
            done = owner.wrap("refresh", "--force")
            assert done.returncode == 0, done.stderr
            new = owner.oauth()["accessToken"]
            assert families.access_problem(held["accessToken"], count=False) is not None
            latencies.append(wait_for(lambda: run.token()["accessToken"] == new, "hand-on"))  # noqa: B023
            held = run.token()
            assert families.access_ok(held["accessToken"])
            assert "refreshToken" not in held
        print(f"hand-on latencies after a rotation: {[f'{s:.3f}' for s in latencies]} s")
        assert run.end() == 0
    finally:
        run.proc.kill()
    wait_for(lambda: not run.cfg.exists(), "the private folder's removal")
    assert families.refreshes == 2  # the owner's two, nothing else spent a refresh token
    assert list(run.cfg.parent.iterdir()) == []


def test_the_private_folder_never_holds_the_refresh_token(owner: Sandbox) -> None:
    refresh = owner.oauth()["refreshToken"]
    run = Exec(owner)
    try:
        minder = minder_pid(run.cfg)
        hits = [p for p in run.cfg.rglob("*") if p.is_file() and not p.is_symlink()
                and refresh.encode() in p.read_bytes()]
        assert hits == []
        with open(f"/proc/{minder}/cmdline", "rb") as f:
            assert refresh.encode() not in f.read()
        with open(f"/proc/{minder}/environ", "rb") as f:
            assert refresh.encode() not in f.read()
        with open(f"/proc/{run.info['pid']}/environ", "rb") as f:
            assert refresh.encode() not in f.read()
    finally:
        run.end()


@pytest.mark.parametrize("how", ["exits", "killed"])
def test_the_folder_and_minder_go_when_the_command_ends(owner: Sandbox, how: str) -> None:
    run = Exec(owner)
    minder = minder_pid(run.cfg)
    assert alive(minder)
    if how == "killed":
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait(timeout=10)
    else:
        assert run.end() == 0
    wait_for(lambda: not run.cfg.exists() and not alive(minder), "the minder's clean-up", 5)
    assert list(run.cfg.parent.iterdir()) == []


def test_a_minder_killed_removes_the_folder_and_one_killed_outright_is_swept(
    owner: Sandbox,
) -> None:
    run = Exec(owner)
    try:
        minder = minder_pid(run.cfg)
        os.kill(minder, signal.SIGTERM)
        wait_for(lambda: not run.cfg.exists() and not alive(minder), "the minder's clean-up", 5)
    finally:
        run.end()
    second = Exec(owner)
    try:
        minder = minder_pid(second.cfg)
        os.kill(minder, signal.SIGKILL)
        wait_for(lambda: not alive(minder), "the minder's end")
        assert second.cfg.exists()  # killed outright: nothing could remove it then
        third = Exec(owner)  # the next exec sweeps it
        try:
            assert not second.cfg.exists()
            assert third.cfg.exists()
        finally:
            third.end()
    finally:
        second.end()


def test_what_the_command_makes_in_the_folder_is_kept(owner: Sandbox) -> None:
    """A first `projects/` (a folder the real one lacked) moves into the real folder at the end:
    the command's sessions are not lost with the private folder."""
    run = Exec(owner)
    (run.cfg / "projects").mkdir()
    (run.cfg / "projects" / "session.jsonl").write_text("{}\n")
    assert run.end() == 0
    wait_for(lambda: not run.cfg.exists(), "the private folder's removal")
    assert (owner.cfg / "projects" / "session.jsonl").read_text() == "{}\n"


def test_exec_env_still_hands_one_token_in_the_environment(owner: Sandbox) -> None:
    done = owner.wrap(
        "exec", "--env", "--", sys.executable, "-c",
        "import os;print(os.environ['CLAUDE_CODE_OAUTH_TOKEN'])",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == owner.oauth()["accessToken"]
    help_text = owner.wrap("exec", "--help").stdout
    assert "next rotation" in help_text


def _expiry(doc: dict[str, Any]) -> float:
    stamp = doc["status"]["expirationTimestamp"]
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_token_json_reports_the_expiry_a_rotation_keeps(
    owner: Sandbox, families: TokenFamilies
) -> None:
    """The token's life ends at the owner's next rotation, which comes at the latest when the
    refresh window opens: `token --json` says that moment, a rotation never comes before it,
    and --min-valid counts to it."""
    window = 8.0
    owner.env["CLAUDE_WRAP_REFRESH_WINDOW"] = str(window)
    login = families.login()
    login["expiresAt"] = int((time.time() + 14) * 1000)
    owner.write({"claudeAiOauth": login})
    families._access_expiry[login["accessToken"]] = time.time() + 14
    asked = time.time()
    doc = json.loads(owner.wrap("token", "--json", "--min-valid", "2").stdout)
    assert doc["status"]["token"] == login["accessToken"]  # 6 s left before the window: enough
    assert doc["claudeWrap"]["validUntil"] == login["expiresAt"] - window * 1000
    dies = doc["claudeWrap"]["validUntil"] / 1000
    assert 0 <= dies - _expiry(doc) < 1.0  # RFC 3339 to the second
    assert doc["claudeWrap"]["expiresAt"] == login["expiresAt"]
    # Before the reported expiry, the owner's own schedule does not rotate: the token works.
    assert owner.wrap("keep").returncode == 0
    assert families.refreshes == 0
    assert families.access_ok(login["accessToken"])
    # Past it, the keeper rotates, and the token dies: never before the moment reported.
    time.sleep(max(0.0, dies - time.time() + 0.2))
    assert owner.wrap("keep").returncode == 0
    assert families.refreshes == 1
    assert not families.access_ok(login["accessToken"])
    assert time.time() >= dies
    # More than is left before the next rotation: refreshed first.
    wanted = 120
    doc = json.loads(owner.wrap("token", "--json", "--min-valid", str(wanted)).stdout)
    assert families.access_ok(doc["status"]["token"])
    assert _expiry(doc) >= asked + wanted
    assert families.refreshes == 1  # the keeper's token was good for that long already


def test_an_execd_command_on_a_guest_follows_the_guests_pulls(
    tmp_path: Path, owner: Sandbox, families: TokenFamilies
) -> None:
    """On a guest (a shared folder here), the minder follows the guest's own file: each token
    the guest pulls after the owner rotates reaches the command; the guest never refreshes."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o700)
    assert owner.wrap("share", str(folder)).returncode == 0
    with TokenServer("g") as guest_server:
        guest = Sandbox(tmp_path / "guest", guest_server.url)
        guest.env["CLAUDE_WRAP_GUEST"] = f"folder:{folder}"
        guest.env["TMPDIR"] = str(tmp_path / "tmp")
        run = Exec(guest)
        try:
            assert run.token()["accessToken"] == owner.oauth()["accessToken"]
            assert owner.wrap("refresh", "--force").returncode == 0
            assert owner.wrap("keep").returncode == 0  # the shared token file, rewritten
            pulled = guest.wrap("refresh", "--force")  # the guest pulls (it never refreshes)
            assert pulled.returncode == 0, pulled.stderr
            new = owner.oauth()["accessToken"]
            assert guest.oauth()["accessToken"] == new
            wait_for(lambda: run.token()["accessToken"] == new, "the pulled token's hand-on")
            assert run.end() == 0
        finally:
            run.proc.kill()
        assert guest_server.requests == []
    wait_for(lambda: not run.cfg.exists(), "the private folder's removal")

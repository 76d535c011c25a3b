"""The push (issue 26): an owner sends each new access token to its guests at once, over a real
sshd on 127.0.0.1 with docs/guests.md's forced command (`token --json --for-guest`), or through
a shared folder its keeper rewrites at the rotation. The guests' keepers (`keep --watch`) store
each token the moment it comes. The whole module runs in a loopback-only network namespace.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from claude_wrap_testing.netns import enter_loopback_only, namespace_id
from claude_wrap_testing.sshd import Sshd
from claude_wrap_testing.tokenserver import TokenFamilies, TokenServer
from tests.conftest import REPO, Sandbox, login_doc

pytestmark = pytest.mark.timeout(120)

FORCED = "token --json --for-guest"


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
        # docs/guests.md's forced command, the owner's sandbox as its environment. `env` without
        # -i: sshd's SSH_ORIGINAL_COMMAND (what the guest asked) must reach it.
        self.command = f"env {env} {sys.executable} -m claude_wrap {FORCED}"


@pytest.fixture
def owner(tmp_path: Path, token_server: TokenServer) -> Owner:
    box = Owner(tmp_path / "owner", token_server)
    box.box.write(login_doc())  # good for 8 hours: the owner rotates only when told
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
    box.env["CLAUDE_WRAP_GUEST_TIMEOUT"] = "20"
    box.env.update(extra)
    return box


class Keeper:
    """`claude-wrap keep --watch` in a sandbox, its output collected line by line."""

    def __init__(self, box: Sandbox) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "claude_wrap", "keep", "--watch"], env=box.env, cwd=REPO,
            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for pipe, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._collect, args=(pipe, lines), daemon=True).start()

    @staticmethod
    def _collect(pipe: object, lines: list[str]) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            lines.append(line.rstrip("\n"))

    def pushes(self) -> list[str]:
        return [line for line in self.out if "pushed" in line]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


@pytest.fixture
def keepers() -> Iterator[Callable[[Sandbox], Keeper]]:
    started: list[Keeper] = []

    def start(box: Sandbox) -> Keeper:
        started.append(Keeper(box))
        return started[-1]

    yield start
    for keeper in started:
        if keeper.proc.poll() is None:
            keeper.proc.kill()
            keeper.proc.wait()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def ssh(sshd: Sshd, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*shlex.split(sshd.ssh_command), "-T", "owner", *words],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )


def followers() -> list[psutil.Process]:
    """The owner's ends of push sessions that run now."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "--for-guest" in cmdline:
            found.append(proc)
    return found


def test_the_forced_command_serves_a_pull_or_a_follow_and_refuses_anything_else(
    owner: Owner, sshd: Sshd
) -> None:
    token = owner.box.oauth()["accessToken"]
    served: list[tuple[str, ...]] = [
        (), ("claude-wrap", "token", "--json", "--min-valid", "1200"),
        ("/opt/bin/claude-wrap", "token", "--min-valid=60"),
    ]
    for words in served:
        done = ssh(sshd, *words)
        assert done.returncode == 0, (words, done.stderr)
        assert json.loads(done.stdout)["status"]["token"] == token
    refusals: list[tuple[tuple[str, ...], str]] = [
        (("rm", "-rf", "/"), "'rm'"),
        (("claude-wrap", "refresh", "--force"), "'refresh'"),
        (("claude-wrap", "token", "--json", "--follow", "--min-valid", "5"), "'--min-valid'"),
        (("claude-wrap", "token", "--min-valid", "lots"), "'lots'"),
        (("claude-wrap", "token", "--min-valid", "99999"), "'99999'"),
        (("claude-wrap", "token", "--follow", "--follow"), "'--follow'"),
        (("claude-wrap", "token", "--shell"), "'--shell'"),
    ]
    for words, refused in refusals:
        done = ssh(sshd, *words)
        assert done.returncode == 2, (words, done.stdout, done.stderr)
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and refused in lines[0], (words, lines)
    assert owner.tokens.requests == []  # a guest's ask never rotated the owner's login


def test_an_old_forced_command_line_still_answers_a_one_shot_pull(
    tmp_path: Path, owner: Owner, guest_tokens: TokenServer,
    keepers: Callable[[Sandbox], Keeper],
) -> None:
    old = owner.command.replace(FORCED, "token --json --min-valid 1200")
    with Sshd(tmp_path / "old-sshd", old) as server:
        done = ssh(server, "claude-wrap", "token", "--json", "--follow")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"]["token"] == owner.box.oauth()["accessToken"]
        # A guest keeper behind it: the one answer stored, one line, no loop of reconnects.
        guest = make_guest(tmp_path / "guest", guest_tokens, "ssh:owner",
                           CLAUDE_WRAP_GUEST_SSH=server.ssh_command)
        keeper = keepers(guest)
        wait_for(lambda: len(keeper.pushes()) == 1, "the one answer")
        time.sleep(3)
        assert len(keeper.pushes()) == 1
        said = [line for line in keeper.err if "lacks --for-guest" in line]
        assert len(said) == 1, keeper.err
        assert guest.oauth()["accessToken"] == owner.box.oauth()["accessToken"]
        keeper.stop()
        assert server.logins() <= 3  # the test's own, the keeper's first pull and one session


def test_a_guest_keeper_gets_each_new_token_pushed_and_its_ssh_ends_with_it(
    tmp_path: Path, owner: Owner, sshd: Sshd, guest_tokens: TokenServer,
    keepers: Callable[[Sandbox], Keeper],
) -> None:
    guest = make_guest(tmp_path / "guest", guest_tokens, "ssh:owner",
                       CLAUDE_WRAP_GUEST_SSH=sshd.ssh_command)
    assert guest.wrap("refresh").returncode == 0
    first = owner.box.oauth()["accessToken"]
    assert guest.oauth()["accessToken"] == first
    keeper = keepers(guest)
    wait_for(lambda: len(keeper.pushes()) == 1, "the session's first line")
    assert "pushed the token already held" in keeper.pushes()[0]
    [session] = followers()
    for n in range(2):
        rotated = owner.box.wrap("refresh", "--force")
        assert rotated.returncode == 0, rotated.stderr
        new = owner.box.oauth()["accessToken"]
        wait_for(lambda: guest.oauth()["accessToken"] == new, "the pushed token")  # noqa: B023
        took = guest.creds.stat().st_mtime - owner.box.creds.stat().st_mtime
        print(f"rotation {n + 1}: on the guest {took * 1000:.0f} ms after the owner wrote it")
        assert "refreshToken" not in guest.oauth()
    time.sleep(1)  # a second push of one token would come now
    assert len(keeper.pushes()) == 3, keeper.out
    assert len(owner.tokens.requests) == 2  # the two rotations asked for, no more
    assert guest_tokens.requests == []
    assert sshd.logins() == 2  # the first pull, then one session for everything since
    ssh_child = [p for p in psutil.Process(keeper.proc.pid).children() if "ssh" in p.name()]
    assert len(ssh_child) == 1
    keeper.stop()
    assert keeper.err[1:] == [], keeper.err  # the first line says what it watches
    psutil.wait_procs([*ssh_child, session], timeout=10)
    assert not ssh_child[0].is_running() and not session.is_running()


def test_a_dropped_session_is_one_line_and_comes_back_with_the_newest_token(
    tmp_path: Path, owner: Owner, sshd: Sshd, guest_tokens: TokenServer,
    keepers: Callable[[Sandbox], Keeper],
) -> None:
    guest = make_guest(tmp_path / "guest", guest_tokens, "ssh:owner",
                       CLAUDE_WRAP_GUEST_SSH=sshd.ssh_command)
    assert guest.wrap("refresh").returncode == 0
    keeper = keepers(guest)
    wait_for(lambda: len(keeper.pushes()) == 1, "the session's first line")
    held = guest.oauth()["accessToken"]
    sshd.__exit__()  # the owner goes away: its listener, then the session it served
    for session in followers():
        session.kill()
    time.sleep(8)  # three tries at least (1, 2 and 4 s apart)
    outage = [line for line in keeper.err if "cannot reach the owner" in line]
    assert len(outage) == 1, keeper.err
    assert outage[0].startswith("claude-wrap: cannot reach the owner of this login (ssh:owner)")
    assert outage[0].endswith("the last token works until the owner next rotates")
    assert guest.oauth()["accessToken"] == held  # kept, untouched
    rotated = owner.box.wrap("refresh", "--force")  # meanwhile the owner rotates
    assert rotated.returncode == 0, rotated.stderr
    new = owner.box.oauth()["accessToken"]
    sshd.__enter__()  # back, on the same port
    took = wait_for(lambda: guest.oauth()["accessToken"] == new, "the reconnect", timeout=40)
    print(f"back {took:.1f} s after the owner's sshd")
    assert len([line for line in keeper.err if "cannot reach the owner" in line]) == 1
    assert guest_tokens.requests == []


def test_a_folder_guest_holds_the_new_token_within_a_second_of_the_rotation(
    tmp_path: Path, owner: Owner, guest_tokens: TokenServer,
    keepers: Callable[[Sandbox], Keeper],
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    assert owner.box.wrap("share", str(shared)).returncode == 0
    token_file = shared / "claude-wrap-token.json"
    owners_keeper = keepers(owner.box)
    guest = make_guest(tmp_path / "guest", guest_tokens, f"folder:{shared}")
    assert guest.wrap("refresh").returncode == 0
    guests_keeper = keepers(guest)
    wait_for(lambda: len(owners_keeper.err) >= 1 and len(guests_keeper.err) >= 1,
             "both keepers watching")
    time.sleep(0.5)

    def shared_token() -> str:
        try:
            return str(json.loads(token_file.read_text())["status"]["token"])
        except (OSError, ValueError):
            return ""

    # claude-wrap's own refresh (what the shim's pre-flight runs), then Claude Code's way: a
    # temp file renamed over the credentials file.
    for how in ("claude-wrap refresh", "claude code's rename"):
        started = time.monotonic()
        if how == "claude-wrap refresh":
            assert owner.box.wrap("refresh", "--force").returncode == 0
            new = owner.box.oauth()["accessToken"]
        else:
            doc = owner.box.read()
            new = doc["claudeAiOauth"]["accessToken"] = f"sk-ant-oat01-by-claude-{time.time()}"
            tmp = owner.box.cfg / ".credentials.json.tmp.0badf00d"
            tmp.write_text(json.dumps(doc))
            tmp.chmod(0o600)
            tmp.rename(owner.box.creds)
        wait_for(lambda: shared_token() == new, "the shared file")  # noqa: B023
        wait_for(lambda: guest.oauth()["accessToken"] == new, "the guest's file")  # noqa: B023
        assert time.monotonic() - started < 10
        rotated_at = owner.box.creds.stat().st_mtime
        in_folder = token_file.stat().st_mtime - rotated_at
        on_guest = guest.creds.stat().st_mtime - rotated_at
        print(f"{how}: in the folder {in_folder * 1000:.0f} ms, "
              f"on the guest {on_guest * 1000:.0f} ms after the owner's file changed")
    assert guest_tokens.requests == []
    assert "refreshToken" not in guest.oauth()


def test_eight_guests_hold_the_new_token_at_once_with_one_rotation_and_one_push_each(
    tmp_path: Path, token_server: TokenServer, guest_tokens: TokenServer,
    keepers: Callable[[Sandbox], Keeper],
) -> None:
    """Eight guest keepers over the real sshd, the token service as the real one (a rotation
    revokes the old access token): the owner rotates once, every guest gets exactly one push of
    the new token and nothing else, and nobody rotates again. How long the last guest took is
    printed, not asserted (a shared machine's timing)."""
    families = TokenFamilies()
    token_server.default = families
    owner = Owner(tmp_path / "owner", token_server)
    owner.box.write({"claudeAiOauth": families.login()})
    guests = []
    with Sshd(tmp_path / "sshd", owner.command) as server:
        for n in range(8):
            box = make_guest(tmp_path / f"guest{n}", guest_tokens, "ssh:owner",
                             CLAUDE_WRAP_GUEST_SSH=server.ssh_command)
            assert box.wrap("refresh").returncode == 0
            guests.append((box, keepers(box)))
        wait_for(lambda: all(len(k.pushes()) == 1 for _, k in guests), "eight sessions")
        assert len(followers()) == 8
        rotated = owner.box.wrap("refresh", "--force")
        assert rotated.returncode == 0, rotated.stderr
        new = owner.box.oauth()["accessToken"]
        rotated_at = owner.box.creds.stat().st_mtime
        wait_for(lambda: all(b.oauth()["accessToken"] == new for b, _ in guests), "eight pushes")
        delays = sorted((b.creds.stat().st_mtime - rotated_at) * 1000 for b, _ in guests)
        print("eight guests: new token on each "
              + ", ".join(f"{d:.0f}" for d in delays) + " ms after the owner's rotation")
        time.sleep(1)  # a second push, or a second rotation, would come now
        assert families.refreshes == 1
        assert families.invalid_grants == 0
        for box, keeper in guests:
            assert len(keeper.pushes()) == 2, keeper.out
            assert len([p for p in keeper.pushes() if "new access token pushed" in p]) == 1
            assert families.access_problem(box.oauth()["accessToken"], count=False) is None
        assert server.logins() == 16  # eight first pulls, then one session each
    assert guest_tokens.requests == []


def test_the_owner_side_refreshes_on_the_owners_schedule_once_for_all_sessions(
    tmp_path: Path, token_server: TokenServer, guest_tokens: TokenServer,
    keepers: Callable[[Sandbox], Keeper],
) -> None:
    """No keeper on the owner: its push sessions keep its login fresh themselves, when the
    owner's refresh window says (600 s; the guests' own is 300 s, so no guest asks first), three
    sessions due at the same moment make one refresh, and each guest gets it pushed once."""
    families = TokenFamilies()
    token_server.default = families
    owner = Owner(tmp_path / "owner", token_server)
    doc = {"claudeAiOauth": families.login()}
    doc["claudeAiOauth"]["expiresAt"] = int((time.time() + 608) * 1000)  # due in 8 s
    owner.box.write(doc)
    first = doc["claudeAiOauth"]["accessToken"]
    with Sshd(tmp_path / "sshd", owner.command) as server:
        guests = []
        for n in range(3):
            box = make_guest(tmp_path / f"guest{n}", guest_tokens, "ssh:owner",
                             CLAUDE_WRAP_GUEST_SSH=server.ssh_command,
                             CLAUDE_WRAP_REFRESH_WINDOW="300")
            assert box.wrap("refresh").returncode == 0
            assert box.oauth()["accessToken"] == first  # not due for the guest: no rotation
            guests.append((box, keepers(box)))
        assert families.refreshes == 0
        wait_for(lambda: all(len(k.pushes()) == 2 for _, k in guests), "the owner's refresh",
                 timeout=40)
        new = owner.box.oauth()["accessToken"]
        assert new != first
        time.sleep(1)
        assert families.refreshes == 1
        for box, keeper in guests:
            assert box.oauth()["accessToken"] == new
            assert len(keeper.pushes()) == 2, keeper.out
    assert guest_tokens.requests == []

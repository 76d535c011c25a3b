"""Bad input: whatever is at the credentials path, a clear one-line message naming the file and
the problem, nothing lost, no traceback, no refresh token spent unless the login can be saved.

Each case runs `claude-wrap refresh` and the `claude` shim. Cases that need permissions a root
process ignores (an unreadable file, a read-only folder) run the wrapper, when root, without
CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH; a full disk is a small tmpfs mounted as the config folder,
which needs root (see privileged_or_fail).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WRAP
from tests.reliability.conftest import (
    FIGURES,
    RSandbox,
    count_requests,
    privileged_or_fail,
    user_lines,
)
from tests.reliability.helpers import expired, temp_files, unique_login

FIX = "fix or remove it, then run `claude /login`"
LOGIN = "run `claude /login` to log in again"

# Outcomes
REFUSED = "refused"  # exit 3, one line, file unchanged, nothing sent; the shim runs claude
REPAIRED = "repaired"  # a refresh or a local repair fixes it: exit 0, other fields kept, 0600
NO_LOGIN = "no-login"  # nothing a refresh can do: exit 3 saying to log in; the shim is silent


@dataclass
class Case:
    setup: Callable[[RSandbox], Any]
    outcome: str
    problem: str = ""  # what the line says after "<path>: "; "re:..." for a regex
    exit: int = 3
    unprivileged: bool = False  # run without the DAC capabilities (root ignores modes)
    shim: bool = True  # False: the fake claude, like Claude Code, would block on this path
    hint: str = FIX
    shim_says: bool = False  # NO_LOGIN: the shim too says why (claude's own error is vaguer)

    def says(self, path: str, line: str) -> bool:
        problem = self.problem[3:] if self.problem.startswith("re:") else re.escape(self.problem)
        return re.match(f"claude-wrap: {re.escape(path)}: {problem}", line) is not None


def raw(data: bytes) -> Callable[[RSandbox], Any]:
    return lambda s: s.write(data)


def oauth_with(**fields: Any) -> Callable[[RSandbox], Any]:
    def setup(s: RSandbox) -> None:
        doc = unique_login("bad")
        doc["claudeAiOauth"].update(fields)
        s.write(doc)

    return setup


def doc_with(**top: Any) -> Callable[[RSandbox], Any]:
    def setup(s: RSandbox) -> None:
        doc = expired("extra")
        doc.update(top)
        s.write(doc)

    return setup


def huge_number(s: RSandbox) -> None:
    # 1e400 is valid JSON (JSON.parse reads Infinity); written back it would be "Infinity",
    # which is not JSON at all, and Claude Code could no longer read the file.
    s.write(json.dumps(expired("huge")).encode()[:-1] + b',"x":1e400}')


def directory(s: RSandbox) -> None:
    s.creds.mkdir()


def fifo(s: RSandbox) -> None:
    os.mkfifo(s.creds)


def unreadable(s: RSandbox) -> None:
    s.write(expired("unreadable"), mode=0o000)


def read_only_folder(s: RSandbox) -> None:
    s.write(expired("ro"))
    s.cfg.chmod(0o555)


def symlink_loop(s: RSandbox) -> None:
    s.creds.symlink_to(s.cfg / "loop")
    (s.cfg / "loop").symlink_to(s.creds)


def dangling(s: RSandbox) -> None:
    s.creds.symlink_to(s.cfg / "gone.json")


def big(s: RSandbox) -> None:
    doc = json.dumps(expired("big")).encode()
    s.write(doc[:-1] + b',"pad":"' + b"x" * (10 << 20) + b'"}')


def deep(s: RSandbox) -> None:
    s.write(b"[" * 200_000 + b"]" * 200_000)


def symlinked_expired(s: RSandbox) -> None:
    target = s.root / "elsewhere.json"
    target.write_text(json.dumps(expired("linked")))
    target.chmod(0o600)
    s.creds.symlink_to(target)


CASES: dict[str, Case] = {
    "empty-file": Case(raw(b""), REFUSED, "is empty"),
    "only-whitespace": Case(raw(b" \n\t\n"), REFUSED, "is empty"),
    "not-json": Case(raw(b"{not json"), REFUSED, "is not valid JSON (Expecting"),
    "truncated-json": Case(
        raw(b'{"claudeAiOauth": {"accessToken": "sk-ant-oat01-'),
        REFUSED,
        "is not valid JSON (Unterminated string",
    ),
    "trailing-garbage": Case(raw(b'{"claudeAiOauth": {}} xyz'), REFUSED, "is not valid JSON"),
    "nul-bytes": Case(raw(b"\0\0\0\0"), REFUSED, "is not valid JSON"),
    "utf8-bom": Case(raw(b"\xef\xbb\xbf{}"), REFUSED, "is not valid JSON"),
    "nan-literal": Case(
        raw(b'{"claudeAiOauth": {"accessToken": "a", "expiresAt": NaN}}'),
        REFUSED,
        "is not valid JSON (NaN is not a JSON value)",
    ),
    "infinity-literal": Case(
        raw(b'{"claudeAiOauth": {"accessToken": "a"}, "x": -Infinity}'),
        REFUSED,
        "is not valid JSON (-Infinity is not a JSON value)",
    ),
    "huge-number-in-an-unknown-field": Case(
        huge_number,
        REFUSED,
        "holds a value JSON cannot store (Out of range float values are not JSON compliant",
        hint="fix or remove that value",
    ),
    "lone-surrogate-in-an-unknown-field": Case(doc_with(note="\ud800 half a pair"), REPAIRED),
    "json-array": Case(raw(b"[]"), REFUSED, "holds a list, not a JSON object"),
    "json-string": Case(raw(b'"sk-ant"'), REFUSED, "holds a string, not a JSON object"),
    "json-null": Case(raw(b"null"), REFUSED, "holds null, not a JSON object"),
    "json-number": Case(raw(b"42"), REFUSED, "holds a number, not a JSON object"),
    "nested-too-deeply": Case(deep, REFUSED, "is not valid JSON (nested too deeply)"),
    "oauth-is-a-string": Case(
        raw(b'{"claudeAiOauth": "sk-ant-oat01-x"}'),
        REFUSED,
        "claudeAiOauth is a string, not an object",
    ),
    "oauth-is-a-list": Case(
        raw(b'{"claudeAiOauth": []}'), REFUSED, "claudeAiOauth is a list, not an object"
    ),
    "expiresAt-string": Case(
        oauth_with(expiresAt="1767225600000"), REFUSED, "expiresAt is a string, not a number"
    ),
    "expiresAt-seconds": Case(
        oauth_with(expiresAt=1767225600),
        REFUSED,
        "expiresAt is 1767225600: seconds, not the milliseconds expected",
    ),
    "expiresAt-negative": Case(oauth_with(expiresAt=-5), REFUSED, "expiresAt is -5, not a time"),
    "expiresAt-absurd": Case(
        oauth_with(expiresAt=10**20), REFUSED, "expiresAt is 100000000000000000000, far past"
    ),
    "expiresAt-overflow": Case(
        raw(b'{"claudeAiOauth": {"accessToken": "a", "refreshToken": "b", "expiresAt": 1e400}}'),
        REFUSED,
        "expiresAt is inf, not a time",
    ),
    "expiresAt-boolean": Case(
        oauth_with(expiresAt=True), REFUSED, "expiresAt is a boolean, not a number"
    ),
    "accessToken-number": Case(
        oauth_with(accessToken=12345), REFUSED, "accessToken is a number, not a string"
    ),
    "refreshToken-list": Case(
        oauth_with(refreshToken=["x"]), REFUSED, "refreshToken is a list, not a string"
    ),
    "scopes-as-a-string": Case(oauth_with(scopes="user:inference user:profile"), REPAIRED),
    "scopes-not-strings": Case(oauth_with(scopes=[1, 2, None]), REPAIRED),
    "scopes-missing": Case(oauth_with(scopes=None), REPAIRED),
    "access-token-blank": Case(oauth_with(accessToken=""), REPAIRED),
    "unknown-extra-fields": Case(
        doc_with(zzz={"nested": [1, 2, {"é": "ü"}]}, aaa=None, num=1.5), REPAIRED
    ),
    "symlinked-file": Case(symlinked_expired, REPAIRED),
    "no-claudeAiOauth": Case(
        raw(b'{"mcpOAuth": {"server": {"token": "keep"}}}'),
        NO_LOGIN,
        f"no claudeAiOauth login is stored; {LOGIN}",
    ),
    "blanked-by-claude-code": Case(
        oauth_with(accessToken="", refreshToken="", expiresAt=0),
        NO_LOGIN,
        f"the stored tokens are blank (the login was revoked); {LOGIN}",
    ),
    "no-refresh-token": Case(
        oauth_with(refreshToken=None, expiresAt=1_700_000_000_000),
        NO_LOGIN,
        f"the access token has expired and no refresh token is stored; {LOGIN}",
        shim_says=True,
    ),
    "invalid-utf8": Case(
        raw(b'{"claudeAiOauth": {"accessToken": "\xff\xfe"}}'),
        REFUSED,
        "is not valid UTF-8 (byte 35)",
    ),
    "ten-MiB-file": Case(big, REFUSED, r"re:is 1048\d{4} bytes, over the 1 MiB limit"),
    "a-directory": Case(directory, REFUSED, "is a directory, not a file"),
    "a-fifo": Case(fifo, REFUSED, "is not a regular file", shim=False),
    "symlink-loop": Case(symlink_loop, REFUSED, "is a symlink loop"),
    "dangling-symlink": Case(dangling, REFUSED, "is a symlink to "),
    "unreadable-file": Case(
        unreadable, REFUSED, "cannot be read: permission denied", unprivileged=True
    ),
}


def drop_dac() -> None:
    """In the child before exec: without these, root reads and writes whatever the modes say."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run(
    sandbox: RSandbox, argv: list[str], env: dict[str, str], unprivileged: bool
) -> subprocess.CompletedProcess[str]:
    preexec = drop_dac if unprivileged and os.geteuid() == 0 else None
    result = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=60, preexec_fn=preexec
    )
    sandbox.keep(f"{argv[-1]} stderr", result.stderr)
    sandbox.keep(f"{argv[-1]} stdout", result.stdout)
    assert "Traceback" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    return result


def snapshot(path: Path) -> Any:
    """What is at the path, to compare before and after: bytes, a listing, or a link target."""
    if path.is_symlink():
        return ("link", os.readlink(path))
    if path.is_dir():
        return ("dir", sorted(p.name for p in path.iterdir()))
    if path.exists() and not path.is_file():
        return ("special", path.stat().st_mode)
    try:
        return ("file", path.read_bytes(), path.stat().st_mode)
    except PermissionError:
        return ("file", None, path.stat().st_mode)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, sandbox: RSandbox, token_server: Any) -> None:
    case = CASES[name]
    case.setup(sandbox)
    before = snapshot(sandbox.creds)
    path = str(sandbox.creds)

    result = run(sandbox, [*WRAP, "refresh"], sandbox.env, case.unprivileged)
    lines = user_lines(result.stderr)
    if case.outcome == REPAIRED:
        _check_repaired(name, sandbox, before, result)
    else:
        assert result.returncode == case.exit, result.stderr
        [line] = lines
        assert case.says(path, line), line
        if case.outcome == REFUSED:
            assert line.endswith(case.hint), line
        assert snapshot(sandbox.creds) == before, "the file changed"
        assert count_requests(token_server) == 0

    # The shim: at most that one line, and claude runs all the same.
    if case.outcome == REPAIRED:
        _reset(sandbox, case)
        before = snapshot(sandbox.creds)
    if not case.shim:
        FIGURES["bad input: cases"] += 1
        FIGURES["bad input: runs"] += 1
        return
    runs = len(sandbox.runs())
    shim = run(sandbox, [str(sandbox.shim), "hi"], sandbox.shim_env(), case.unprivileged)
    assert shim.returncode == 0, shim.stderr
    assert len(sandbox.runs()) == runs + 1, "claude was not launched"
    shim_lines = user_lines(shim.stderr)
    if case.outcome == REFUSED:
        [line] = shim_lines
        assert case.says(path, line), line
        assert line.endswith(" (running claude anyway)"), line
        assert snapshot(sandbox.creds) == before, "the file changed"
    elif case.outcome == NO_LOGIN:
        if case.shim_says:
            [line] = shim_lines
            assert case.says(path, line) and line.endswith(" (running claude anyway)"), line
        else:
            assert shim_lines == []  # claude itself says "Please run /login", and that is right
        assert snapshot(sandbox.creds) == before
    else:
        assert shim_lines == [], shim.stderr
        used = sandbox.runs()[-1]["access_token"]
        if not token_server.issued or used != token_server.issued[-1]["access_token"]:
            # Scopes broken again on a token still good: put back locally from the memory of
            # the login `refresh` just wrote (issue 14), the file's own token kept.
            assert "repaired locally: restored scopes" in sandbox.log.read_text()
            assert used == sandbox.read()["claudeAiOauth"]["accessToken"]
            assert "user:inference" in sandbox.read()["claudeAiOauth"]["scopes"]
    assert temp_files(sandbox.cfg) == []
    FIGURES["bad input: cases"] += 1
    FIGURES["bad input: runs"] += 2
    count_requests(token_server)


def _reset(sandbox: RSandbox, case: Case) -> None:
    if sandbox.creds.is_symlink():
        os.unlink(sandbox.creds)
    case.setup(sandbox)


def _check_repaired(name: str, sandbox: RSandbox, before: Any, result: Any) -> None:
    assert result.returncode == 0, result.stderr
    # A good access token with bad scopes is repaired locally (issue 28); anything else refreshed.
    assert result.stdout.startswith(("refreshed (", "repaired without a refresh")), result.stdout
    assert user_lines(result.stderr) == []
    old = (
        json.loads(before[1])
        if before[0] == "file"
        else json.loads(Path(os.path.realpath(sandbox.creds)).read_bytes())
    )
    new = sandbox.read()
    assert isinstance(new["claudeAiOauth"]["scopes"], list)
    assert "user:inference" in new["claudeAiOauth"]["scopes"]
    owned = {"accessToken", "refreshToken", "expiresAt", "scopes"}
    assert list(new) == list(old) if before[0] == "file" else True
    for key, value in old.items():
        if key != "claudeAiOauth":
            assert new[key] == value, key
    for key, value in old["claudeAiOauth"].items():
        if key not in owned:
            assert new["claudeAiOauth"][key] == value, key
    if sandbox.creds.is_symlink():
        assert before[0] == "link"
    assert os.stat(sandbox.creds).st_mode & 0o777 == 0o600


def test_a_world_readable_file_is_refreshed_with_a_warning_and_made_0600(
    sandbox: RSandbox, token_server: Any
) -> None:
    sandbox.write(expired("open"), mode=0o644)
    warning = (
        f"claude-wrap: warning: {sandbox.creds} was readable by other users (mode 0644); "
        "it is now 0600"
    )
    result = sandbox.wrap("refresh")
    assert result.returncode == 0, result.stderr
    assert user_lines(result.stderr) == [warning]
    assert sandbox.creds.stat().st_mode & 0o777 == 0o600
    sandbox.write(expired("open-shim"), mode=0o604)
    runs = len(sandbox.runs())
    shim = sandbox.claude("hi")
    assert shim.returncode == 0
    assert user_lines(shim.stderr) == [warning.replace("0644", "0604")]
    assert len(sandbox.runs()) == runs + 1
    assert sandbox.creds.stat().st_mode & 0o777 == 0o600
    assert count_requests(token_server) == 2
    FIGURES["bad input: cases"] += 1
    FIGURES["bad input: runs"] += 2


def test_a_read_only_folder_fails_before_anything_is_spent(
    sandbox: RSandbox, token_server: Any
) -> None:
    raw = sandbox.write(expired("ro"))
    sandbox.cfg.chmod(0o555)
    try:
        result = run(sandbox, [*WRAP, "refresh"], sandbox.env, True)
        runs = len(sandbox.runs())
        shim = run(sandbox, [str(sandbox.shim), "hi"], sandbox.shim_env(), True)
    finally:
        sandbox.cfg.chmod(0o755)
    line = (
        f"claude-wrap: cannot create the lock folder {sandbox.cfg}/.oauth_refresh.lock: "
        "Permission denied; nothing was refreshed and the file was left as it was"
    )
    assert result.returncode == 8
    assert user_lines(result.stderr) == [line]
    assert shim.returncode == 0
    assert user_lines(shim.stderr) == [line + " (running claude anyway)"]
    assert len(sandbox.runs()) == runs + 1
    assert sandbox.creds.read_bytes() == raw
    assert count_requests(token_server) == 0
    FIGURES["bad input: cases"] += 1
    FIGURES["bad input: runs"] += 2


@pytest.fixture
def full_disk(sandbox: RSandbox) -> Iterator[Path]:
    """The config folder on a 256 KiB tmpfs, then filled to the last byte."""
    privileged_or_fail("a full disk (a small tmpfs)")
    if os.environ.get("CLAUDE_WRAP_TEST_SKIP_MOUNT") == "1":
        pytest.skip("CLAUDE_WRAP_TEST_SKIP_MOUNT=1 asked to skip the tmpfs mount")
    mount = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=256k,nr_inodes=64,mode=0700",
            "tmpfs",
            str(sandbox.cfg),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if mount.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs for the full-disk case ({mount.stderr.strip()}); set "
            "CLAUDE_WRAP_TEST_SKIP_MOUNT=1 to skip it knowingly"
        )
    try:
        yield sandbox.cfg
    finally:
        subprocess.run(["umount", "-l", str(sandbox.cfg)], check=False)


def fill(folder: Path, inodes: bool) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    n = 0
    while inodes:  # the last inodes too: then not even a lock folder can be made
        try:
            (folder / f"f{n}").touch()
            n += 1
        except OSError:
            break


@pytest.mark.parametrize("inodes", [False, True], ids=["no-space", "no-space-no-inodes"])
def test_a_full_disk_fails_before_the_token_is_spent(
    sandbox: RSandbox, token_server: Any, full_disk: Path, inodes: bool
) -> None:
    raw = sandbox.write(expired("full"))
    fill(full_disk, inodes)
    result = run(sandbox, [*WRAP, "refresh"], sandbox.env, False)
    runs = len(sandbox.runs())
    shim = run(sandbox, [str(sandbox.shim), "hi"], sandbox.shim_env(), False)
    if inodes:
        line = (
            f"claude-wrap: cannot create the lock folder {sandbox.cfg}/.oauth_refresh.lock: "
            "No space left on device; nothing was refreshed and the file was left as it was"
        )
        code = 8
    else:
        # The lock folders fit; the new file's space, reserved before the request, does not.
        line = (
            f"claude-wrap: could not save the login to {sandbox.creds}: no space left on the "
            "device; the old file is intact"
        )
        code = 7
    assert result.returncode == code, result.stderr
    assert user_lines(result.stderr) == [line]
    assert shim.returncode == 0
    assert user_lines(shim.stderr) == [line + " (running claude anyway)"]
    assert len(sandbox.runs()) == runs + 1
    assert sandbox.creds.read_bytes() == raw
    assert temp_files(sandbox.cfg) == []
    assert count_requests(token_server) == 0, "a refresh token was spent on a full disk"
    FIGURES["bad input: cases"] += 1
    FIGURES["bad input: runs"] += 2

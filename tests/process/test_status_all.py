"""`claude-wrap status --all`: every Claude config folder found, each with its login's state."""

from __future__ import annotations

import json

from tests.conftest import Sandbox, login_doc
from tests.process.test_keep import write_login


def test_status_all_lists_every_config_dir(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    work = sandbox.home / ".claude-work"
    write_login(work, login_doc(scopes=None))
    elsewhere = sandbox.root / "elsewhere"  # CLAUDE_CONFIG_DIR, outside HOME, no login yet
    elsewhere.mkdir()
    (sandbox.home / ".claude.json").write_text("{}")  # Claude Code's settings file: not a folder

    result = sandbox.wrap("status", "--all", "--json", env={"CLAUDE_CONFIG_DIR": str(elsewhere)})

    assert result.returncode == 1  # not every login is usable
    rows = {row["config_dir"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {str(elsewhere), str(sandbox.cfg), str(work)}
    assert rows[str(elsewhere)]["current"] is True
    assert rows[str(elsewhere)]["state"] == "missing"
    assert rows[str(sandbox.cfg)]["state"] == "ok"
    assert rows[str(work)]["state"] == "missing_scopes"
    assert rows[str(work)]["file"] == str(work / ".credentials.json")

    text = sandbox.wrap("status", "--all", env={"CLAUDE_CONFIG_DIR": str(elsewhere)}).stdout
    assert f"{elsewhere} (current)\n  login: missing" in text
    assert f"{work}\n  login: missing_scopes" in text


def test_status_all_exits_zero_when_every_login_is_usable(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    write_login(sandbox.home / ".claude-work", login_doc())
    result = sandbox.wrap("status", "--all")
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("login: ok") == 2


def state_tree(sandbox: Sandbox) -> dict[str, tuple[int, int, bytes]]:
    """Every file under claude-wrap's state folder (XDG_STATE_HOME), with its inode, mtime and
    content: what a command that only looks must leave as it found it."""
    found = {}
    for path in sorted(sandbox.state.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        found[str(path.relative_to(sandbox.state))] = (st.st_ino, st.st_mtime_ns, data)
    return found


def test_status_and_doctor_write_nothing_to_the_state_folder(sandbox: Sandbox) -> None:
    # issue 16: judging a login wrote the verdict cache and the login's memory, so `status` and
    # `doctor`, which only look, left files behind. A healthy login and one that lacks nothing
    # to judge: both used to be remembered by the first command that judged them.
    sandbox.write(login_doc())
    write_login(sandbox.home / ".claude-work", login_doc())
    before = state_tree(sandbox)

    for args in (("status",), ("status", "--json"), ("status", "--all"), ("doctor",)):
        result = sandbox.wrap(*args)
        assert result.returncode in {0, 1}, (args, result.stdout, result.stderr)
        assert state_tree(sandbox) == before, args

    # The shim's path still remembers it: the next healthy runs trust the cache.
    ran = sandbox.claude("auth", "status")
    assert ran.returncode == 0, ran.stderr
    assert (sandbox.state / "claude-wrap" / "verdict").is_file()

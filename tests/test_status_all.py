"""`claude-wrap status --all`: every Claude config folder found, each with its login's state."""

from __future__ import annotations

import json

from tests.conftest import Sandbox, login_doc
from tests.test_keep import write_login


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

"""`claude-wrap keep` and the background keeper's service files (systemd timer, launchd agent).

The generated files are checked by the tools that will read them where those exist here
(`systemd-analyze verify`), and the command they start is run for real in the sandbox.
"""

from __future__ import annotations

import json
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from claude_wrap_testing.tokenserver import TokenServer, invalid_grant
from tests.conftest import Sandbox, login_doc


def write_login(folder: Path, doc: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".credentials.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)


# keep --------------------------------------------------------------------------------------


def test_keep_is_quiet_when_there_is_nothing_to_do(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(login_doc())
    result = sandbox.wrap("keep")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert token_server.requests == []
    assert sandbox.creds.read_bytes() == raw


def test_keep_all_repairs_every_config_dir(sandbox: Sandbox, token_server: TokenServer) -> None:
    sandbox.write(login_doc(scopes=None))  # ~/.claude: scopes lost by some other tool
    work = sandbox.home / ".claude-work"
    write_login(work, login_doc(expires_in_s=-60, refresh="sk-ant-ort01-work-refresh-CCCC"))
    (sandbox.home / ".claude-empty").mkdir()  # a folder with no login: nothing to keep

    result = sandbox.wrap("keep", "--all")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # ~/.claude's token is good: its scopes are put back locally (issue 28); the work folder's
    # expired login is refreshed.
    assert token_server.refresh_tokens_seen == ["sk-ant-ort01-work-refresh-CCCC"]
    assert "user:inference" in sandbox.oauth()["scopes"]
    work_oauth = json.loads((work / ".credentials.json").read_text())["claudeAiOauth"]
    assert work_oauth["expiresAt"] > login_doc()["claudeAiOauth"]["expiresAt"] - 60_000
    assert f"{sandbox.cfg}: repaired without a refresh" in result.stdout
    assert f"{work}: refreshed" in result.stdout
    assert ".claude-empty" not in result.stdout


def test_keep_exit_status_is_refreshs(sandbox: Sandbox, token_server: TokenServer) -> None:
    raw = sandbox.write(login_doc(expires_in_s=-60))
    token_server.script(invalid_grant())
    result = sandbox.wrap("keep")
    assert result.returncode == 4
    assert "rejected the stored refresh token" in result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.creds.read_bytes() == raw


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("CLAUDE_WRAP_STORAGE=zz", "CLAUDE_WRAP_STORAGE='zz' is not one of auto, file, keychain"),
        ("CLAUDE_WRAP_LOCK_TIMEOUT=soon", "CLAUDE_WRAP_LOCK_TIMEOUT='soon' is not a number"),
    ],
)
def test_a_bad_setting_is_said_once_not_per_folder(
    sandbox: Sandbox, token_server: TokenServer, setting: str, said: str
) -> None:
    """A setting of ours holds for every folder: one line from the entry point, exit 2, nothing
    refreshed (errors.SettingError is a WrapError, which keep reports per folder otherwise)."""
    sandbox.write(login_doc(expires_in_s=-60))
    write_login(sandbox.home / ".claude-work", login_doc(expires_in_s=-60))
    name, _, value = setting.partition("=")
    result = sandbox.wrap("keep", "--all", env={name: value})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"claude-wrap: {said}")  # no folder before it
    assert token_server.requests == []


# the keeper's files ------------------------------------------------------------------------


def keeper_env(sandbox: Sandbox) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(sandbox.home / ".config")}


def exec_start(service: str) -> list[str]:
    line = next(x for x in service.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart=").replace("%%", "%"))


def test_systemd_keeper_is_valid_idempotent_and_runs(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    env = keeper_env(sandbox)
    first = sandbox.wrap("install", "--keeper=timer", "--manager", "systemd", env=env)
    second = sandbox.wrap("install", "--keeper=timer", "--manager", "systemd", env=env)

    assert first.returncode == 0, first.stderr
    units = sandbox.home / ".config" / "systemd" / "user"
    service = units / "claude-wrap-keeper.service"
    timer = units / "claude-wrap-keeper.timer"
    assert f"installed: {service}" in first.stdout
    assert "systemctl --user enable --now claude-wrap-keeper.timer" in first.stdout
    assert second.returncode == 0
    assert f"already installed: {service}" in second.stdout
    assert f"already installed: {timer}" in second.stdout
    report = json.loads(sandbox.wrap("doctor", "--json", env=env).stdout)
    (found,) = [f for f in report["findings"] if f["check"] == "keeper"]
    assert found["files"] == [str(service), str(timer)]

    text = service.read_text()
    assert "Type=oneshot" in text
    timer_text = timer.read_text()
    assert "OnUnitActiveSec=5min" in timer_text
    assert "OnBootSec=1min" in timer_text
    assert "WantedBy=timers.target" in timer_text
    # The token server's URL, a setting of ours, is carried into the unit; HOME is not.
    assert f'Environment="CLAUDE_WRAP_TOKEN_URL={sandbox.env["CLAUDE_WRAP_TOKEN_URL"]}"' in text

    analyze = shutil.which("systemd-analyze")
    if analyze:
        check = subprocess.run(
            [analyze, "verify", str(service), str(timer)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        assert "claude-wrap-keeper" not in check.stderr, check.stderr
    else:  # pragma: no cover - this image has systemd-analyze; without it, check the structure
        sections = [x for x in text.splitlines() if x.startswith("[")]
        assert sections == ["[Unit]", "[Service]"]
        assert [x for x in timer_text.splitlines() if x.startswith("[")] == [
            "[Unit]",
            "[Timer]",
            "[Install]",
        ]
        assert exec_start(text)[0] == sys.executable

    # Run what the unit starts, as systemd would: an expired login gets refreshed, then quiet.
    argv = exec_start(text)
    assert argv[1:] == ["-m", "claude_wrap", "keep", "--all"]
    sandbox.write(login_doc(expires_in_s=-60))
    run = subprocess.run(argv, env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "refreshed" in run.stdout
    again = subprocess.run(argv, env=sandbox.env, capture_output=True, text=True, timeout=60)
    assert (again.returncode, again.stdout) == (0, "")
    assert len(token_server.requests) == 1


def test_systemd_quoting_survives_odd_paths(sandbox: Sandbox) -> None:
    odd = sandbox.root / 'odd dir "50%" $HOME'
    odd.mkdir()
    env = {**keeper_env(sandbox), "CLAUDE_CONFIG_DIR": str(odd)}
    installed = sandbox.wrap("install", "--keeper=timer", "--manager", "systemd", env=env)
    assert installed.returncode == 0
    text = (sandbox.home / ".config/systemd/user/claude-wrap-keeper.service").read_text()
    line = next(x for x in text.splitlines() if x.startswith("Environment="))
    value = shlex.split(line.removeprefix("Environment="))[0]
    assert value.replace("%%", "%") == f"CLAUDE_CONFIG_DIR={odd}"  # no $ expansion there
    analyze = shutil.which("systemd-analyze")
    if analyze:
        service = sandbox.home / ".config/systemd/user/claude-wrap-keeper.service"
        check = subprocess.run([analyze, "verify", str(service)], capture_output=True, text=True)
        assert "claude-wrap-keeper" not in check.stderr, check.stderr


def test_launchd_keeper_plist_runs_every_five_minutes(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    result = sandbox.wrap("install", "--keeper=timer", "--manager", "launchd")
    assert result.returncode == 0, result.stderr
    plist = sandbox.home / "Library" / "LaunchAgents" / "io.github.claude-wrap.keeper.plist"
    job = plistlib.loads(plist.read_bytes())
    assert job["Label"] == "io.github.claude-wrap.keeper"
    assert job["StartInterval"] == 300
    assert job["RunAtLoad"] is True
    assert job["ProgramArguments"][1:] == ["-m", "claude_wrap", "keep", "--all"]
    # launchd does not create the folder of the job's output files: install does.
    assert Path(job["StandardOutPath"]).parent.is_dir()
    assert Path(job["StandardOutPath"]).parent == sandbox.state / "claude-wrap"
    assert "launchctl bootstrap" in result.stdout
    again = sandbox.wrap("install", "--keeper=timer", "--manager", "launchd")
    assert f"already installed: {plist}" in again.stdout

    sandbox.write(login_doc(scopes=None))
    env = {**sandbox.env, **job.get("EnvironmentVariables", {})}
    run = subprocess.run(
        job["ProgramArguments"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "user:inference" in sandbox.oauth()["scopes"]


@pytest.mark.parametrize("manager", ["systemd", "launchd"])
def test_uninstall_keeper_removes_only_its_files(sandbox: Sandbox, manager: str) -> None:
    env = keeper_env(sandbox)
    assert sandbox.wrap("install", "--keeper=timer", "--manager", manager, env=env).returncode == 0
    removed = sandbox.wrap("uninstall", "--keeper", "--manager", manager, env=env)
    assert removed.returncode == 0
    assert removed.stdout.count("removed: ") == (2 if manager == "systemd" else 1)
    assert not list((sandbox.home).rglob("*claude-wrap*keeper*"))
    nothing = sandbox.wrap("uninstall", "--keeper", "--manager", manager, env=env)
    assert nothing.stdout.strip() == "no keeper to remove"


def test_install_keeper_refuses_to_overwrite_a_foreign_file(sandbox: Sandbox) -> None:
    units = sandbox.home / ".config" / "systemd" / "user"
    units.mkdir(parents=True)
    mine = units / "claude-wrap-keeper.service"
    mine.write_text("[Service]\nExecStart=/bin/true\n")
    env = keeper_env(sandbox)
    result = sandbox.wrap("install", "--keeper=timer", "--manager", "systemd", env=env)
    assert result.returncode == 3
    assert "was not written by claude-wrap" in result.stderr
    assert mine.read_text() == "[Service]\nExecStart=/bin/true\n"

"""The `claude` shim as users run it: installed by `claude-wrap install`, found on PATH, in front
of a fake `claude` that reads the credentials file the way Claude Code does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from claude_wrap_testing.tokenserver import TokenServer, invalid_grant
from tests.conftest import ACCESS, REPO, Sandbox, login_doc


def test_echo_hello_print_with_a_login_that_lacks_scopes(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(scopes=None))
    result = sandbox.claude("--print", input=b"hello")
    assert result.returncode == 0, result
    assert result.stdout.startswith(b"fake answer: ")
    assert b"stdin=5:" in result.stdout
    assert result.stderr == b""
    assert token_server.requests == []  # a good token: repaired locally (issue 28)
    assert "user:inference" in sandbox.oauth()["scopes"]
    (run,) = sandbox.runs()
    assert run["active"] == "1"
    assert run["access_token"] == ACCESS  # the stored token, still good


def test_healthy_run_is_transparent(sandbox: Sandbox, token_server: TokenServer) -> None:
    sandbox.write(login_doc())
    env = {**sandbox.env, "FAKE_CLAUDE_EXIT": "3"}
    args = ["-p", "--model", "x y", "--", "-h"]
    direct = subprocess.run(
        [str(sandbox.fake), *args],
        env={**env, "CLAUDE_WRAP_ACTIVE": "1"},
        input=b"data",
        capture_output=True,
    )
    shimmed = sandbox.claude(*args, input=b"data", env=sandbox.shim_env(FAKE_CLAUDE_EXIT="3"))
    assert (shimmed.stdout, shimmed.stderr, shimmed.returncode) == (
        direct.stdout,
        direct.stderr,
        direct.returncode,
    )
    assert shimmed.returncode == 3
    assert token_server.requests == []
    first, second = sandbox.runs()
    assert first["argv"][1:] == second["argv"][1:] == args
    assert second["cwd"] == str(sandbox.root)


def test_death_by_signal_is_passed_through(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    result = sandbox.claude("--print", env=sandbox.shim_env(FAKE_CLAUDE_SIGNAL="15"))
    assert result.returncode == -signal.SIGTERM
    # Through a shell, that is the conventional 128+N.
    shell = subprocess.run(
        ["/bin/sh", "-c", f"'{sandbox.shim}' --print </dev/null; echo status=$?"],
        env=sandbox.shim_env(FAKE_CLAUDE_SIGNAL="15"),
        capture_output=True,
    )
    assert shell.stdout.endswith(b"status=143\n")


def test_sigterm_to_the_shim_reaches_claude(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    proc = subprocess.Popen(
        [str(sandbox.shim), "--print"],
        env=sandbox.shim_env(FAKE_CLAUDE_SLEEP="30"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 20
    while not sandbox.runs() and time.time() < deadline:
        time.sleep(0.05)
    (run,) = sandbox.runs()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(run["pid"], 0)


def test_shim_twice_on_path_runs_claude_once_and_refreshes_once(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(expires_in_s=-10))
    second = sandbox.root / "second-shim"
    assert sandbox.wrap("install", "--dir", str(second)).returncode == 0
    env = sandbox.shim_env()
    env["PATH"] = f"{second}:{sandbox.shim.parent}:{sandbox.fakebin}:/usr/bin:/bin"
    result = sandbox.claude("--print", env=env)
    assert result.returncode == 0, result
    assert len(sandbox.runs()) == 1
    assert len(token_server.requests) == 1


def test_symlinked_shim_is_skipped(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    links = sandbox.root / "links"
    links.mkdir()
    (links / "claude").symlink_to(sandbox.shim)
    env = sandbox.shim_env()
    env["PATH"] = f"{links}:{sandbox.fakebin}:/usr/bin:/bin"
    result = subprocess.run(
        [str(links / "claude"), "--print"], env=env, capture_output=True, input=b""
    )
    assert result.returncode == 0, result
    assert len(sandbox.runs()) == 1


def test_copied_shim_is_recognised_by_its_marker(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    copy = sandbox.root / "copy"
    copy.mkdir()
    (copy / "claude").write_bytes(sandbox.shim.read_bytes())
    (copy / "claude").chmod(0o755)
    env = sandbox.shim_env()
    env["PATH"] = f"{sandbox.shim.parent}:{copy}:{sandbox.fakebin}:/usr/bin:/bin"
    result = sandbox.claude("--print", env=env)
    assert result.returncode == 0, result
    assert len(sandbox.runs()) == 1


def test_shim_alone_is_command_not_found(sandbox: Sandbox) -> None:
    env = sandbox.shim_env()
    env["PATH"] = f"{sandbox.shim.parent}:/usr/bin:/bin"
    result = sandbox.claude("--print", env=env)
    assert result.returncode == 127
    assert result.stderr == b"claude-wrap: claude: command not found\n"
    assert result.stdout == b""


def test_usual_install_places_are_found_with_a_minimal_path(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    place = sandbox.home / ".local" / "bin"
    place.mkdir(parents=True)
    (place / "claude").symlink_to(sandbox.fake)
    env = sandbox.shim_env()
    env["PATH"] = f"{sandbox.shim.parent}"
    result = sandbox.claude("--print", env=env)
    assert result.returncode == 0, result
    assert len(sandbox.runs()) == 1


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["--version"], {}),
        (["-v"], {}),
        (["--help"], {}),
        (["-p", "-h"], {}),
        (["--bare", "-p"], {}),
        (["-p"], {"ANTHROPIC_API_KEY": "sk-ant-api03-test"}),
        (["-p"], {"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-env-token"}),
        (["-p"], {"CLAUDE_WRAP_DISABLE": "1"}),
        (["-p"], {"CLAUDE_WRAP_ACTIVE": "1"}),
    ],
)
def test_runs_that_cannot_use_the_stored_login_skip_the_preflight(
    sandbox: Sandbox, token_server: TokenServer, args: list[str], extra: dict[str, str]
) -> None:
    raw = sandbox.write(login_doc(scopes=None, expires_in_s=-10))
    sandbox.claude(*args, env=sandbox.shim_env(**extra))
    assert token_server.requests == []
    assert sandbox.creds.read_bytes() == raw
    assert not sandbox.log.exists()


def test_failed_repair_is_one_line_and_claude_runs_anyway(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(login_doc(scopes=None, expires_in_s=-60))
    token_server.script(invalid_grant())
    result = sandbox.claude("--print", input=b"hi")
    assert result.returncode == 1
    assert result.stdout == b"Not logged in \xc2\xb7 Please run /login\n"
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith("claude-wrap: the token endpoint rejected the stored refresh token")
    assert line.endswith("(running claude anyway)")
    assert sandbox.creds.read_bytes() == raw
    assert len(sandbox.runs()) == 1


def test_malformed_file_is_one_line_and_claude_runs_anyway(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    raw = sandbox.write(b'{"claudeAiOauth": {"accessToken": 5}}')
    result = sandbox.claude("--print")
    assert result.returncode == 1
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith(f"claude-wrap: {sandbox.creds}: accessToken is a number")
    assert sandbox.creds.read_bytes() == raw
    assert token_server.requests == []
    assert len(sandbox.runs()) == 1


def test_broken_real_claude_override_falls_back_to_path(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    env = sandbox.shim_env(CLAUDE_WRAP_REAL_CLAUDE=str(sandbox.root / "nope"))
    result = sandbox.claude("--print", env=env)
    assert result.returncode == 0
    (line,) = result.stderr.decode().splitlines()
    assert "CLAUDE_WRAP_REAL_CLAUDE" in line and "does not exist" in line
    # Pointing it at a shim is refused too: that would loop.
    env = sandbox.shim_env(CLAUDE_WRAP_REAL_CLAUDE=str(sandbox.shim))
    result = sandbox.claude("--print", env=env)
    assert result.returncode == 0
    assert b"is a claude-wrap shim" in result.stderr
    assert len(sandbox.runs()) == 2


def test_real_claude_override_is_used(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    elsewhere = sandbox.root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "claude-custom").symlink_to(sandbox.fake)
    env = sandbox.shim_env(CLAUDE_WRAP_REAL_CLAUDE=str(elsewhere / "claude-custom"))
    env["PATH"] = f"{sandbox.shim.parent}:/usr/bin:/bin"
    result = sandbox.claude("--print", env=env)
    assert result.returncode == 0, result
    assert sandbox.runs()[0]["cmdline"][1] == str(elsewhere / "claude-custom")


def test_run_command_behaves_like_the_shim(sandbox: Sandbox, token_server: TokenServer) -> None:
    sandbox.write(login_doc(scopes=None, expires_in_s=-60))
    result = subprocess.run(
        [sys.executable, "-m", "claude_wrap", "run", "--", "--print", "-x"],
        env=sandbox.env,
        cwd=REPO,
        input=b"abc",
        capture_output=True,
    )
    assert result.returncode == 0, result
    assert len(token_server.requests) == 1
    (run,) = sandbox.runs()
    assert run["argv"][1:] == ["--print", "-x"]
    assert run["active"] == "1"


def imported_modules(
    sandbox: Sandbox, env: dict[str, str], args: tuple[str, ...] = ("--print",)
) -> set[str]:
    first_line = sandbox.shim.read_text().splitlines()[0]
    python = first_line[2:].split()[0]
    result = subprocess.run(
        [python, "-IS", "-X", "importtime", str(sandbox.shim), *args],
        env=env,
        capture_output=True,
        input=b"",
        check=True,
    )
    names = set()
    for line in result.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_healthy_run_imports_no_heavy_module(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    env = sandbox.shim_env()
    heavy = {"httpx", "loguru", "psutil", "pexpect"}
    first = imported_modules(sandbox, env)  # judges the file and remembers the verdict
    assert not heavy & first
    second = imported_modules(sandbox, env)  # the remembered verdict: no JSON parsing at all
    assert not heavy & second
    assert "json" not in second
    assert "claude_wrap.shim" in second


# `os` and what only it brings: ~1.1 ms of CPU of every healthy run (fspath.py).
OS_AND_ITS_OWN = {"os", "posixpath", "genericpath", "_collections_abc"}


@pytest.mark.parametrize(
    ("setting", "args", "last"),
    [
        ({"CLAUDE_WRAP_WATCH": "0"}, ("--print",), "claude_wrap.watch.process"),
        ({}, ("--version",), "claude_wrap.watch.process"),
        ({"CLAUDE_WRAP_DISABLE": "1"}, ("--print",), "claude_wrap.watch.process"),
        ({"CLAUDE_WRAP_ACTIVE": "1"}, ("--print",), "claude_wrap.watch.process"),
        ({}, ("--print",), "claude_wrap.watch.relay"),  # watched: stdout is a pipe here
    ],
    ids=["unwatched", "version", "disabled", "nested", "watched"],
)
def test_a_healthy_run_never_imports_os(
    sandbox: Sandbox, setting: dict[str, str], args: tuple[str, ...], last: str
) -> None:
    sandbox.write(login_doc())
    env = sandbox.shim_env(**setting)
    imported_modules(sandbox, env, args)  # judges the file and remembers the verdict
    healthy = imported_modules(sandbox, env, args)
    # The yardstick: this run got as far as the exec, or the relay.
    assert last in healthy
    assert not OS_AND_ITS_OWN & healthy


@pytest.mark.parametrize("watch", ["0", "1"])
def test_claude_gets_the_environment_byte_for_byte(sandbox: Sandbox, watch: str) -> None:
    # The shim decodes its environment itself, not through os.environ: undecodable bytes, in a
    # name or a value, reach claude unchanged, exec'd or watched.
    sandbox.write(login_doc())
    dump = sandbox.root / "environ"
    real = sandbox.root / "real-claude"
    real.write_text(
        f"#!{sys.executable} -I\nimport os\n"
        "open(os.environb[b'DUMP'], 'wb').write(repr(sorted(os.environb.items())).encode())\n"
    )
    real.chmod(0o755)
    env = {
        k.encode(): v.encode()
        for k, v in sandbox.shim_env(CLAUDE_WRAP_WATCH=watch, DUMP=str(dump)).items()
    }
    env[b"CLAUDE_WRAP_REAL_CLAUDE"] = bytes(real)
    env[b"ODD\xff\xfe"] = b"caf\xe9 \xff\x80\x00"[:-1]  # Latin-1, stray bytes (no NUL: execve)
    env[b"PLAIN"] = "café ☕".encode()
    result = subprocess.run(
        [str(sandbox.shim), "--print"], env=env, input=b"", capture_output=True, timeout=60
    )
    assert result.returncode == 0, result
    assert dump.read_bytes() == repr(sorted({**env, b"CLAUDE_WRAP_ACTIVE": b"1"}.items())).encode()


def test_changed_file_is_judged_again(sandbox: Sandbox, token_server: TokenServer) -> None:
    sandbox.write(login_doc())
    assert sandbox.claude("-p").returncode == 0  # remembered as fine
    sandbox.write(login_doc(scopes=None))  # a third-party tool strips the scopes
    assert sandbox.claude("-p").returncode == 0
    assert token_server.requests == []  # the token is good: repaired locally (issue 14)
    assert "scopes" in sandbox.oauth()
    sandbox.write(login_doc(scopes=None, expires_in_s=-60))  # stripped and expired: a refresh
    assert sandbox.claude("-p").returncode == 0
    assert len(token_server.requests) == 1
    assert "scopes" in sandbox.oauth()


class TestInstall:
    def test_install_is_idempotent_and_prints_the_path_line(self, sandbox: Sandbox) -> None:
        folder = sandbox.root / "bin"
        first = sandbox.wrap("install", "--dir", str(folder))
        assert first.returncode == 0
        assert f'export PATH="{folder}:$PATH"' in first.stdout
        assert "alias claude=" in first.stdout
        content = (folder / "claude").read_bytes()
        again = sandbox.wrap("install", "--dir", str(folder))
        assert again.returncode == 0
        assert "already installed" in again.stdout
        assert (folder / "claude").read_bytes() == content
        assert os.access(folder / "claude", os.X_OK)

    def test_refuses_to_overwrite_a_foreign_file(self, sandbox: Sandbox) -> None:
        folder = sandbox.root / "bin"
        folder.mkdir()
        (folder / "claude").write_text("#!/bin/sh\necho real\n")
        result = sandbox.wrap("install", "--dir", str(folder))
        assert result.returncode != 0
        assert "not a claude-wrap shim" in result.stderr
        assert (folder / "claude").read_text() == "#!/bin/sh\necho real\n"
        result = sandbox.wrap("uninstall", "--dir", str(folder))
        assert result.returncode != 0
        assert (folder / "claude").exists()

    def test_uninstall_removes_only_its_shim(self, sandbox: Sandbox) -> None:
        folder = sandbox.root / "bin"
        assert sandbox.wrap("install", "--dir", str(folder)).returncode == 0
        result = sandbox.wrap("uninstall", "--dir", str(folder))
        assert result.returncode == 0
        assert not (folder / "claude").exists()
        assert "no shim" in sandbox.wrap("uninstall", "--dir", str(folder)).stdout

    def test_default_folder(self, sandbox: Sandbox) -> None:
        result = sandbox.wrap("install")
        assert result.returncode == 0
        shim = sandbox.home / ".local" / "share" / "claude-wrap" / "bin" / "claude"
        assert shim.exists()
        assert json.dumps(str(shim.parent))[1:-1] in result.stdout


def test_checkout_shim_runs(sandbox: Sandbox, token_server: TokenServer) -> None:
    sandbox.write(login_doc(scopes=None, expires_in_s=-60))
    env = {**sandbox.env, "PATH": f"{REPO / 'bin'}:{sandbox.env['PATH']}"}
    result = subprocess.run(
        [str(REPO / "bin" / "claude"), "--print"], env=env, input=b"x", capture_output=True
    )
    assert result.returncode == 0, result
    assert len(token_server.requests) == 1


# An audit hook in the shim's own interpreter: one line on stderr for each open of the guest
# file (claude, the child, is another interpreter: not seen).
AUDIT_GUEST_OPENS = r"""
import posix, sys
def hook(event, args):
    if event == "open" and str(args[0]).endswith("/claude-wrap/guest"):
        posix.write(2, b"opened the guest file\n")
sys.addaudithook(hook)
shim = sys.argv[1]
sys.argv = sys.argv[1:]
with open(shim) as f:
    code = f.read()
exec(compile(code, shim, "exec"))
"""


def shim_run_audited(sandbox: Sandbox, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    python = sandbox.shim.read_text().splitlines()[0][2:].split()[0]
    return subprocess.run(
        [python, "-IS", "-c", AUDIT_GUEST_OPENS, str(sandbox.shim), "--print", "hi"],
        env=env, capture_output=True, input=b"", timeout=60, check=False,
    )


@pytest.mark.parametrize("guest", [False, True], ids=["no-guest-file", "guest-file"])
def test_a_healthy_watched_run_never_opens_the_guest_file(sandbox: Sandbox, guest: bool) -> None:
    """The guest file is read once the verdict cache has missed; a healthy run learns its line
    from the cache (issue 27: it was opened on every watched run). A guest's session still rolls
    over: the rollover is imported."""
    sandbox.write(login_doc(refresh=None) if guest else login_doc())
    if guest:
        stored = sandbox.home / ".config" / "claude-wrap" / "guest"
        stored.parent.mkdir(parents=True)
        stored.write_text("ssh:owner\n")
    env = sandbox.shim_env()
    first = shim_run_audited(sandbox, env)  # judges the file, remembers the verdict
    assert first.returncode == 0, first.stderr
    healthy = shim_run_audited(sandbox, env)
    assert healthy.returncode == 0, healthy.stderr
    assert b"opened the guest file" in first.stderr  # the hook sees it (the cache missed)
    assert b"opened the guest file" not in healthy.stderr
    names = imported_modules(sandbox, env)
    assert ("claude_wrap.guests.rollover" in names) == guest

"""The shim as VS Code's `claudeCode.claudeProcessWrapper`: the extension runs
`<shim> <path of its bundled claude> ARGS`; the shim repairs the login, then runs that binary."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from claude_wrap_testing.tokenserver import TokenServer
from tests.conftest import FAKE_CLAUDE, Sandbox, login_doc


def launched(sandbox: Sandbox) -> list[str]:
    marker = sandbox.root / "launched"
    return marker.read_text().splitlines() if marker.exists() else []


def bundled(sandbox: Sandbox) -> Path:
    """A claude that is not on PATH, as inside an editor extension; it notes its own path in
    `launched` (the fake's record shows the script's path as argv[0], whoever ran it)."""
    folder = sandbox.root / "ext" / "resources" / "native-binary"
    folder.mkdir(parents=True)
    path = folder / "claude"
    path.write_text(
        f"#!{sys.executable}\nimport runpy\n"
        f"open({str(sandbox.root / 'launched')!r}, 'a').write(__file__ + '\\n')\n"
        f"runpy.run_path({str(FAKE_CLAUDE)!r}, run_name='__main__')\n"
    )
    path.chmod(0o755)
    return path


def test_the_first_argument_is_the_binary_to_run(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    sandbox.write(login_doc(scopes=None))  # logged out for Claude Code until repaired
    binary = bundled(sandbox)

    result = sandbox.claude(
        str(binary), "--print", "--output-format", "stream-json", "--verbose", "hi"
    )

    assert result.returncode == 0, result.stderr
    assert b'"is_error": false' in result.stdout
    assert launched(sandbox) == [str(binary)]  # the extension's binary, not the one on PATH
    (run,) = sandbox.runs()
    assert run["argv"][1:] == ["--print", "--output-format", "stream-json", "--verbose", "hi"]
    assert run["active"] == "1"
    assert token_server.requests == []  # a good token: repaired locally (issue 28)
    assert "user:inference" in sandbox.oauth()["scopes"]


def test_a_cli_js_runs_under_node(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    package = sandbox.root / "ext" / "node_modules" / "@anthropic-ai" / "claude-code"
    package.mkdir(parents=True)
    cli = package / "cli.js"
    shutil.copy(FAKE_CLAUDE, cli)
    node = sandbox.fakebin / "node"  # a stand-in node that runs the "script" it is given
    node.write_text(
        f"#!{sys.executable}\nimport runpy, sys\nsys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    node.chmod(0o755)

    result = sandbox.claude(str(cli), "--print", "hi")

    assert result.returncode == 0, result.stderr
    (run,) = sandbox.runs()
    assert run["argv"] == [str(cli), "--print", "hi"]  # node ran cli.js with the rest


@pytest.mark.parametrize("how", ["node", "path-of-node"])
def test_node_and_a_cli_js_run_that_cli_js(sandbox: Sandbox, how: str) -> None:
    # `<shim> node <cli.js> ARGS`: how a wrapper starts 2.1.81-2.1.87, which ship cli.js.
    sandbox.write(login_doc())
    package = sandbox.root / "ext" / "node_modules" / "@anthropic-ai" / "claude-code"
    package.mkdir(parents=True)
    cli = package / "cli.js"
    shutil.copy(FAKE_CLAUDE, cli)
    node = sandbox.fakebin / "node"
    node.write_text(
        f"#!{sys.executable}\nimport runpy, sys\nsys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    node.chmod(0o755)

    result = sandbox.claude("node" if how == "node" else str(node), str(cli), "--print", "hi")

    assert result.returncode == 0, result.stderr
    (run,) = sandbox.runs()
    assert run["argv"] == [str(cli), "--print", "hi"]


def test_the_shim_itself_as_first_argument_is_dropped(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    result = sandbox.claude(str(sandbox.shim), "--print", "hi")
    assert result.returncode == 0, result.stderr
    (run,) = sandbox.runs()
    assert run["argv"][1:] == ["--print", "hi"]


def test_other_paths_are_ordinary_arguments(sandbox: Sandbox) -> None:
    sandbox.write(login_doc())
    not_claude = sandbox.root / "notes" / "claude.md"
    not_claude.parent.mkdir()
    not_claude.write_text("x")
    missing = str(sandbox.root / "gone" / "claude")
    result = sandbox.claude("--print", str(not_claude))
    again = sandbox.claude(missing, "--print")
    assert (result.returncode, again.returncode) == (0, 0)
    first, second = sandbox.runs()
    assert first["argv"][1:] == ["--print", str(not_claude)]
    assert second["argv"][1:] == [missing, "--print"]
    assert launched(sandbox) == []


def test_an_editor_with_a_minimal_path_still_finds_claude_and_repairs(
    sandbox: Sandbox, token_server: TokenServer
) -> None:
    """JetBrains, Neovim and Emacs plugins run the shim by its full path, often with the desktop's
    bare PATH: the real claude is then found in the usual places (here ~/.local/bin)."""
    sandbox.write(login_doc(scopes=None))
    local_bin = sandbox.home / ".local" / "bin"
    local_bin.mkdir(parents=True)
    shutil.copy(sandbox.fake, local_bin / "claude")
    env = {**sandbox.env, "PATH": "/usr/bin:/bin"}

    result = sandbox.claude("--print", "hi", env=env)

    assert result.returncode == 0, result.stderr
    assert b"fake answer" in result.stdout
    assert token_server.requests == []  # a good token: repaired locally (issue 28)
    assert "user:inference" in sandbox.oauth()["scopes"]


def test_wrapper_mode_keeps_the_hot_path_light(sandbox: Sandbox) -> None:
    """A healthy run in wrapper mode imports nothing heavy: the check is a few string tests and
    two stats."""
    sandbox.write(login_doc())
    binary = bundled(sandbox)
    assert sandbox.claude(str(binary), "--print", "warm").returncode == 0  # fills the cache
    python = sandbox.shim.read_text().splitlines()[0][2:].split()[0]
    result = subprocess.run(
        [python, "-IS", "-X", "importtime", str(sandbox.shim), str(binary), "--print", "hi"],
        env=sandbox.shim_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=sandbox.root,
    )
    assert result.returncode == 0, result.stderr
    imported = {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "claude_wrap.shim" in imported
    heavy = {"httpx", "loguru", "psutil", "pexpect", "json", "subprocess", "typing", "pathlib"}
    assert not heavy & imported, sorted(heavy & imported)
    assert launched(sandbox) == [str(binary), str(binary)]

"""The claude-wrap shim in front of the real `claude`, as a user's shell would find it.

`Shim` is the shim written by `claude-wrap install` into a folder of its own; `Shim.env()` puts
that folder first on PATH and the real binary's folder right after it, points the shim's own
refresh at a test token server on loopback, and keeps the shim's state and log inside the test's
temp folder. `Shim.run()` and `Shim.spawn()` start the shim itself, never the real binary.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect

from .isolation import ClaudeBinary, ClaudeHome, Run

REPO = Path(__file__).resolve().parents[1]


def install_shim(folder: Path, python: str = sys.executable) -> Path:
    """`python -m claude_wrap install --dir folder`; returns the shim's path."""
    done = subprocess.run(
        [python, "-m", "claude_wrap", "install", "--dir", str(folder)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"claude-wrap install failed: {done.stderr.strip()}")
    return folder / "claude"


def start(
    home: ClaudeHome, argv: list[str], *, env: dict[str, str], input: bytes = b""
) -> subprocess.Popen[bytes]:
    """Starts `argv` in `home` without waiting; stdin is `input` from a file, so that many
    children can start at once and none waits for a writer."""
    stdin = home.tmp / f"stdin-{time.monotonic_ns()}"
    stdin.write_bytes(input)
    with stdin.open("rb") as source:
        return subprocess.Popen(
            argv, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd=home.cwd,
        )


@dataclass
class Shim:
    """The installed shim (`path`) and the real binary it must find after it on PATH."""

    path: Path
    real: ClaudeBinary

    def env(self, home: ClaudeHome, token_url: str, **overrides: str | None) -> dict[str, str]:
        """`home.env()` plus what the shim needs; an override of None removes a variable."""
        state = home.root / "state"
        extra: dict[str, str | None] = {
            "PATH": os.pathsep.join(
                (str(self.path.parent), str(self.real.path.parent), home.env()["PATH"])
            ),
            "XDG_STATE_HOME": str(state),
            "CLAUDE_WRAP_LOG_FILE": str(self.log_file(home)),
            "CLAUDE_WRAP_TOKEN_URL": token_url,
            "CLAUDE_WRAP_REFRESH_TIMEOUT": "20",
            "LANG": "C.UTF-8",
        }
        extra.update(overrides)
        return home.env(**extra)

    @staticmethod
    def log_file(home: ClaudeHome) -> Path:
        return home.root / "claude-wrap.log"

    def run(
        self,
        home: ClaudeHome,
        *args: str,
        env: dict[str, str],
        input: bytes = b"",
        timeout: float = 120,
    ) -> Run:
        """Runs `claude *args` through the shim in `home`; the time goes to the session report."""
        started = time.monotonic()
        done = subprocess.run(
            [str(self.path), *args], input=input, capture_output=True, env=env, cwd=home.cwd,
            timeout=timeout, check=False,
        )
        seconds = time.monotonic() - started
        self.real.note_time("(shim) " + " ".join(args), seconds)
        return Run(tuple(args), done.returncode, done.stdout, done.stderr, seconds)

    def popen(
        self, home: ClaudeHome, *args: str, env: dict[str, str], input: bytes = b""
    ) -> subprocess.Popen[bytes]:
        """Starts `claude *args` through the shim without waiting."""
        return start(home, [str(self.path), *args], env=env, input=input)

    def spawn(
        self, home: ClaudeHome, *args: str, env: dict[str, str],
        dimensions: tuple[int, int] = (40, 160),
    ) -> pexpect.spawn[bytes]:
        """Starts `claude *args` through the shim on a pty of its own (the outer terminal)."""
        return pexpect.spawn(
            str(self.path), list(args), env=env, cwd=str(home.cwd), dimensions=dimensions
        )


STRIP_ONCE = """#!{python}
# Stands in for the real claude (CLAUDE_WRAP_REAL_CLAUDE): on its first run only, it takes the
# scopes out of the credentials file, after the shim's pre-flight and before the real binary
# reads it; then, and on every later run, it execs the real binary.
import json, os, sys
marker = {marker!r}
# Not on `--version`: claude-wrap asks the real claude its version (binary.py) before it
# refreshes, which would spend the strip inside the pre-flight.
if not os.path.exists(marker) and sys.argv[1:] != ["--version"]:
    open(marker, "w").close()
    path = os.path.join(os.environ["CLAUDE_CONFIG_DIR"], ".credentials.json")
    with open(path) as f:
        data = json.load(f)
    del data["claudeAiOauth"]["scopes"]
    tmp = path + ".strip"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


def strip_scopes_once(folder: Path, real: Path) -> tuple[Path, Path]:
    """Writes the STRIP_ONCE stand-in into `folder`; returns (its path, its marker file)."""
    folder.mkdir(parents=True, exist_ok=True)
    script, marker = folder / "claude", folder / "stripped"
    script.write_text(
        STRIP_ONCE.format(python=sys.executable, marker=str(marker), real=str(real))
    )
    script.chmod(0o755)
    return script, marker

"""Fixtures of the reliability suite: a sandbox that runs everything with CLAUDE_WRAP_DEBUG=1 and
keeps what each process printed, a scan of those outputs and of every log for every token a test
used (run after each test, so a leak fails the test that caused it), and the figures
docs/reliability.md quotes, printed at the end of the run.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_wrap_testing.tokenserver import TokenServer
from tests.conftest import ACCESS, REFRESH, Sandbox, tally

# Figures of the last run, printed in the terminal summary (docs/reliability.md).
FIGURES: collections.Counter[str] = collections.Counter()
# The one line a user sees; the debug sink's lines carry a level and are left out.
DEBUG_LINE = re.compile(r"^claude-wrap: (TRACE|DEBUG|INFO|SUCCESS|WARNING|ERROR|CRITICAL): ")


def user_lines(stderr: str | bytes) -> list[str]:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    return [line for line in text.splitlines() if line and not DEBUG_LINE.match(line)]


class Watch:
    """What this test exposed: token servers, sandboxes, outputs, and extra secrets."""

    def __init__(self) -> None:
        self.servers: list[TokenServer] = []
        self.sandboxes: list[RSandbox] = []
        self.outputs: list[tuple[str, str]] = []
        self.secrets: set[str] = {ACCESS, REFRESH}

    def tokens(self) -> set[str]:
        found = set(self.secrets)
        for server in self.servers:
            for body in server.issued:
                for key in ("access_token", "refresh_token"):
                    if isinstance(body.get(key), str):
                        found.add(body[key])
            found.update(t for t in server.refresh_tokens_seen if t)
        return found

    def files(self) -> Iterator[Path]:
        """Every log file, and every file claude-wrap keeps for itself (state folder)."""
        for sandbox in self.sandboxes:
            for path in sandbox.root.rglob("*"):
                if not path.is_file() or path.is_symlink():
                    continue
                if ".log" in path.name or sandbox.state in path.parents:
                    yield path


WATCH: Watch | None = None


def watch() -> Watch:
    assert WATCH is not None, "only inside a reliability test"
    return WATCH


class RSandbox(Sandbox):
    """A Sandbox whose runs are all in debug mode and whose outputs are all kept for the scan."""

    def __init__(self, root: Path, tokens: TokenServer | str) -> None:
        super().__init__(root, tokens)
        self.env["CLAUDE_WRAP_DEBUG"] = "1"
        watch().sandboxes.append(self)

    def keep(self, what: str, text: str | bytes | None) -> None:
        if text:
            watch().outputs.append(
                (what, text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
            )

    def wrap(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        result = super().wrap(*args, **kw)
        self.keep(f"claude-wrap {' '.join(args)} stderr", result.stderr)
        self.keep(f"claude-wrap {' '.join(args)} stdout", result.stdout)
        return result

    def claude(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        result = super().claude(*args, **kw)
        self.keep(f"claude {' '.join(args)} stderr", result.stderr)
        return result


@pytest.fixture(autouse=True)
def secrets_scan() -> Iterator[Watch]:
    """After each test: no token it used appears in any output it captured or any log file."""
    global WATCH  # noqa: PLW0603 - one test at a time
    WATCH = Watch()
    try:
        yield WATCH
        tokens = WATCH.tokens()
        hits = []
        scanned = 0
        for what, text in WATCH.outputs:
            scanned += 1
            hits += [f"{what}: {t[:14]}…" for t in tokens if t in text]
        for path in WATCH.files():
            scanned += 1
            data = path.read_bytes()
            hits += [f"{path}: {t[:14]}…" for t in tokens if t.encode() in data]
        FIGURES["secrets: outputs and files scanned"] += scanned
        FIGURES["secrets: tokens looked for, summed over tests"] += len(tokens)
        FIGURES["secrets: hits"] += len(hits)
        FIGURES["token requests seen by the servers"] += count_requests(*WATCH.servers)
        assert not hits, f"tokens leaked: {hits}"
    finally:
        WATCH = None


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    with TokenServer() as server:
        server.register(ACCESS, REFRESH)
        watch().servers.append(server)
        yield server
        tally(server)


@pytest.fixture
def sandbox(tmp_path: Path, token_server: TokenServer) -> RSandbox:
    return RSandbox(tmp_path, token_server)


def count_requests(*servers: TokenServer) -> int:
    return sum(len(s.requests) for s in servers)


def privileged_or_fail(what: str) -> None:
    """Tests that mount or drop capabilities need root; fail loudly unless told to skip."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CLAUDE_WRAP_TEST_SKIP_PRIVILEGED") == "1":
        pytest.skip(f"{what} needs root; CLAUDE_WRAP_TEST_SKIP_PRIVILEGED=1 asked to skip")
    pytest.fail(
        f"{what} needs root (mount, capabilities); run as root, or set "
        "CLAUDE_WRAP_TEST_SKIP_PRIVILEGED=1 to skip it knowingly"
    )


def netns_prefix() -> list[str]:
    """argv prefix running a command in a network namespace with no interface up, so that not
    even a DNS query can leave the machine (root: unshare --net; others: a user namespace)."""
    for prefix in (["unshare", "--net", "--"], ["unshare", "--map-root-user", "--net", "--"]):
        probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return prefix
    pytest.fail(
        "this case runs in a network namespace (`unshare --net`) so that nothing it does can "
        f"leave the machine, and unshare failed: {probe.stderr.decode().strip()}"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for key in sorted(FIGURES):
        terminalreporter.write_line(f"{key}: {FIGURES[key]}")

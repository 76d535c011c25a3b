"""`claude-wrap exec` with the real Claude Code on the faithful service (issue 26, item 3): a
command that runs the real `claude --print` three times, the owner's login rotating twice in
between (each rotation revokes the previous access token, and the fake API refuses a revoked
one), answers every time. Runs once per version of the matrix.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_wrap_testing.fakeapi import FakeAnthropicAPI
from claude_wrap_testing.isolation import ClaudeBinary, ClaudeHome, TokenPair
from claude_wrap_testing.tokenserver import TokenFamilies, TokenServer

REPO = Path(__file__).resolve().parents[2]
RUNS = 3

# Each run of the real binary, then a marker, then a wait for the test's go.
SCRIPT = """
n=1
while [ $n -le {runs} ]; do
  "$REAL_CLAUDE" --print ping > out$n 2> err$n; echo $? > rc$n
  : > ready$n
  while [ ! -e go$n ]; do sleep 0.05; done
  n=$((n + 1))
done
"""


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def test_an_execd_command_answers_across_two_rotations(
    claude: ClaudeBinary,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
) -> None:
    families = TokenFamilies(tag="exec")
    token_server.default = families
    fake_api.check_token = families.access_problem
    fake_api.answer = "pong"
    login = families.login()
    claude_home.write_credentials(
        TokenPair(login["accessToken"], login["refreshToken"]), expires_at=login["expiresAt"]
    )
    work = claude_home.root / "work"
    work.mkdir()
    (work / "cmd.sh").write_text(SCRIPT.format(runs=RUNS))
    env = claude_home.env(
        XDG_STATE_HOME=str(claude_home.root / "state"),
        CLAUDE_WRAP_LOG_FILE=str(claude_home.root / "claude-wrap.log"),
        CLAUDE_WRAP_TOKEN_URL=token_server.url,
        REAL_CLAUDE=str(claude.path),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_wrap", "exec", "--", "sh", str(work / "cmd.sh")],
        env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    parent = claude_home.tmp / "claude-wrap-0"
    latencies: list[float] = []
    try:
        for n in range(1, RUNS + 1):
            wait_for((work / f"ready{n}").exists, f"run {n}", timeout=240)
            [private] = [p for p in parent.glob("exec-*") if not p.name.endswith(".lock")]
            # Claude Code wrote its global config through the mirror's link, not over it.
            assert (private / ".claude.json").is_symlink()
            if n < RUNS:
                done = subprocess.run(
                    [sys.executable, "-m", "claude_wrap", "refresh", "--force"],
                    env=env, capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
                new = json.loads(claude_home.credentials_path.read_text())
                token = new["claudeAiOauth"]["accessToken"]

                def handed(path: Path = private, want: str = token) -> bool:
                    doc = json.loads((path / ".credentials.json").read_text())
                    return bool(doc["claudeAiOauth"]["accessToken"] == want)

                latencies.append(wait_for(handed, "the new token in the private folder", 10))
            (work / f"go{n}").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    print(f"{claude.version}: hand-on after a rotation took {[f'{s:.3f}' for s in latencies]} s")
    assert proc.returncode == 0, (out, err)
    for n in range(1, RUNS + 1):
        rc = (work / f"rc{n}").read_text().strip()
        answer = (work / f"out{n}").read_text()
        assert (rc, "pong" in answer) == ("0", True), (n, answer, (work / f"err{n}").read_text())
    assert len(set(fake_api.tokens_used())) == RUNS  # each run on the token of its time
    assert families.rejected_access == 0  # not one request met a revoked token
    assert families.refreshes == RUNS - 1  # the owner's rotations, nothing else
    assert families.invalid_grants == 0
    wait_for(lambda: not any(parent.iterdir()), "the private folder's removal", 10)
    assert not (claude_home.config_dir / ".claude.json").is_symlink()


def test_a_command_that_chooses_its_own_config_folder_still_gets_the_token(
    claude: ClaudeBinary,
    claude_home: ClaudeHome,
    fake_api: FakeAnthropicAPI,
    token_server: TokenServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`exec -- env HOME=… CLAUDE_CONFIG_DIR=… claude --print` (another HOME, as a sandboxed
    or containerised command has): 2.1.197 and later read CLAUDE_SECURESTORAGE_CONFIG_DIR, so
    the credentials still come from the private folder, rotated between two runs; the
    command's own folder never holds a login."""
    if claude.version == "2.1.87":
        pytest.skip("2.1.87 does not read CLAUDE_SECURESTORAGE_CONFIG_DIR (docs/guests.md)")
    families = TokenFamilies(tag="own-cfg")
    token_server.default = families
    fake_api.check_token = families.access_problem
    fake_api.answer = "pong"
    owner = ClaudeHome(tmp_path_factory.mktemp("owner"), fake_api.url)
    login = families.login()
    owner.write_credentials(
        TokenPair(login["accessToken"], login["refreshToken"]), expires_at=login["expiresAt"]
    )
    env = owner.env(
        XDG_STATE_HOME=str(owner.root / "state"),
        CLAUDE_WRAP_LOG_FILE=str(owner.root / "claude-wrap.log"),
        CLAUDE_WRAP_TOKEN_URL=token_server.url,
    )
    mine = claude_home.env()
    switch = [f"{k}={mine[k]}" for k in ("HOME", "CLAUDE_CONFIG_DIR", "TMPDIR")]
    argv = [sys.executable, "-m", "claude_wrap", "exec", "--", "env", *switch,
            str(claude.path), "--print", "ping"]  # fmt: skip
    for n in range(2):
        done = subprocess.run(
            argv, env=env, cwd=claude_home.cwd, capture_output=True, timeout=120, check=False
        )
        assert done.returncode == 0, (n, done.stdout, done.stderr)
        assert b"pong" in done.stdout
        assert fake_api.tokens_used()[-1] == owner.read_credentials()["claudeAiOauth"][
            "accessToken"
        ]
        rotated = subprocess.run(
            [sys.executable, "-m", "claude_wrap", "refresh", "--force"],
            env=env, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert rotated.returncode == 0, rotated.stderr
    assert not claude_home.credentials_path.exists()
    assert families.rejected_access == 0

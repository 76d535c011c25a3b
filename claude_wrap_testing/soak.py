"""The soak (issue 9): a compressed stretch of real use, everything at once, against one login.

Run by `bench/soak` (any length) and `tests/e2e/test_soak.py` (short, in CI). Everything here is
real: the pinned `claude` binary, the installed shim, `claude-wrap keep`, a hostile refresher
process, and loopback servers (token endpoint with single-use refresh tokens and family
revocation, a Messages API that answers 401 to an expired or revoked token, and the CONNECT proxy
that brings the real binary's own refresh to that token endpoint). The caller must already be in
a loopback-only network namespace.

Compressing time. The real binary refreshes when `now + 300 s >= expiresAt` and that 5-minute
buffer cannot be changed, so the token endpoint grants `expires_in = ttl` slightly above 300 s
(default 310): every client then sees a token as due for refresh `ttl - 300` s (10 s) after it
was issued. That is the compressed token lifetime. The Messages endpoint honours an access token
for that lifetime plus `grace` (5 s), not for the 310 s promised, so that a token kept past its
compressed life does get its 401, as it would in real use. The shim and the keeper refresh
`window` s before `expiresAt`: their 10-minute default against the real 8-hour tokens, compressed
the same way (`300 + WINDOW_SHARE * lifetime`: 300 s plus the 1.05 % of a lifetime that the
default's 300 s beyond Claude Code's buffer are of the 28 500 s beyond it), so they act a little
before Claude Code would, as they do in real use. Until the fifth session the window was
`300 + 0.3 * lifetime`: claude-wrap refreshed at 70 % of each lifetime, at least 1.43 times per
lifetime where nobody else refreshed, which no real default does and which issue 14's goal (at
most 1.2 per lifetime) could not tell from needless spending.

What runs, each at random intervals (seeded): `claude --print` through the shim (`concurrency`
workers), the real `claude --print` directly (as editors' bundled binaries run it),
`claude-wrap keep`, interactive TUI sessions through the shim sending a prompt now and then, the
hostile refresher (hostile.py), a reader polling the file, and "the user": when the
login has been revoked, they log in again after `relogin_delay` seconds (a forced re-login).

Guests (issue 26): two more machines borrow the login over a real sshd on 127.0.0.1 (sshd.py,
docs/guests.md's authorized_keys line and forced command `claude-wrap token --json`, run as the
owner): one runs TUI sessions through its shim, the other `claude --print` through its shim,
each with its own keeper (`keep --watch`), its own HOME and claude-wrap state, and a token URL
of its own that must never be asked (a guest never refreshes). The token service revokes the
previous access token at each rotation (TokenFamilies, as the real one does), so a guest still
holding it is refused at once: the soak counts what the guests' users would see.

A TUI prompt is judged by what a terminal shows (issue 26): the session's output goes through a
terminal emulator (pyte, `Terminal`), and the prompt is answered when `soak-pong-N` is on the
screen. Judged by the raw bytes, as before, prompts went "unanswered" that were answered at once:
once the conversation fills the window and no spinner frame is drawn, Claude Code redraws only
the cells that changed, so `soak-pong-12` after `soak-pong-11` arrives as a cursor move and a
`2`. The fake API's log (which prompts it answered, when) tells an answer lost from one never
asked for; both are reported.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pexpect
import pyte

from claude_wrap.config.settings import DEFAULT_REFRESH_WINDOW_S
from claude_wrap.judging import login as judge_login

from .fakeapi import ApiRequest, FakeAnthropicAPI
from .isolation import MCP_OAUTH, TUI_READY, ClaudeHome
from .sshd import Sshd
from .tlsproxy import OAuthProxy, mint_throwaway_ca
from .tokenserver import RELAYED_AGENT, TokenFamilies, TokenServer

CLAUDE_BUFFER_S = 300.0  # the real binary refreshes this long before expiresAt
# claude-wrap's default window against a real 8-hour token, past Claude Code's own buffer:
# (600 - 300) / (28800 - 300) of a lifetime.
WINDOW_SHARE = (DEFAULT_REFRESH_WINDOW_S - CLAUDE_BUFFER_S) / (8 * 3600.0 - CLAUDE_BUFFER_S)
REPO = Path(__file__).resolve().parents[1]
HOSTILE_AGENT = "soak-hostile/"

LOGIN_ERRORS = (
    "Not logged in", "/login", "Failed to authenticate", "OAuth token", "API Error: 401"
)
# On the screen, as a user reads it. 2.1.332: "Not logged in · run /login", "Failed to
# authenticate: OAuth session expired ...", "OAuth refresh token is no longer valid; run /login"
# (docs/protocol.md section 9); 2.1.337: "OAuth token revoked · Please run /login" (section 10).
TUI_LOGIN_ERROR = re.compile(r"[Rr]un /login|API Error|OAuth (?:token|session|refresh)")
PING = re.compile(r"soak-ping-(\d+)")
PROMPT_TIMEOUT_S = 45.0
TUI_ROWS, TUI_COLUMNS = 40, 160
RAW_KEPT = 4 << 20  # bytes of one prompt's raw output kept, to tell what a byte search would see
GUEST_PREFIX = "guest-"
PUSH_COMMAND = "token --json --for-guest"
GUEST_MARGIN_S = 300.0  # guests/guest.py MARGIN_S: what a guest asks beyond its window
# What `keep --watch` says on stdout, each an event counted: (name, words of its line).
KEEPER_EVENTS = (
    ("repaired without a refresh", ": repaired without a refresh"),
    ("refreshed", ": refreshed"),
    ("another process", ": another process"),
    ("pushed", ": new access token pushed by the owner"),  # a guest's, guests/push.py
    ("pushed, already held", "pushed the token already held"),
)
GUEST_KINDS = ("guest-print", "guest-interactive", "guest-session", "guest-keeper")


def compressed(real_s: float, lifetime: float) -> float:
    """A real setting of seconds before expiry (>= Claude Code's 300 s buffer), compressed as the
    soak compresses the refresh window: 300 s plus the same share of a lifetime that the real
    value's excess is of an 8-hour token's 28 500 s beyond the buffer."""
    return CLAUDE_BUFFER_S + (real_s - CLAUDE_BUFFER_S) / (8 * 3600.0 - CLAUDE_BUFFER_S) * lifetime


class _AnsweringScreen(pyte.Screen):
    """A pyte screen that answers the program's terminal queries (device attributes, cursor
    position) as a terminal would, instead of dropping them."""

    def __init__(self, columns: int, lines: int, answer: Callable[[str], object] | None) -> None:
        super().__init__(columns, lines)
        self._answer = answer

    def write_process_input(self, data: str) -> None:
        if self._answer is not None:
            self._answer(data)


class Terminal:
    """What a terminal of the session's size shows: the TUI's output, fed to a VT100 emulator
    (pyte) as pexpect reads it (`write`/`flush` make it a pexpect `logfile_read`). Also keeps the
    raw bytes since `mark()`, to count the prompts that a search of the bytes would have missed."""

    def __init__(self, rows: int = TUI_ROWS, columns: int = TUI_COLUMNS,
                 answer: Callable[[str], object] | None = None) -> None:
        self.screen = _AnsweringScreen(columns, rows, answer)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()

    def write(self, data: bytes) -> None:
        self.stream.feed(data)
        if len(self.raw) < RAW_KEPT:
            self.raw += data

    def flush(self) -> None:
        """pexpect flushes its log after each write: nothing to do."""

    def mark(self) -> None:
        self.raw.clear()

    def lines(self) -> list[str]:
        return list(self.screen.display)

    def shows(self, pattern: re.Pattern[str]) -> bool:
        return any(pattern.search(line) for line in self.screen.display)

    def below(self, text: str) -> list[str]:
        """The rows from the last one showing `text` down (all rows when none shows it)."""
        rows = self.lines()
        found = [i for i, line in enumerate(rows) if text in line]
        return rows[found[-1]:] if found else rows


@dataclass
class Config:
    seconds: float = 90.0
    concurrency: int = 3  # parallel `claude --print` workers through the shim
    direct: int = 1  # workers running the real binary directly
    interactive: int = 1  # TUI sessions through the shim, one after another per worker
    keeper: bool = True
    hostile: bool = True
    seed: int = 1
    ttl: float = 310.0
    grace: float = 5.0
    relogin_delay: float = 2.0
    print_gap: float = 2.0  # mean pause between two runs of one --print worker
    prompt_gap: float = 5.0  # mean pause between two prompts of a TUI session
    session_prompts: tuple[int, int] = (3, 8)  # prompts per TUI session, at least and at most
    hostile_gap: float = 0.0  # mean pause between hostile refreshes; 0: 3 lifetimes
    keeper_gap: float = 0.0  # mean pause between keeper runs; 0: half a lifetime
    # timer: `claude-wrap keep` run now and then, as the keeper timer does; watch: one
    # `claude-wrap keep --watch` for the whole soak, as the keeper service runs (issue 14).
    keeper_mode: str = "timer"
    # Guests over the real sshd (issue 26): one machine running TUI sessions, one running
    # `claude --print`, each through its own shim and with its own `keep --watch`.
    guest_tui: bool = True
    guest_print: bool = True
    guest_print_gap: float = 2.0  # mean pause between two runs of the guest's --print worker
    # The forced command's --min-valid: docs/guests.md's 1200 s, compressed (`compressed`).
    guest_min_valid_real: float = 1200.0

    @property
    def lifetime(self) -> float:
        return self.ttl - CLAUDE_BUFFER_S

    @property
    def window(self) -> float:
        return CLAUDE_BUFFER_S + WINDOW_SHARE * self.lifetime

    @property
    def guests(self) -> bool:
        return self.guest_tui or self.guest_print

    @property
    def guest_min_valid(self) -> float:
        return compressed(self.guest_min_valid_real, self.lifetime)


@dataclass
class Machine:
    """Where runs happen: the owner (holds the login) or a guest (borrows it over ssh). Its runs'
    kinds start with `prefix` ("" on the owner, "guest-" on a guest)."""

    name: str
    home: ClaudeHome
    env: dict[str, str]
    prefix: str = ""

    def kind(self, what: str) -> str:
        return f"{self.prefix}{what}"


@dataclass
class Watching:
    """One `claude-wrap keep --watch` for the whole soak, and the error lines it said, each with
    its time."""

    kind: str
    proc: subprocess.Popen[bytes]
    reader: threading.Thread
    errors: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class RunRecord:
    # shim | direct | keeper | interactive (one prompt) | session (one TUI session); on a guest
    # guest-print | guest-keeper | guest-interactive | guest-session
    kind: str
    started: float
    seconds: float
    outcome: str  # ok | login_error | other
    detail: str = ""
    dead: bool = False  # overlapped a moment when the login was revoked and not yet re-made


@dataclass
class Relogin:
    revoked_at: float
    relogin_at: float
    revoked_by: str


@dataclass
class FileWatch:
    reads: int = 0
    unparseable: list[tuple[float, str]] = field(default_factory=list)
    stretches: list[tuple[float, float, str]] = field(default_factory=list)  # start, length, why
    first_seen: dict[str, float] = field(default_factory=dict)  # access token: when first read


def _agent_kind(agent: str) -> str:
    # claude-wrap sends the real binary's User-Agent (binary.py): the real binary's requests are
    # the ones relayed by the proxy, marked by TokenFamilies.
    if agent.startswith(HOSTILE_AGENT):
        return "hostile"
    if agent.startswith(RELAYED_AGENT):
        return "claude"
    return "claude-wrap"


def classify_print(returncode: int, out: str, n: int) -> tuple[str, str]:
    if returncode == 0 and f"soak-pong-{n}" in out:
        return "ok", ""
    first = out.strip().splitlines()[0][:160] if out.strip() else f"exit {returncode}"
    if any(marker in out for marker in LOGIN_ERRORS):
        return "login_error", first
    return "other", first


class Soak:
    """One soak. `run()` blocks for `config.seconds` plus the time in-flight runs need to end."""

    def __init__(self, config: Config, claude: Path, root: Path) -> None:
        self.config = config
        self.claude = claude
        self.root = root
        self.records: list[RunRecord] = []
        self.relogins: list[Relogin] = []
        self.watch = FileWatch()
        self.guest_watch: dict[str, FileWatch] = {}
        self.hostile_actions: Counter[str] = Counter()
        self.hostile_writes: list[float] = []  # when each of its rewrites was complete
        self.api_401: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._n = itertools.count(1)
        self._dead_since: float | None = None
        self.families = TokenFamilies(
            access_ttl_s=config.ttl, tag="soak", access_valid_s=config.lifetime + config.grace
        )
        self.family = 0
        self.started = 0.0
        self.ended = 0.0
        self.keeper_events: dict[str, int] = {}
        self.guest_keeper_events: dict[str, dict[str, int]] = {}
        self.guests: list[Machine] = []
        self.guest_token_requests = 0
        self.guest_files_with_refresh_token: list[str] = []
        # How TUI prompts were read, per kind: answered on the screen; of those, never drawn as
        # one string in the bytes (what the old byte search missed); the longest wait from the
        # fake API's answer to the screen showing it.
        self.tui_reading: dict[str, Counter[str]] = {}
        self.api_to_screen_s: dict[str, float] = {}
        self.api_answers: dict[int, float] = {}  # ping number: when the fake API answered it

    # --- the world ----------------------------------------------------------------------------

    def _env(self, api: FakeAnthropicAPI, proxy: OAuthProxy, server: TokenServer) -> None:
        self.home = ClaudeHome(self.root / "world", api.url)
        state = self.root / "state"
        self.shim_env = self.home.env(
            **proxy.env(),
            CLAUDE_WRAP_TOKEN_URL=server.url,
            CLAUDE_WRAP_REFRESH_WINDOW=f"{self.config.window:g}",
            CLAUDE_WRAP_REAL_CLAUDE=str(self.claude),
            XDG_STATE_HOME=str(state),
            CLAUDE_WRAP_LOG_FILE=str(self.root / "claude-wrap.log"),
        )
        self.direct_env = self.home.env(**proxy.env())
        bin_dir = self.root / "bin"
        subprocess.run(
            [sys.executable, "-m", "claude_wrap", "install", "--dir", str(bin_dir)],
            check=True, capture_output=True, cwd=REPO, env={**os.environ, "HOME": str(self.home)},
        )
        self.shim = bin_dir / "claude"
        self.owner = Machine("owner", self.home, self.shim_env)

    def _owner_command(self) -> str:
        """The forced command of the guests' key (docs/guests.md), run as the owner, in the
        owner's world, with the soak's compressed window: `token --json --for-guest` where this
        claude-wrap pushes (guests/push.py: it reads what the guest asked from sshd's
        SSH_ORIGINAL_COMMAND, so `env` keeps sshd's environment; soakowner.py compresses the
        guest's --min-valid first), else the one-shot `token --json --min-valid S` of before,
        S docs/guests.md's 1200 s compressed."""
        keep = ("HOME", "PATH", "USER", "TMPDIR", "CLAUDE_CONFIG_DIR", "XDG_STATE_HOME",
                "CLAUDE_WRAP_LOG_FILE", "CLAUDE_WRAP_TOKEN_URL", "CLAUDE_WRAP_REFRESH_WINDOW")
        env = " ".join(f"{k}={shlex.quote(self.shim_env[k])}" for k in keep if k in self.shim_env)
        if owner_pushes():
            lifetime = self.config.lifetime
            margin = compressed(CLAUDE_BUFFER_S + GUEST_MARGIN_S, lifetime) - CLAUDE_BUFFER_S
            return (f"env {env} PYTHONPATH={shlex.quote(str(REPO))} {sys.executable} "
                    f"-m claude_wrap_testing.soakowner {margin:.4f}")
        return (f"env -i {env} {sys.executable} -m claude_wrap token --json "
                f"--min-valid {self.config.guest_min_valid:.3f}")

    def _guest(self, name: str, api: FakeAnthropicAPI, proxy: OAuthProxy, sshd: Sshd,
               guest_tokens: TokenServer) -> Machine:
        """A guest machine: its own HOME, state and log; the owner over ssh; a token URL of its
        own that a guest must never ask (it never refreshes). The real claude's own refresh
        goes through the proxy as on the owner, so a refresh it tried would be seen."""
        root = self.root / name
        home = ClaudeHome(root / "world", api.url)
        env = home.env(
            **proxy.env(),
            CLAUDE_WRAP_GUEST="ssh:owner",
            CLAUDE_WRAP_GUEST_SSH=sshd.ssh_command,
            CLAUDE_WRAP_GUEST_TIMEOUT="60",
            # The session's rollover thread looks this often (30 s against 8-hour tokens, but
            # the soak's tokens live seconds).
            CLAUDE_WRAP_GUEST_PERIOD="1",
            CLAUDE_WRAP_TOKEN_URL=guest_tokens.url,
            CLAUDE_WRAP_REFRESH_WINDOW=f"{self.config.window:g}",
            CLAUDE_WRAP_REAL_CLAUDE=str(self.claude),
            XDG_STATE_HOME=str(root / "state"),
            CLAUDE_WRAP_LOG_FILE=str(root / "claude-wrap.log"),
        )
        # The first pull, as `claude-wrap guest --ssh owner` makes it when a guest is set up.
        done = subprocess.run(
            [sys.executable, "-m", "claude_wrap", "keep"], capture_output=True, env=env,
            cwd=REPO, timeout=120, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"guest {name}: the first pull failed: "
                               f"{done.stderr.decode(errors='replace').strip()}")
        return Machine(name, home, env, GUEST_PREFIX)

    def _login(self) -> None:
        """What `claude /login` leaves: a whole login, written atomically."""
        oauth = self.families.login()
        fam = self.families.family(oauth["refreshToken"])
        assert fam is not None
        self.family = fam
        data = {"claudeAiOauth": oauth, "mcpOAuth": MCP_OAUTH}
        path = self.home.credentials_path
        tmp = path.with_name(f".credentials.json.tmp.login{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)

    def _reply(self, request: ApiRequest) -> str:
        # The newest prompt is the last ping in the conversation the request carries.
        found = PING.findall(request.body.decode(errors="replace"))
        if not found:
            return "soak-answer"
        with self._lock:
            self.api_answers.setdefault(int(found[-1]), time.time())
        return f"soak-pong-{found[-1]}"

    def _check_token(self, token: str) -> str | None:
        problem = self.families.access_problem(token)
        if problem is not None:
            with self._lock:
                self.api_401[problem] += 1
        return problem

    # --- workers ------------------------------------------------------------------------------

    def _record(self, record: RunRecord) -> None:
        with self._lock:
            self.records.append(record)

    def _pause(self, rng: random.Random, mean: float) -> bool:
        """Sleeps a random while (uniform, `mean` on average); False when the soak is over."""
        return not self._stop.wait(rng.uniform(0.1 * mean, 1.9 * mean))

    def _print_worker(self, kind: str, rng: random.Random, machine: Machine | None = None) -> None:
        """`claude --print` now and then: through the owner's shim (shim), the real binary
        directly (direct), or through a guest's shim (guest-print, `machine` the guest)."""
        machine = machine or self.owner
        program = self.claude if kind == "direct" else self.shim
        env = self.direct_env if kind == "direct" else machine.env
        gap = {"direct": 2 * self.config.print_gap,
               "guest-print": self.config.guest_print_gap}.get(kind, self.config.print_gap)
        while self._pause(rng, gap):
            n = next(self._n)
            started = time.time()
            try:
                done = subprocess.run(
                    [str(program), "--print"], input=f"soak-ping-{n}\n".encode(),
                    capture_output=True, env=env, cwd=machine.home.cwd, timeout=180,
                    check=False,
                )
                outcome, detail = classify_print(
                    done.returncode, done.stdout.decode(errors="replace"), n
                )
                err = done.stderr.decode(errors="replace").strip()
                if err:
                    detail = f"{detail} [stderr: {err.splitlines()[0][:160]}]"
            except subprocess.TimeoutExpired:
                outcome, detail = "other", "timed out after 180 s"
            self._record(RunRecord(kind, started, time.time() - started, outcome, detail))

    def _keeper_worker(self, rng: random.Random) -> None:
        gap = self.config.keeper_gap or self.config.lifetime / 2
        while self._pause(rng, gap):
            started = time.time()
            done = subprocess.run(
                [sys.executable, "-m", "claude_wrap", "keep"], capture_output=True,
                env=self.shim_env, cwd=REPO, timeout=120, check=False,
            )
            err = done.stderr.decode(errors="replace").strip()
            if done.returncode == 0:
                outcome, detail = "ok", ""
            elif done.returncode in (3, 4):  # credentials unusable / refresh token rejected
                outcome, detail = "login_error", err[:200]
            else:
                outcome, detail = "other", f"exit {done.returncode}: {err[:200]}"
            self._record(RunRecord("keeper", started, time.time() - started, outcome, detail))

    def _watching_keeper(self, machine: Machine) -> Watching:
        """`claude-wrap keep --watch` for the whole soak: its events are counted from its output
        when it ends (keeper_events); its error lines as they come, each at its own time, so that
        one said while the login was revoked is judged as such (it cannot repair a revoked
        login, nor should it)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "claude_wrap", "keep", "--watch"],
            env=machine.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        errors: list[tuple[float, str]] = []

        def read_errors() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                line = raw.decode(errors="replace").rstrip("\n")
                if line.startswith("claude-wrap: "):
                    errors.append((time.time(), line))

        reader = threading.Thread(target=read_errors, daemon=True)
        reader.start()
        return Watching(machine.kind("keeper"), proc, reader, errors)

    def _collect_watching_keeper(self, watching: Watching) -> dict[str, int]:
        proc = watching.proc
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        watching.reader.join(timeout=10)
        events: Counter[str] = Counter()
        for line in out.decode(errors="replace").splitlines():
            for what, said in KEEPER_EVENTS:
                if said in line:
                    events[what] += 1
                    break
        errors = list(watching.errors)
        for when, line in errors:
            self._record(RunRecord(watching.kind, when, 0.0, "login_error", line[:200]))
        # The service itself, as one run: it ran the whole soak and ended when told to.
        self._record(RunRecord(
            watching.kind, self.started, self.ended - self.started,
            "ok" if proc.returncode == 0 else "other", f"keep --watch exit {proc.returncode}",
        ))
        return {**events, "errors": len(errors), "exit": proc.returncode}

    def _interactive_worker(self, rng: random.Random, machine: Machine | None = None) -> None:
        machine = machine or self.owner
        while not self._stop.is_set():
            child: pexpect.spawn[bytes] = pexpect.spawn(
                str(self.shim), [], env=machine.env, cwd=str(machine.home.cwd),
                dimensions=(TUI_ROWS, TUI_COLUMNS),
            )
            # Everything pexpect reads goes to the terminal emulator too, which answers the
            # TUI's queries as a terminal would.
            term = Terminal(answer=child.send)
            child.logfile_read = term
            try:
                self._session(child, term, rng, machine)
            except (pexpect.ExceptionPexpect, OSError) as exc:
                self._record(RunRecord(machine.kind("interactive"), time.time(), 0.0, "other",
                                       f"session ended: {type(exc).__name__}"))
            finally:
                _close(child)

    def _session(self, child: pexpect.spawn[bytes], term: Terminal, rng: random.Random,
                 machine: Machine) -> None:
        started = time.time()
        if child.expect([TUI_READY, pexpect.TIMEOUT], timeout=90) != 0:
            self._record(RunRecord(machine.kind("interactive"), started, time.time() - started,
                                   "other", "the TUI did not start"))
            return
        # The TUI queries the terminal right after drawing; keys typed then can be lost.
        if self._wait_reading(child, 3):
            return
        last = ""
        try:
            for _ in range(rng.randint(*self.config.session_prompts)):
                if self._wait_reading(child, rng.uniform(0.1, 1.9) * self.config.prompt_gap):
                    return
                last = self._prompt(child, term, machine)
                if last == "login_error":
                    # As a user would: send another prompt a moment later. A session that
                    # answers it was repaired in place; one that does not stays logged out.
                    self._wait_reading(child, 2, stoppable=False)
                    last = self._prompt(child, term, machine, "again after a login error")
        finally:
            if last:
                self._record(RunRecord(machine.kind("session"), started, time.time() - started,
                                       last, "its last prompt failed" if last != "ok" else ""))

    def _wait_reading(self, child: pexpect.spawn[bytes], seconds: float, *,
                      stoppable: bool = True) -> bool:
        """Waits `seconds`, reading what the TUI draws meanwhile (so that the screen is current
        and the TUI never blocks on a full pty); True when the soak ended meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if stoppable and self._stop.is_set():
                return True
            _read_some(child, min(left, 0.2))
        return stoppable and self._stop.is_set()

    def _prompt(self, child: pexpect.spawn[bytes], term: Terminal, machine: Machine,
                why: str = "") -> str:
        """One prompt, judged by the screen: answered when `soak-pong-N` is shown."""
        n = next(self._n)
        kind = machine.kind("interactive")
        started = time.time()
        term.mark()
        child.send(f"soak-ping-{n}")
        self._wait_reading(child, 0.3, stoppable=False)
        child.send("\r")
        # Judged by the answer alone: the TUI redraws earlier lines (an earlier error among
        # them), so an error drawn after this prompt is not proof that this prompt failed.
        answer = re.compile(rf"soak-pong-{n}\b")
        deadline = time.monotonic() + PROMPT_TIMEOUT_S
        answered = term.shows(answer)
        while not answered and time.monotonic() < deadline:
            _read_some(child, 0.2)
            answered = term.shows(answer)
        shown_at = time.time()
        with self._lock:
            api_at = self.api_answers.get(n)
            reading = self.tui_reading.setdefault(kind, Counter())
            reading["prompts"] += 1
        if answered:
            outcome, detail = "ok", ""
            with self._lock:
                reading["answered_on_screen"] += 1
                if f"soak-pong-{n}".encode() not in term.raw:
                    reading["not_one_string_in_the_bytes"] += 1
                if api_at is not None:
                    wait = max(0.0, shown_at - api_at)
                    self.api_to_screen_s[kind] = max(self.api_to_screen_s.get(kind, 0.0), wait)
        else:
            asked = (f"the fake API answered it {api_at - started:.1f} s after it was sent"
                     if api_at is not None else "the fake API never answered it")
            shown = [line.strip() for line in term.below(f"soak-ping-{n}")
                     if TUI_LOGIN_ERROR.search(line)]
            if shown:
                outcome, detail = "login_error", f"no answer; shown: {shown[0][:120]!r} ({asked})"
            else:
                outcome, detail = "other", f"no answer shown in {PROMPT_TIMEOUT_S:g} s ({asked})"
                if api_at is not None:
                    with self._lock:
                        reading["api_answered_not_shown"] += 1
        self._record(RunRecord(kind, started, time.time() - started, outcome,
                               f"{detail} {why}".strip()))
        return outcome

    def _hostile(self, server: TokenServer) -> subprocess.Popen[bytes]:
        gap = self.config.hostile_gap or 3 * self.config.lifetime
        return subprocess.Popen(
            [sys.executable, "-m", "claude_wrap_testing.hostile", str(self.home.credentials_path),
             server.url, f"{gap:g}", str(self.config.seed)],
            cwd=REPO, stdout=subprocess.PIPE,
        )

    def _hostile_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.hostile_actions[str(event.get("action"))] += 1
                if event.get("action") == "refreshed":
                    self.hostile_writes.append(float(event["at"]))

    def _reader(self, path: Path | None = None, watch: FileWatch | None = None) -> None:
        """Polls a credentials file (the owner's by default) every 10 ms: when it could not be
        used (unparseable, or a token the API would refuse), and when each token first showed."""
        path = path or self.home.credentials_path
        watch = watch or self.watch
        bad_since: float | None = None
        why = ""
        while not self._stop.wait(0.01):
            now = time.time()
            problem = ""
            raw = b""
            try:
                with open(path, "rb") as f:
                    raw = f.read()
                doc = json.loads(raw)
            except (OSError, ValueError) as exc:
                problem = "unparseable"
                watch.unparseable.append((now, f"{len(raw)} bytes: {type(exc).__name__}"))
            else:
                verdict = judge_login.judge(doc, int(now * 1000), 0)
                if not verdict.usable:
                    problem = verdict.state
                else:
                    access = doc["claudeAiOauth"]["accessToken"]
                    watch.first_seen.setdefault(access, now)
                    problem = self.families.access_problem(access, count=False) or ""
            watch.reads += 1
            if problem and bad_since is None:
                bad_since, why = now, problem
            elif not problem and bad_since is not None:
                watch.stretches.append((bad_since, now - bad_since, why))
                bad_since = None
        if bad_since is not None:
            watch.stretches.append((bad_since, time.time() - bad_since, why))

    def _blanked(self) -> bool:
        """The file holds a login whose tokens were blanked: what the real binary writes after
        its own invalid_grant (tests/e2e/test_binary_refresh.py), even over a newer login."""
        try:
            with open(self.home.credentials_path, "rb") as f:
                oauth = json.loads(f.read()).get("claudeAiOauth") or {}
        except (OSError, ValueError, AttributeError):
            return False
        return isinstance(oauth, dict) and oauth.get("refreshToken") == ""

    def _user(self) -> None:
        """Logs in again when the login has been lost, as a user would have to: revoked at the
        token endpoint, or blanked in the file by the real binary."""
        while not self._stop.wait(0.1):
            if self.family in self.families.revoked:
                by = _agent_kind(self.families.revoked_by.get(self.family, ""))
            elif self._blanked():
                by = "claude (blanked the file)"
            else:
                continue
            revoked_at = time.time()
            self._dead_since = revoked_at
            if self._stop.wait(self.config.relogin_delay):
                break
            self._login()
            self._dead_since = None
            self.relogins.append(Relogin(revoked_at, time.time(), by))

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.config
        certs = mint_throwaway_ca(self.root / "ca")
        with (
            TokenServer(tag="soak") as server,
            FakeAnthropicAPI() as api,
            OAuthProxy(certs, server) as proxy,
            TokenServer(tag="guest") as guest_tokens,
            ExitStack() as stack,
        ):
            server.default = self.families
            api.check_token = self._check_token
            api.reply = self._reply
            self._env(api, proxy, server)
            self._login()
            if cfg.guests:
                sshd = stack.enter_context(Sshd(self.root / "sshd", self._owner_command()))
                for name, wanted in (("guest-tui", cfg.guest_tui),
                                     ("guest-print", cfg.guest_print)):
                    if wanted:
                        self.guests.append(self._guest(name, api, proxy, sshd, guest_tokens))
            seeds = random.Random(cfg.seed)
            threads = [threading.Thread(target=self._reader, daemon=True),
                       threading.Thread(target=self._user, daemon=True)]
            for _ in range(cfg.concurrency):
                rng = random.Random(seeds.random())
                threads.append(threading.Thread(target=self._print_worker, args=("shim", rng)))
            for _ in range(cfg.direct):
                rng = random.Random(seeds.random())
                threads.append(threading.Thread(target=self._print_worker, args=("direct", rng)))
            for _ in range(cfg.interactive):
                rng = random.Random(seeds.random())
                threads.append(threading.Thread(target=self._interactive_worker, args=(rng,)))
            watching = None
            if cfg.keeper and cfg.keeper_mode == "watch":
                watching = self._watching_keeper(self.owner)
            elif cfg.keeper:
                rng = random.Random(seeds.random())
                threads.append(threading.Thread(target=self._keeper_worker, args=(rng,)))
            threads += self._guest_workers(seeds)
            watchers = [self._watching_keeper(guest) for guest in self.guests]
            hostile = self._hostile(server) if cfg.hostile else None
            if hostile is not None:
                threads.append(threading.Thread(target=self._hostile_log, args=(hostile,),
                                                daemon=True))
            self.started = time.time()
            for thread in threads:
                thread.start()
            try:
                self._stop.wait(cfg.seconds)
            finally:
                self._stop.set()
                if hostile is not None:
                    hostile.terminate()
                    hostile.wait(30)
                self.ended = time.time()
                for thread in threads:
                    thread.join(240)
                if watching is not None:
                    self.keeper_events = self._collect_watching_keeper(watching)
                self._collect_guests(watchers, guest_tokens)
            return self.report()

    def _guest_workers(self, seeds: random.Random) -> list[threading.Thread]:
        """The guests' workers. Their seeds are drawn after the owner's, so that the owner's
        workers keep the seeds of a soak without guests."""
        threads = []
        for guest in self.guests:
            watch = self.guest_watch[guest.name] = FileWatch()
            threads.append(threading.Thread(
                target=self._reader, args=(guest.home.credentials_path, watch), daemon=True))
        rngs = [random.Random(seeds.random()) for _ in range(2)]
        for guest, rng in zip(self.guests, rngs, strict=False):
            if guest.name == "guest-tui":
                threads.append(threading.Thread(target=self._interactive_worker,
                                                args=(rng, guest)))
            else:
                threads.append(threading.Thread(target=self._print_worker,
                                                args=("guest-print", rng, guest)))
        return threads

    def _collect_guests(self, watchers: list[Watching], guest_tokens: TokenServer) -> None:
        for guest, watcher in zip(self.guests, watchers, strict=True):
            self.guest_keeper_events[guest.name] = self._collect_watching_keeper(watcher)
        self.guest_token_requests = len(guest_tokens.requests)
        for guest in self.guests:
            if _holds_refresh_token(guest.home.credentials_path):
                self.guest_files_with_refresh_token.append(guest.name)

    # --- the report ---------------------------------------------------------------------------

    def _mark_dead(self) -> None:
        windows = [(r.revoked_at, r.relogin_at) for r in self.relogins]
        for record in self.records:
            end = record.started + record.seconds
            record.dead = any(a <= end and record.started <= b for a, b in windows)

    def _local_repairs(self) -> int:
        return _count_local_repairs(self.root / "claude-wrap.log")

    def _guest_file(self, watch: FileWatch) -> dict[str, Any]:
        """A guest's file as its reader saw it: how long it held a token the API would refuse,
        and how far behind the owner's file each new token reached it (lag: the guest's first
        read of a token minus the owner's, both polled every 10 ms)."""
        lags = sorted(at - self.watch.first_seen[token] for token, at in watch.first_seen.items()
                      if token in self.watch.first_seen)
        owner_tokens = [t for t, at in self.watch.first_seen.items() if at >= self.started]
        stretches = watch.stretches
        return {
            "reads": watch.reads,
            "tokens_held": len(watch.first_seen),
            "owner_tokens_never_held": sum(t not in watch.first_seen for t in owner_tokens),
            "lag_median_s": round(lags[len(lags) // 2], 3) if lags else None,
            "lag_max_s": round(lags[-1], 3) if lags else None,
            "unusable_stretches": len(stretches),
            "unusable_by_cause": dict(Counter(s[2] for s in stretches)),
            "unusable_total_s": round(sum(s[1] for s in stretches), 2),
            "longest_unusable_s": round(max((s[1] for s in stretches), default=0.0), 3),
        }

    def report(self) -> dict[str, Any]:
        self._mark_dead()
        cfg = self.config
        elapsed = self.ended - self.started
        kinds: dict[str, dict[str, Any]] = {}
        for record in self.records:
            k = kinds.setdefault(record.kind, {
                "runs": 0, "ok": 0, "login_errors": 0, "login_errors_while_revoked": 0,
                "other": 0, "failed_while_revoked": 0, "examples": [],
            })
            k["runs"] += 1
            if record.outcome == "ok":
                k["ok"] += 1
            elif record.outcome == "login_error":
                k["login_errors"] += 1
                k["login_errors_while_revoked"] += record.dead
            else:
                k["other"] += 1
            if record.outcome != "ok":
                k["failed_while_revoked"] += record.dead
            if record.outcome != "ok" and len(k["examples"]) < 5:
                # When, from the soak's start, so that a failure can be found in the shim's log
                # and beside the hostile's rewrites (--keep keeps both).
                at = record.started - self.started
                near = min(self.hostile_writes, key=lambda w: abs(w - record.started), default=None)
                hostile = f" (the hostile's nearest rewrite {near - record.started:+.2f} s)" if (
                    near is not None) else ""
                k["examples"].append(f"at {at:.1f} s{hostile}, {record.outcome}: "
                                     f"{record.detail}".rstrip())
        refreshes: Counter[str] = Counter()
        invalid: Counter[str] = Counter()
        revokes: Counter[str] = Counter()
        for _, event, _, agent in self.families.events:
            who = _agent_kind(agent)
            if event == "refresh":
                refreshes[who] += 1
            else:
                invalid[who] += 1
                if event == "revoke":
                    revokes[who] += 1
        # A replay is unavoidable when the token was spent by a writer that takes no lock and
        # had not finished rewriting the file when the replay reached the server: whoever read
        # the file before that write began saw the old token, at whatever moment it read.
        raced: Counter[str] = Counter()
        for at, agent, first_at, first_by in self.families.replays:
            if _agent_kind(first_by) != "hostile":
                continue
            written = min((w for w in self.hostile_writes if w >= first_at), default=None)
            if written is None or at < written:
                raced[_agent_kind(agent)] += 1
        stretches = self.watch.stretches
        longest = max(stretches, key=lambda s: s[1], default=(0.0, 0.0, ""))
        why_unusable: Counter[str] = Counter(s[2] for s in stretches)
        lifetimes = elapsed / cfg.lifetime if cfg.lifetime > 0 else 0.0
        return {
            "config": {**asdict(cfg), "lifetime": cfg.lifetime, "window": cfg.window},
            # faithful: a rotation revokes the previous access token (CLAUDE_WRAP_TEST_TOKENS)
            "token_service": "lenient" if self.families.lenient else "faithful",
            "wall_seconds": round(elapsed, 1),
            "token_lifetimes": round(lifetimes, 1),
            "runs": kinds,
            "refreshes": dict(refreshes),
            "refreshes_total": self.families.refreshes,
            "refreshes_per_lifetime": round(self.families.refreshes / lifetimes, 2)
            if lifetimes else None,
            # What claude-wrap spent, apart from the real binary's and the hostile's own.
            "claude_wrap_refreshes_per_lifetime": round(refreshes["claude-wrap"] / lifetimes, 2)
            if lifetimes else None,
            # Repairs that spent nothing (issue 14): one log line each, from every process.
            "local_repairs": self._local_repairs(),
            "keeper_mode": cfg.keeper_mode if cfg.keeper else "none",
            "keeper_events": self.keeper_events,
            "guests": {
                "machines": [g.name for g in self.guests],
                "forced_command": (PUSH_COMMAND if owner_pushes() else
                                   f"token --json --min-valid {cfg.guest_min_valid:.3f}")
                if self.guests else None,
                "keeper_events": self.guest_keeper_events,
                # A guest never refreshes: its own token URL asked, or a refresh token found in
                # its file at the end, misses the goal.
                "token_requests": self.guest_token_requests,
                "files_with_refresh_token": self.guest_files_with_refresh_token,
            },
            "guest_files": {name: self._guest_file(watch)
                            for name, watch in sorted(self.guest_watch.items())},
            "tui_reading": {kind: dict(c) for kind, c in sorted(self.tui_reading.items())},
            "api_to_screen_longest_s": {k: round(v, 2) for k, v in self.api_to_screen_s.items()},
            "invalid_grants": dict(invalid),
            "invalid_grants_total": self.families.invalid_grants,
            "revocations_caused_by": dict(revokes),
            "revocations_racing_the_hostile_write": dict(raced),
            "forced_relogins": [asdict(r) for r in self.relogins],
            "api_401": dict(self.api_401),
            "api_401_total": self.families.rejected_access,
            "hostile_actions": dict(self.hostile_actions),
            "file": {
                "reads": self.watch.reads,
                "unparseable_moments": len(self.watch.unparseable),
                "unparseable_examples": [d for _, d in self.watch.unparseable[:5]],
                "unusable_stretches": len(stretches),
                "unusable_by_cause": dict(why_unusable),
                "longest_unusable_s": round(longest[1], 3),
                "longest_unusable_cause": longest[2],
                "unusable_total_s": round(sum(s[1] for s in stretches), 2),
            },
        }


def _read_some(child: pexpect.spawn[bytes], timeout: float) -> None:
    """Reads what the child has drawn within `timeout` (its logfile_read, the terminal, gets
    it). pexpect.EOF goes up: the session is over."""
    try:
        child.read_nonblocking(1 << 16, timeout=max(timeout, 0.0))
    except pexpect.TIMEOUT:
        pass


def _close(child: pexpect.spawn[bytes]) -> None:
    """End a TUI session for good. pexpect's close gives SIGKILL a tenth of a second to be reaped
    and raises past it, which on a loaded machine killed the session worker and with it every
    later session of the soak (seen in an hour-long soak): wait for the kill instead."""
    try:
        child.close(force=True)
    except pexpect.ExceptionPexpect:
        if child.pid is None:
            return
        try:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass  # already reaped
        try:
            child.close(force=True)
        except pexpect.ExceptionPexpect:
            pass  # the fd is closed; the child is gone


def _holds_refresh_token(path: Path) -> bool:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    oauth = doc.get("claudeAiOauth") if isinstance(doc, dict) else None
    return isinstance(oauth, dict) and bool(oauth.get("refreshToken"))


def _count_local_repairs(log: Path) -> int:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    return text.count("repaired locally: restored")


def owner_pushes() -> bool:
    """Whether this claude-wrap pushes new tokens to its guests (issue 26, guests/push.py):
    the forced command is then docs/guests.md's `token --json --for-guest`."""
    import importlib.util

    return importlib.util.find_spec("claude_wrap.guests.push") is not None


def shim_watches_output() -> bool:
    """Whether this claude-wrap has the output watcher (issue 4), which retries a run that
    claude ended logged out. Without it, a file rewritten between the shim's pre-flight and
    claude's own read is beyond the shim's reach."""
    import importlib.util

    return importlib.util.find_spec("claude_wrap.watch.relay") is not None


def goal_failures(
    report: dict[str, Any], *, watched: bool | None = None,
    max_refreshes_per_lifetime: float = 1.2, judge_rate_after: float = 30.0,
) -> list[str]:
    """What breaks the soak's goal, on the side of claude-wrap: any refresh token it presented
    that was already spent (an invalid_grant on a live login, which revokes it) unless the
    hostile refresher had spent it and not yet finished rewriting the file (a race with a
    writer that takes no lock, which nobody reading the file can win: reported), any
    `claude --print` through the shim or `claude-wrap keep` run that ended with a login error,
    any TUI session through the shim left logged out (its last prompt failed, even after one
    more try). Runs overlapping a moment when someone else had revoked the login (before the
    re-login) are excluded: nothing can save those, and they are reported. Issue 14 raised the
    goal: every single TUI prompt through the shim counts too (the guard repairs the file before
    the next prompt reads it), and over a soak long enough to judge a rate (`judge_rate_after`
    token lifetimes) claude-wrap spends at most `max_refreshes_per_lifetime` refreshes per token
    lifetime. The direct runs and the hostile refresher are reported, never judged. Without the
    output watcher (`watched` False; by
    default, whether this checkout has it), `claude --print` through the shim is reported only.
    Issue 26 added the guests: every guest run, prompt, session and keeper line that did not
    end well counts (a login error or anything else: a guest's user sees a failure either way),
    but those overlapping a revocation; a guest never asks a token endpoint and never holds a
    refresh token.
    """
    watched = shim_watches_output() if watched is None else watched
    failures = []
    judged = ("shim", "keeper", "session", "interactive") if watched else ("keeper", "session")
    for kind in judged:
        k = report["runs"].get(kind, {})
        errors = k.get("login_errors", 0) - k.get("login_errors_while_revoked", 0)
        if errors:
            failures.append(f"{errors} {kind} run(s) ended with a login error: {k['examples']}")
    for kind in GUEST_KINDS:
        k = report["runs"].get(kind, {})
        failed = k.get("runs", 0) - k.get("ok", 0) - k.get("failed_while_revoked", 0)
        if failed:
            failures.append(f"{failed} {kind} run(s) failed: {k['examples']}")
    guests = report.get("guests") or {}
    if guests.get("token_requests"):
        failures.append(f"a guest asked its token endpoint {guests['token_requests']} time(s)")
    if guests.get("files_with_refresh_token"):
        failures.append(f"a refresh token in the file of {guests['files_with_refresh_token']}")
    caused = report["revocations_caused_by"].get("claude-wrap", 0)
    caused -= report["revocations_racing_the_hostile_write"].get("claude-wrap", 0)
    if caused:
        failures.append(f"claude-wrap presented a spent refresh token {caused} time(s) that "
                        "the file no longer held, revoking the login")
    rate = report.get("claude_wrap_refreshes_per_lifetime")
    if (rate is not None and report["token_lifetimes"] >= judge_rate_after
            and rate > max_refreshes_per_lifetime):
        failures.append(f"claude-wrap refreshed {rate} times per token lifetime (goal: at most "
                        f"{max_refreshes_per_lifetime:g})")
    return failures


def summary(report: dict[str, Any]) -> str:
    """The report as a few lines for a terminal."""
    lines = [
        f"soak: {report['wall_seconds']} s wall, {report['token_lifetimes']} token lifetimes of "
        f"{report['config']['lifetime']:g} s (expires_in {report['config']['ttl']:g} s), "
        f"{report.get('token_service')} token service",
    ]
    for kind, k in sorted(report["runs"].items()):
        lines.append(
            f"  {kind:17} runs {k['runs']:5}  ok {k['ok']:5}  login errors "
            f"{k['login_errors']:4} (while revoked {k['login_errors_while_revoked']})  other "
            f"{k['other']}"
        )
    f = report["file"]
    lines += [
        f"  refreshes {report['refreshes_total']} {report['refreshes']}, "
        f"{report['refreshes_per_lifetime']} per lifetime "
        f"({report.get('claude_wrap_refreshes_per_lifetime')} by claude-wrap); "
        f"local repairs {report.get('local_repairs')}",
        f"  keeper: {report.get('keeper_mode')} {report.get('keeper_events') or ''}",
        f"  invalid_grants {report['invalid_grants_total']} {report['invalid_grants']}; "
        f"revocations caused by {report['revocations_caused_by']} (of which racing the "
        f"hostile's write: {report['revocations_racing_the_hostile_write']}); "
        f"forced re-logins {len(report['forced_relogins'])}",
        f"  401s from the Messages API {report['api_401_total']} {report['api_401']}",
        f"  hostile refresher {report['hostile_actions']}",
        f"  file: {f['reads']} reads, {f['unparseable_moments']} unparseable, "
        f"{f['unusable_stretches']} unusable stretches {f['unusable_by_cause']}, longest "
        f"{f['longest_unusable_s']} s ({f['longest_unusable_cause']}), total "
        f"{f['unusable_total_s']} s",
    ]
    for kind, reading in report.get("tui_reading", {}).items():
        lines.append(
            f"  {kind} read on a terminal: {reading.get('answered_on_screen', 0)} of "
            f"{reading.get('prompts', 0)} answered on screen, "
            f"{reading.get('not_one_string_in_the_bytes', 0)} of them never one string in the "
            f"bytes; answered by the API but not shown {reading.get('api_answered_not_shown', 0)}"
            f"; longest API-to-screen {report['api_to_screen_longest_s'].get(kind, 0.0)} s"
        )
    guests = report.get("guests") or {}
    if guests.get("machines"):
        lines.append(
            f"  guests {guests['machines']} (forced command `{guests['forced_command']}`): "
            f"keepers {guests['keeper_events']}; their token endpoint asked "
            f"{guests['token_requests']} times; refresh tokens in "
            f"{guests['files_with_refresh_token'] or 'no'} guest file"
        )
    for name, g in report.get("guest_files", {}).items():
        lines.append(
            f"  {name} file: {g['reads']} reads, {g['tokens_held']} tokens held "
            f"({g['owner_tokens_never_held']} of the owner's never), behind the owner's file by "
            f"{g['lag_median_s']} s (median) to {g['lag_max_s']} s; held a refused token "
            f"{g['unusable_total_s']} s in {g['unusable_stretches']} stretches "
            f"{g['unusable_by_cause']}, the longest {g['longest_unusable_s']} s"
        )
    for kind, k in sorted(report["runs"].items()):
        if k["examples"] and (kind.startswith(GUEST_PREFIX) or kind in ("interactive", "session")):
            lines += [f"  {kind}: {example}" for example in k["examples"]]
    return "\n".join(lines)

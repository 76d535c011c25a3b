"""What every benchmark shares: a sandboxed HOME with the installed shim, children to run behind
it, alternating timed runs, and the statistics.

Runs are started with os.posix_spawn and reaped with os.wait4, so that timing is as thin as the
runner can make it; wait4 also gives each run's CPU time, which a busy machine disturbs far less
than wall time, so both are reported. Peak memory is sampled from /proc (PeakRss says why).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCOPES = ["user:inference", "user:profile", "user:sessions:claude_code"]
ACCESS = "sk-ant-oat01-bench-access-AAAAAAAAAAAAAAAA"
REFRESH = "sk-ant-ort01-bench-refresh-BBBBBBBBBBBBBBBB"
DEVNULL = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
# Set by `bench/run --env KEY=VALUE`: added to every run's environment (both sides), e.g. to turn
# a shim feature on or off while comparing.
EXTRA_ENV: dict[str, str] = {}


def wrap_python() -> str:
    """The interpreter the shim is installed for: ours when we run in a virtual environment (the
    test suite's), else the worktree's .venv when there is one."""
    venv = REPO / ".venv" / "bin" / "python"
    if sys.prefix != sys.base_prefix or not venv.exists():
        return sys.executable
    return str(venv)


def now_ms() -> int:
    return int(time.time() * 1000)


def login_doc(*, expires_in_s: float = 8 * 3600, pad: int = 0) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "claudeAiOauth": {
            "accessToken": ACCESS,
            "refreshToken": REFRESH,
            "expiresAt": now_ms() + int(expires_in_s * 1000),
            "scopes": list(SCOPES),
            "subscriptionType": "max",
            "rateLimitTier": "default_claude_max_20x",
        },
        "mcpOAuth": {},
    }
    if pad:
        # Grow the file the way real ones grow, with more MCP server logins beside Claude's own,
        # to exactly `pad` bytes.
        entry = len(json.dumps({"server-00000": {"accessToken": "t" * 200}}))
        count = max(0, (pad - len(json.dumps(doc)) - 300) // entry)
        doc["mcpOAuth"] = {f"server-{i:05d}": {"accessToken": "t" * 200} for i in range(count)}
        doc["pad"] = ""
        doc["pad"] = "p" * max(0, pad - len(json.dumps(doc)))
    return doc


def write_exec(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


class Sandbox:
    """A HOME of its own with a login, and the shim installed the way users install it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.cfg = self.home / ".claude"
        self.cfg.mkdir(parents=True)
        self.state = root / "state"
        self.shim_dir = root / "shimbin"
        result = subprocess.run(
            [wrap_python(), "-m", "claude_wrap", "install", "--dir", str(self.shim_dir)],
            cwd=REPO,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"claude-wrap install failed: {result.stderr.strip()}")
        self.shim = str(self.shim_dir / "claude")

    @property
    def creds(self) -> Path:
        return self.cfg / ".credentials.json"

    def write_login(self, doc: dict[str, Any] | None = None) -> None:
        self.creds.write_text(json.dumps(doc if doc is not None else login_doc()))
        self.creds.chmod(0o600)

    def child(self, name: str, text: str) -> Path:
        """A folder holding an executable `claude` with this text; returns the folder."""
        folder = self.root / f"bin-{name}"
        write_exec(folder / "claude", text)
        return folder

    def copy_child(self, name: str, source: str) -> Path:
        folder = self.root / f"bin-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / "claude")
        (folder / "claude").chmod(0o755)
        return folder

    def env(
        self, real_dir: Path | str, path_extra: Sequence[str] = (), **extra: str
    ) -> dict[str, str]:
        path = [str(self.shim_dir), *path_extra, str(real_dir), "/usr/bin", "/bin"]
        env = {
            "HOME": str(self.home),
            "PATH": ":".join(path),
            "XDG_STATE_HOME": str(self.state),
            "CLAUDE_WRAP_LOG_FILE": str(self.root / "claude-wrap.log"),
            "LANG": "C.UTF-8",
            "TERM": "xterm-256color",
        }
        env.update(EXTRA_ENV)
        env.update(extra)
        return env

    def verdict_cached(self) -> bool:
        return (self.state / "claude-wrap" / "verdict").exists()


def spawn(
    argv: Sequence[str],
    env: dict[str, str],
    *,
    stdin: int = DEVNULL,
    stdout: int = DEVNULL,
    stderr: int = DEVNULL,
) -> int:
    actions = [
        (os.POSIX_SPAWN_DUP2, stdin, 0),
        (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    # As a shell would start it: Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive
    # exec, so put them back to their defaults (subprocess's restore_signals does the same).
    return os.posix_spawn(
        argv[0], list(argv), env, file_actions=actions, setsigdef=RESTORED_SIGNALS
    )


class Exit:
    __slots__ = ("cpu_ms", "ns", "status")

    def __init__(self, status: int, ns: int, cpu_ms: float) -> None:
        self.status = status
        self.ns = ns
        self.cpu_ms = cpu_ms  # user + system time of the process and the children it waited for

    @property
    def ms(self) -> float:
        return self.ns / 1e6


def reap(pid: int, started_ns: int) -> Exit:
    _, status, usage = os.wait4(pid, 0)
    ended = time.perf_counter_ns()
    cpu_ms = (usage.ru_utime + usage.ru_stime) * 1000
    return Exit(os.waitstatus_to_exitcode(status), ended - started_ns, cpu_ms)


def run_timed(argv: Sequence[str], env: dict[str, str], **fds: int) -> Exit:
    started = time.perf_counter_ns()
    pid = spawn(argv, env, **fds)
    return reap(pid, started)


def alternate(
    reps: int, a: Callable[[], float], b: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """Run a and b `reps` times each, interleaved, swapping which goes first every other round so
    that neither side always runs on a warmer (or noisier) machine."""
    xs: list[float] = []
    ys: list[float] = []
    for i in range(reps):
        if i % 2 == 0:
            xs.append(a())
            ys.append(b())
        else:
            ys.append(b())
            xs.append(a())
    return xs, ys


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    if n == 0:
        return math.nan
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    if not s:
        return math.nan
    k = (len(s) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def pair_stats(
    direct: Sequence[float], wrapped: Sequence[float]
) -> dict[str, float | None]:
    """Medians of both sides, their ratio and difference, and the median of per-pair differences
    (each pair ran back to back, so it cancels slow drifts of the machine)."""
    d = median(direct)
    w = median(wrapped)
    return {
        "direct_median": round(d, 4),
        "wrapped_median": round(w, 4),
        "ratio": round(w / d, 4) if d else None,
        "added_median": round(w - d, 4),
        "added_paired_median": round(
            median([y - x for x, y in zip(direct, wrapped, strict=True)]), 4
        ),
        # Noise on a shared machine only ever adds time: the fastest runs are the steadiest view
        # of what each side costs by itself.
        "direct_min": round(min(direct), 4),
        "wrapped_min": round(min(wrapped), 4),
        "added_min": round(min(wrapped) - min(direct), 4),
        "runs": len(direct),
    }


class PeakRss:
    """The peak resident size of one process, sampled from /proc/<pid>/status (VmHWM, a high-water
    mark, so a sample also covers the time since the last one) while the process is still running
    `program`, i.e. before it execs anything else.

    Not ru_maxrss from wait4: a child started with posix_spawn (vfork) or fork carries its parent's
    high-water mark across exec, so it would report the runner's own size, not the wrapper's.
    """

    def __init__(self, pid: int, program: str, interval_s: float = 0.003) -> None:
        self.pid = pid
        self.program = program.encode()
        self.interval_s = interval_s
        self.peak_kib: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> bool:
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                if self.program not in f.read().split(b"\0"):
                    return False
            with open(f"/proc/{self.pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        kib = int(line.split()[1])
                        self.peak_kib = max(self.peak_kib or 0, kib)
                        break
        except (OSError, ValueError):
            return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def stop(self) -> float | None:
        """Stop sampling; the peak in MiB, or None if the process never ran as `program`."""
        self._stop.set()
        self._thread.join()
        return None if self.peak_kib is None else self.peak_kib / 1024

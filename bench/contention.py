"""Contention: many shims started at once on one expired login.

A real token server on loopback (claude_wrap_testing/tokenserver.py) answers each refresh a
short delay after the request arrived (as a remote one would, however busy our CPUs are) and
counts the requests. Exactly one refresh must reach it per burst, however many shims start; the
burst's wall time is compared with one shim refreshing alone, the two alternating.

"At once" is taken literally: every shim of a burst (and the lone one) is forked beforehand and
held at a gate, a pipe, until the runner closes it; the clock starts there. Spawning them one by
one from the runner's loop used to take 0.2-1.4 s on the loaded 2-core machine (each spawn waits
for its child's exec, while the children already started compete for the CPU), so the burst's
wall time measured the runner's loop as much as the shims. `spawn_ms` keeps what the forks took.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

from bench import harness, hotpath
from bench.harness import DEVNULL, RESTORED_SIGNALS, Exit, Sandbox, alternate, median
from claude_wrap_testing import tokenserver

SERVER_DELAY_S = 0.2


def _delayed_ok() -> tokenserver.Answer:
    make = tokenserver.ok()

    def answer(server: tokenserver.TokenServer, request: tokenserver.Request) -> tokenserver.Reply:
        return dataclasses.replace(make(server, request), delay=SERVER_DELAY_S)

    return answer


class Gate:
    """Processes forked and held before exec until `open()` lets them all go at once."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        self.pids: list[int] = []
        self.forked_ms = 0.0
        self.started = 0

    def hold(self, argv: list[str], env: dict[str, str], stderr: int = DEVNULL) -> None:
        began = time.perf_counter_ns()
        pid = os.fork()
        if pid == 0:  # the child: nothing here may raise past os._exit
            try:
                os.close(self._write)
                os.dup2(DEVNULL, 0)
                os.dup2(DEVNULL, 1)
                os.dup2(stderr, 2)
                for signum in RESTORED_SIGNALS:  # as a shell starts it (harness.spawn says why)
                    signal.signal(signum, signal.SIG_DFL)
                os.read(self._read, 1)  # end of file when the runner closes the gate
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pids.append(pid)
        self.forked_ms += (time.perf_counter_ns() - began) / 1e6

    def open(self) -> None:
        os.close(self._read)
        self.started = time.perf_counter_ns()
        os.close(self._write)  # every held child's read returns now

    def reap(self) -> list[Exit]:
        return [harness.reap(pid, self.started) for pid in self.pids]


def contention(root: Path, reps: int, *, shims: int = 32) -> dict[str, Any]:
    sb = Sandbox(root)
    fake = sb.copy_child("true", "/bin/true")
    argv = [sb.shim, "-p", "bench"]
    verdict = sb.state / "claude-wrap" / "verdict"
    singles: list[float] = []
    bursts: list[float] = []
    requests: list[int] = []
    failures: list[str] = []
    cpu: list[list[float]] = []
    spawn_ms: list[float] = []
    single_cpu: list[float] = []
    imports: list[str] = []
    python = Path(sb.shim).read_text().splitlines()[0][2:].split()[0]
    with tokenserver.TokenServer(tag="bench") as server:
        server.default = _delayed_ok()
        # The faithful service (issue 26): each spent refresh token revokes its access token.
        server.register(harness.ACCESS, harness.REFRESH)
        env = sb.env(
            fake,
            CLAUDE_WRAP_TOKEN_URL=server.url,
            CLAUDE_WRAP_LOCK_TIMEOUT="60",
            CLAUDE_WRAP_REFRESH_TIMEOUT="30",
        )

        def expire() -> int:
            sb.write_login(harness.login_doc(expires_in_s=-60))
            verdict.unlink(missing_ok=True)
            return len(server.requests)

        def refreshed() -> bool:
            oauth = json.loads(sb.creds.read_text())["claudeAiOauth"]
            return bool(oauth["expiresAt"] > harness.now_ms() + 3600_000)

        def single() -> float:
            expire()
            gate = Gate()
            gate.hold(argv, env)
            gate.open()
            (ex,) = gate.reap()
            single_cpu.append(ex.cpu_ms)
            if ex.status != 0 or not refreshed():
                failures.append(f"single run: exit {ex.status}, refreshed={refreshed()}")
            return ex.ms

        def burst() -> float:
            before = expire()
            # One of the shims reports what it imported (python -X importtime, on its stderr),
            # into a file read afterwards: read from a pipe during the burst, it woke this
            # process a hundred times, whose token server thread then waited for the GIL.
            with tempfile.TemporaryFile() as report:
                gate = Gate()
                for _ in range(shims - 1):
                    gate.hold(argv, env)
                gate.hold([python, "-I", "-S", "-X", "importtime", *argv], env, report.fileno())
                spawn_ms.append(gate.forked_ms)
                gate.open()
                exits = gate.reap()
                wall = (time.perf_counter_ns() - gate.started) / 1e6
                report.seek(0)
                imports.append(report.read().decode(errors="replace"))
            cpu.append([e.cpu_ms for e in exits])
            requests.append(len(server.requests) - before)
            bad = [e.status for e in exits if e.status != 0]
            if bad or not refreshed():
                failures.append(f"burst: exits {bad}, refreshed={refreshed()}")
            return wall

        singles, bursts = alternate(reps, single, burst)
    ratio = median(bursts) / median(singles)
    return {
        "shims": shims,
        "server_delay_ms": SERVER_DELAY_S * 1000,
        "runs": reps,
        "token_requests_per_burst": requests,
        "exactly_one_request": all(n == 1 for n in requests),
        "single_wall_ms": round(median(singles), 1),
        "burst_wall_ms": round(median(bursts), 1),
        "ratio": round(ratio, 3),
        "single_cpu_ms": round(median(single_cpu), 1),
        "burst_cpu_ms_per_shim_median": round(median([median(c) for c in cpu]), 1),
        "burst_cpu_ms_total": round(median([sum(c) for c in cpu]), 1),
        "cpus": os.cpu_count(),
        "start": "forked beforehand, let go at once through a pipe",
        "spawn_ms_median": round(median(spawn_ms), 1),
        "heaviest_imports_of_one_shim": heaviest(imports[-1]) if imports else [],
        "failures": failures,
        "token_service": "lenient" if server.lenient else "faithful",
        "access_tokens_revoked": len(server.revoked_access),
    }


class ImportCost(TypedDict):
    """One line of `python -X importtime`, as the report shows it."""

    module: str
    cumulative_ms: float
    depth: int


def heaviest(importtime: str, top: int = 10) -> list[ImportCost]:
    """The top-level imports (as seen from our own modules) that cost the most, cumulative."""
    found: list[ImportCost] = []
    for line in importtime.splitlines():
        m = hotpath.IMPORT_LINE.match(line)
        if m:
            found.append(
                {
                    "module": m.group(4),
                    "cumulative_ms": int(m.group(2)) / 1000,
                    "depth": len(m.group(3)) // 2,
                }
            )
    shallow = [f for f in found if f["depth"] <= 1]
    return sorted(shallow, key=lambda f: -f["cumulative_ms"])[:top]

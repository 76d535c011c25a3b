"""Headless runs: what the shim costs when a child streams a lot of output, reads a lot of input,
or writes one line at a time. Whatever the shim does with such a run (exec the real binary, or
stay in between as the watching relay) is what is measured: each result says which it was.

The children are small shell scripts around coreutils (or a few lines of Python where a clock is
needed). The wrapper's peak resident size is sampled from /proc while it is still the shim.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import Sandbox, alternate, median, percentile

MIB = 1024 * 1024
LINE = (
    b'{"type":"stream_event","event":{"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"a line of benchmark text"}}}'
)
PRINT_ARGS = ["-p", "bench", "--output-format", "stream-json", "--verbose"]

EMIT = f"""#!/bin/sh
# Writes $BENCH_BYTES bytes of stream-json-like lines to stdout.
yes '{LINE.decode()}' | head -c "$BENCH_BYTES"
"""

# Reads stdin to the end; prints how many bytes, and when the first one and the last one came
# (the first byte is read alone, by dd, so that the clock starts when data starts flowing).
SINK = """#!/bin/sh
dd bs=1 count=1 of=/dev/null 2>/dev/null
t0=$(date +%s%N)
n=$(wc -c)
t1=$(date +%s%N)
echo "$((n + 1)) $t0 $t1"
"""

# One line every $BENCH_LINE_DELAY s, each stamped with CLOCK_MONOTONIC (system-wide on Linux,
# so the reader's clock is the same one).
LINES = f"""#!{sys.executable} -IS
import os, time
n = int(os.environ["BENCH_LINES"])
delay = float(os.environ["BENCH_LINE_DELAY"])
for i in range(n):
    os.write(1, b"%d %d\\n" % (i, time.monotonic_ns()))
    time.sleep(delay)
"""


def _still(pid: int, program: str) -> bool:
    """Whether the process we started is still `program` (the shim stayed in between as a relay)
    rather than whatever it exec'd."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return program.encode() in f.read().split(b"\0")
    except OSError:
        return False


def _stdout_run(argv: list[str], env: dict[str, str], nbytes: int) -> dict[str, Any]:
    r, w = os.pipe()
    started = time.perf_counter_ns()
    pid = harness.spawn(argv, {**env, "BENCH_BYTES": str(nbytes)}, stdout=w)
    os.close(w)
    rss = harness.PeakRss(pid, argv[0])
    buf = bytearray(MIB)
    view = memoryview(buf)
    total = 0
    first = 0
    stayed = False
    with open(r, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                break
            if not first:
                first = time.perf_counter_ns()
                stayed = _still(pid, argv[0])
            total += n
    eof = time.perf_counter_ns()
    peak = rss.stop()
    ex = harness.reap(pid, started)
    if ex.status != 0 or total != nbytes:
        raise RuntimeError(f"{argv[0]}: exit {ex.status}, {total} of {nbytes} bytes")
    return {
        "mib_s": (total / MIB) / ((eof - first) / 1e9),
        "wall_ms": ex.ms,
        "peak_rss_mib": peak,
        "relayed": stayed,
    }


def _stdin_run(argv: list[str], env: dict[str, str], nbytes: int) -> dict[str, Any]:
    rin, win = os.pipe()
    rout, wout = os.pipe()
    started = time.perf_counter_ns()
    pid = harness.spawn(argv, env, stdin=rin, stdout=wout)
    os.close(rin)
    os.close(wout)
    rss = harness.PeakRss(pid, argv[0])
    block = (LINE + b"\n") * (MIB // (len(LINE) + 1))
    stayed: list[bool] = []

    def feed() -> None:
        left = nbytes
        try:
            with open(win, "wb", buffering=0) as f:
                while left > 0:
                    chunk = block[: min(left, len(block))]
                    f.write(chunk)
                    if not stayed:
                        stayed.append(_still(pid, argv[0]))
                    left -= len(chunk)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    with open(rout, "rb") as f:
        said = f.read().decode(errors="replace").split()
    writer.join()
    peak = rss.stop()
    ex = harness.reap(pid, started)
    if ex.status != 0 or len(said) != 3 or int(said[0]) != nbytes:
        raise RuntimeError(f"{argv[0]}: exit {ex.status}, said {said!r}, expected {nbytes} bytes")
    seconds = (int(said[2]) - int(said[1])) / 1e9
    return {
        "mib_s": ((nbytes - 1) / MIB) / seconds,
        "wall_ms": ex.ms,
        "peak_rss_mib": peak,
        "relayed": bool(stayed and stayed[0]),
    }


def _throughput(
    reps: int, run: Any, direct: list[str], shim: list[str], env: dict[str, str], nbytes: int
) -> dict[str, Any]:
    ds: list[dict[str, Any]] = []
    ws: list[dict[str, Any]] = []

    def a() -> float:
        ds.append(run(direct, env, nbytes))
        return 0.0

    def b() -> float:
        ws.append(run(shim, env, nbytes))
        return 0.0

    alternate(reps, a, b)
    d_tp = median([x["mib_s"] for x in ds])
    w_tp = median([x["mib_s"] for x in ws])
    d_wall = median([x["wall_ms"] for x in ds])
    w_wall = median([x["wall_ms"] for x in ws])
    return {
        "bytes": nbytes,
        "runs": reps,
        "direct_mib_s": round(d_tp, 1),
        "wrapped_mib_s": round(w_tp, 1),
        "throughput_ratio": round(w_tp / d_tp, 4),
        "paired_ratio_median": round(
            median([w["mib_s"] / d["mib_s"] for d, w in zip(ds, ws, strict=True)]), 4
        ),
        # Noise only ever slows a run down: the best runs are the steadiest view.
        "best_ratio": round(max(x["mib_s"] for x in ws) / max(x["mib_s"] for x in ds), 4),
        "direct_wall_ms": round(d_wall, 2),
        "wrapped_wall_ms": round(w_wall, 2),
        "wall_ratio": round(w_wall / d_wall, 4),
        "direct_peak_rss_mib": _peak(ds),
        "wrapper_peak_rss_mib": _peak(ws),
        "relayed": all(x["relayed"] for x in ws),
    }


def _peak(runs: list[dict[str, Any]]) -> float | None:
    """The largest peak over the runs; None when the process had exec'd before any sample (the
    shim handed over to the real binary: nothing of it is left in memory during the run)."""
    peaks = [x["peak_rss_mib"] for x in runs if x["peak_rss_mib"] is not None]
    return round(max(peaks), 2) if peaks and all(x["relayed"] for x in runs) else None


def sizes(quick: bool) -> list[int]:
    return [4 * MIB, 16 * MIB] if quick else [16 * MIB, 256 * MIB]


def stdout(root: Path, reps: int, *, quick: bool) -> dict[str, Any]:
    sb = Sandbox(root)
    sb.write_login()
    folder = sb.child("emit", EMIT)
    env = sb.env(folder)
    shim = [sb.shim, *PRINT_ARGS]
    harness.run_timed(shim, {**env, "BENCH_BYTES": "1"})  # warm the verdict cache
    direct = [str(folder / "claude"), *PRINT_ARGS]
    return {str(n): _throughput(reps, _stdout_run, direct, shim, env, n) for n in sizes(quick)}


def stdin(root: Path, reps: int, *, quick: bool) -> dict[str, Any]:
    sb = Sandbox(root)
    sb.write_login()
    folder = sb.child("sink", SINK)
    env = sb.env(folder)
    shim = [sb.shim, *PRINT_ARGS, "--input-format", "stream-json"]
    direct = [str(folder / "claude"), *PRINT_ARGS, "--input-format", "stream-json"]
    _stdin_run(shim, env, 2)  # warm the verdict cache
    return {str(n): _throughput(reps, _stdin_run, direct, shim, env, n) for n in sizes(quick)}


def _latency_run(argv: list[str], env: dict[str, str]) -> tuple[list[float], bool]:
    r, w = os.pipe()
    pid = harness.spawn(argv, env, stdout=w)
    os.close(w)
    delays: list[float] = []
    pending = b""
    stayed = None
    with open(r, "rb", buffering=0) as f:
        while True:
            chunk = f.read(65536)
            got = time.monotonic_ns()
            if not chunk:
                break
            if stayed is None:
                stayed = _still(pid, argv[0])
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                sent = int(line.split()[1])
                delays.append((got - sent) / 1000)  # microseconds
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} exited {os.waitstatus_to_exitcode(status)}")
    return delays, bool(stayed)


def latency(root: Path, reps: int, *, quick: bool) -> dict[str, Any]:
    sb = Sandbox(root)
    sb.write_login()
    folder = sb.child("lines", LINES)
    nlines = 30 if quick else 200
    env = sb.env(folder, BENCH_LINES=str(nlines), BENCH_LINE_DELAY="0.01")
    shim = [sb.shim, *PRINT_ARGS]
    direct = [str(folder / "claude"), *PRINT_ARGS]
    harness.run_timed(shim, {**env, "BENCH_LINES": "1"})
    d_all: list[float] = []
    w_all: list[float] = []
    relayed: list[bool] = []

    def a() -> float:
        d_all.extend(_latency_run(direct, env)[0])
        return 0.0

    def b() -> float:
        delays, rel = _latency_run(shim, env)
        w_all.extend(delays)
        relayed.append(rel)
        return 0.0

    alternate(reps, a, b)
    return {
        "lines": len(w_all),
        "line_delay_ms": 10,
        "direct_median_us": round(median(d_all), 1),
        "direct_p99_us": round(percentile(d_all, 99), 1),
        "wrapped_median_us": round(median(w_all), 1),
        "wrapped_p99_us": round(percentile(w_all, 99), 1),
        "added_median_us": round(median(w_all) - median(d_all), 1),
        "added_p99_us": round(percentile(w_all, 99) - percentile(d_all, 99), 1),
        "relayed": all(relayed),
    }

"""`bench/run`: run the benchmarks, print a table against the targets, write the figures as JSON.

Every figure compares the shim with running the same thing without it, in the same run, the two
alternating, medians of repeated runs. The whole run happens in a network namespace that has
only loopback (when we can make one: root and `unshare`), so the real binary never reaches out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    client,
    contention,
    harness,
    hotpath,
    interactive,
    profile,
    prompt,
    realclaude,
    relay,
    report,
)
from bench.harness import REPO

NAMES = (
    "real",
    "client",
    "wrapper",
    "watch",
    "prompt",
    "stdout",
    "stdin",
    "latency",
    "pty",
    "contention",
    "growth",
    "profile",
)
NETNS_FLAG = "CLAUDE_WRAP_BENCH_NETNS"
DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few repetitions and small sizes")
    p.add_argument(
        "--reps",
        type=int,
        default=None,
        help="timed repetitions per side (default 31, quick 3); the slow benchmarks "
        "(throughput, latency, pty, contention) use a fraction of it",
    )
    p.add_argument(
        "--only", default=",".join(NAMES), help=f"comma-separated subset of: {', '.join(NAMES)}"
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file (default: %(default)s)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add to the environment of every run, shim and direct alike (repeatable); "
        "e.g. --env CLAUDE_WRAP_WATCH=0 to measure the shim without its relay",
    )
    p.add_argument(
        "--claude",
        default=",".join(realclaude.VERSIONS),
        metavar="VERSIONS",
        help="the real Claude Code releases `real` measures, comma-separated "
        "(default: the test matrix, %(default)s)",
    )
    p.add_argument(
        "--no-install",
        action="store_true",
        help="do not npm-install the real claude when it is missing (skip `real`)",
    )
    p.add_argument(
        "--no-netns",
        action="store_true",
        help="stay in this network namespace (the real binary is then skipped)",
    )
    ns = p.parse_args(argv)
    ns.only = [n.strip() for n in ns.only.split(",") if n.strip()]
    ns.claude = [v.strip() for v in ns.claude.split(",") if v.strip()]
    unknown = [n for n in ns.only if n not in NAMES]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")
    if ns.reps is None:
        ns.reps = 3 if ns.quick else 31
    if ns.reps < 1:
        p.error("--reps must be at least 1")
    for item in ns.env:
        key, eq, value = item.partition("=")
        if not key or not eq:
            p.error(f"--env wants KEY=VALUE, not {item!r}")
        harness.EXTRA_ENV[key] = value
    return ns


def reenter_netns(argv: list[str]) -> None:
    """Re-run ourselves in a new network namespace with only `lo` up. Returns when that is not
    possible (not root, no unshare, or the kernel refuses), leaving the caller where it was."""
    if os.environ.get(NETNS_FLAG) or os.geteuid() != 0:
        return
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return
    probe = subprocess.run(
        [unshare, "-n", ip, "link", "set", "lo", "up"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return
    os.environ[NETNS_FLAG] = "1"
    script = f'{ip} link set lo up && exec "$@"'
    os.execv(
        unshare,
        [
            unshare,
            "-n",
            "--",
            "/bin/sh",
            "-c",
            script,
            "sh",
            sys.executable,
            str(REPO / "bench" / "run"),
            *argv,
        ],
    )


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ns = parse(argv)
    claudes: dict[str, Path | None] = {}
    if "real" in ns.only and not ns.no_netns:
        # npm needs the network: install before entering the loopback-only namespace.
        # (Inside it, after the re-exec, only look: npm could not reach the registry from there.)
        claudes = realclaude.ensure_all(
            ns.claude, install=not ns.no_install and not os.environ.get(NETNS_FLAG)
        )
    if "client" in ns.only and not ns.no_netns and not claudes:
        claudes = realclaude.ensure_all(
            ns.claude, install=not ns.no_install and not os.environ.get(NETNS_FLAG)
        )
    found = {v: path for v, path in claudes.items() if path is not None}
    clients, no_clients = None, "not asked for"
    if "client" in ns.only:
        # The TS Agent SDK, from the e2e tests' cache; npm only before the namespace move.
        clients, no_clients = client.installed(
            install=not ns.no_install and not os.environ.get(NETNS_FLAG)
        )
    if not ns.no_netns:
        reenter_netns(argv)
    in_netns = bool(os.environ.get(NETNS_FLAG))
    reps = ns.reps
    slow = max(1, reps // 4)
    cases: dict[str, Callable[[Path], dict[str, Any]]] = {
        "real": lambda root: {v: hotpath.real(root / v, path, reps) for v, path in found.items()},
        "client": lambda root: {
            v: client.first_answer(root / v, path, clients, slow)
            for v, path in found.items()
            if clients is not None
        },
        "wrapper": lambda root: hotpath.wrapper(root, reps),
        "watch": lambda root: hotpath.watch_cost(root, reps),
        "prompt": lambda root: prompt.short_status(root, reps),
        "stdout": lambda root: relay.stdout(root, max(2, reps // 2), quick=ns.quick),
        "stdin": lambda root: relay.stdin(root, max(2, reps // 2), quick=ns.quick),
        "latency": lambda root: relay.latency(root, slow, quick=ns.quick),
        "pty": lambda root: interactive.pty_roundtrip(root, slow, quick=ns.quick),
        # Half the reps, not a quarter: a lone refreshing shim's wall varies by 15% from one run
        # to the next on a 2-core machine, and the ratio's median of 7 pairs swung with it.
        "contention": lambda root: contention.contention(
            root, max(1, reps // 2), shims=8 if ns.quick else 32
        ),
        "growth": lambda root: hotpath.growth(
            root, max(2 if ns.quick else 3, reps // 2), quick=ns.quick
        ),
        "profile": lambda root: profile.profiles(root, Path(ns.out).parent, quick=ns.quick),
    }
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for name in ns.only:
        if name == "profile" and not profile.available():
            skipped[name] = "pyinstrument is not installed (pip install -e '.[dev]')"
            print(f"== {name}: skipped ({skipped[name]})", flush=True)
            continue
        if name == "real" and (not found or not in_netns):
            skipped[name] = (
                "no loopback-only network namespace (needs root and unshare)"
                if found
                else f"no real claude of {', '.join(ns.claude)} is installed"
            )
            print(f"== {name}: skipped ({skipped[name]})", flush=True)
            continue
        if name == "client" and (not found or not in_netns or clients is None):
            skipped[name] = (
                f"the TS Agent SDK is not installed ({no_clients})" if clients is None
                else "no loopback-only network namespace (needs root and unshare)" if found
                else f"no real claude of {', '.join(ns.claude)} is installed"
            )
            print(f"== {name}: skipped ({skipped[name]})", flush=True)
            continue
        if name == "real" and len(found) < len(claudes):
            missing = [v for v in claudes if v not in found]
            print(f"== real: not installed, not measured: {', '.join(missing)}", flush=True)
        print(f"== {name} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"claude-wrap-bench-{name}-") as tmp:
            try:
                results[name] = cases[name](Path(tmp))
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
                continue
        if name == "stdin" and "stdout" in results:
            results[name]["replay_copy"] = report.replay_cost(results["stdout"], results[name])
        try:
            rows.extend(report.rows_for(name, results[name]))
        except (KeyError, TypeError, ValueError) as exc:
            errors[name] = f"cannot tabulate: {type(exc).__name__}: {exc}"
            traceback.print_exc()
    doc = {
        "meta": {
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "bench/run " + " ".join(argv),
            "machine": machine(),
            "claude_code_versions": sorted(found),
            "reps": reps,
            "quick": ns.quick,
            "loopback_only_netns": in_netns,
            "extra_env": dict(harness.EXTRA_ENV),
        },
        "results": results,
        "skipped": skipped,
        "errors": errors,
        "table": rows,
    }
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.finite(doc), indent=2, allow_nan=False) + "\n")
    print()
    print(report.table(rows))
    print(f"\nfigures written to {out}")
    if errors:
        print(f"FAILED: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0

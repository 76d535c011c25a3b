"""The hot path: what a healthy `claude` run pays for going through the shim.

- real: `claude --version` and `claude auth status` of the pinned real binary, shim against direct.
- wrapper: the shim in front of an instantly exiting binary (a copy of /bin/true), so that the
  figure is the wrapper's own cost; with the modules it imported (python -X importtime) and the
  bare interpreter's start-up for scale.
- growth: the same as the credentials file grows from 1 KiB to 1 MiB and PATH from 10 to 1000
  entries (the real binary in the last one); with the first run after a change of the file
  (verdict cache miss, the file is parsed) reported beside it.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import Sandbox, alternate, pair_stats, run_timed

# Modules the hot path must not import (house rules: the first four are hard rules, the others
# are avoided where possible).
FORBIDDEN = ("httpx", "loguru", "psutil", "pexpect")
AVOIDED = ("json", "typing", "pathlib", "subprocess", "re", "enum", "site")
HOT_ARGS = ["auth", "status"]  # uses the stored login: the pre-flight runs (from its cache)


def _check(exit_: harness.Exit, what: str, cpu: list[float] | None = None) -> float:
    if exit_.status != 0:
        raise RuntimeError(f"{what} exited {exit_.status}")
    if cpu is not None:
        cpu.append(exit_.cpu_ms)
    return exit_.ms


def _time_pair(
    reps: int, direct: list[str], shim: list[str], env: dict[str, str]
) -> dict[str, Any]:
    """Wall-time statistics (ms) of direct against shim runs, with the CPU time beside them."""
    cx: list[float] = []
    cy: list[float] = []
    xs, ys = alternate(
        reps,
        lambda: _check(run_timed(direct, env), "direct run", cx),
        lambda: _check(run_timed(shim, env), "shim run", cy),
    )
    stats: dict[str, Any] = pair_stats(xs, ys)
    stats["p90_added"] = round(harness.percentile(ys, 90) - harness.percentile(xs, 90), 4)
    stats["cpu"] = pair_stats(cx, cy)
    return stats


def real(root: Path, claude: Path, reps: int) -> dict[str, Any]:
    sb = Sandbox(root)
    sb.write_login()
    real_dir = claude.parent
    env = sb.env(
        real_dir,
        CLAUDE_CONFIG_DIR=str(sb.cfg),
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
    )
    # The claude.json Claude Code wants, so `auth status` does not stop at onboarding.
    (sb.cfg / ".claude.json").write_text('{"hasCompletedOnboarding": true}')
    out: dict[str, Any] = {"binary": str(claude), "version": None}
    r, w = os.pipe()
    pid = harness.spawn([sb.shim, *HOT_ARGS], env, stdout=w)
    os.close(w)
    with open(r, "rb") as f:
        said = f.read().decode(errors="replace")
    os.waitpid(pid, 0)
    if '"loggedIn": true' not in said:
        raise RuntimeError(f"real `claude auth status` through the shim did not log in: {said!r}")
    if not sb.verdict_cached():
        raise RuntimeError("the shim did not cache its verdict: the hot path was not measured")
    out["version"] = claude_version(claude, env)
    before = sb.creds.stat().st_ctime_ns
    for label, args in (("--version", ["--version"]), ("auth status", HOT_ARGS)):
        out[label] = _time_pair(reps, [str(claude), *args], [sb.shim, *args], env)
    # Had the real binary rewritten the file, every shim run would have re-judged it (slow path).
    out["credentials_rewritten_by_claude"] = sb.creds.stat().st_ctime_ns != before
    return out


def claude_version(claude: Path, env: dict[str, str]) -> str:
    r, w = os.pipe()
    pid = harness.spawn([str(claude), "--version"], env, stdout=w)
    os.close(w)
    with open(r, "rb") as f:
        text = f.read().decode(errors="replace").strip()
    os.waitpid(pid, 0)
    return text


IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def imported_modules(sb: Sandbox, env: dict[str, str], args: list[str]) -> dict[str, Any]:
    """Run the installed shim exactly as its #! line does, plus -X importtime."""
    python = Path(sb.shim).read_text().splitlines()[0][2:].split()[0]
    r, w = os.pipe()
    pid = harness.spawn([python, "-I", "-S", "-X", "importtime", sb.shim, *args], env, stderr=w)
    os.close(w)
    with open(r, "rb") as f:
        text = f.read().decode(errors="replace")
    os.waitpid(pid, 0)
    modules: list[str] = []
    self_us: dict[str, int] = {}
    for line in text.splitlines():
        m = IMPORT_LINE.match(line)
        if m:
            name = m.group(4)
            modules.append(name)
            self_us[name] = int(m.group(1))
    ours = [m for m in modules if m.startswith("claude_wrap")]
    tops = sorted({m.split(".")[0] for m in modules})
    return {
        "args": args,
        "count": len(modules),
        "modules": modules,
        "claude_wrap_modules": ours,
        "claude_wrap_self_ms": round(sum(self_us[m] for m in ours) / 1000, 3),
        "all_imports_self_ms": round(sum(self_us.values()) / 1000, 3),
        "forbidden_imported": [m for m in FORBIDDEN if m in tops],
        "avoided_imported": [m for m in AVOIDED if m in tops],
    }


def wrapper(root: Path, reps: int) -> dict[str, Any]:
    sb = Sandbox(root)
    sb.write_login()
    fake = sb.copy_child("true", "/bin/true")
    env = sb.env(fake)
    direct = [str(fake / "claude"), *HOT_ARGS]
    shim = [sb.shim, *HOT_ARGS]
    run_timed(shim, env)  # judge the file once: the verdict is cached from here on
    if not sb.verdict_cached():
        raise RuntimeError("the shim did not cache its verdict: the hot path was not measured")
    python = Path(sb.shim).read_text().splitlines()[0][2:].split()[0]
    out: dict[str, Any] = {
        "auth status": _time_pair(reps, direct, shim, env),
        "--version": _time_pair(
            reps, [str(fake / "claude"), "--version"], [sb.shim, "--version"], env
        ),
    }
    # For scale: the interpreter alone, started the way the shim starts it, against /bin/true.
    out["bare interpreter"] = _time_pair(reps, direct, [python, "-I", "-S", "-c", "pass"], env)
    out["imports"] = imported_modules(sb, env, HOT_ARGS)
    return out


def growth(root: Path, reps: int, *, quick: bool) -> dict[str, Any]:
    """Every variant (file size, hot or first run after a write; PATH length) runs once per
    round, in an order that rotates each round, beside one direct run: slow drifts of a busy
    machine then hit every variant alike instead of whichever happened to run last."""
    sizes = [1024, 1024 * 1024] if quick else [1024, 16 * 1024, 256 * 1024, 1024 * 1024]
    entries = [10, 1000] if quick else [10, 100, 1000]
    base = Sandbox(root / "path")
    base.write_login()
    fake = base.copy_child("true", "/bin/true")
    direct = [str(fake / "claude"), *HOT_ARGS]
    variants: list[tuple[str, str, list[str], dict[str, str], Path | None]] = []
    for size in sizes:
        sb = Sandbox(root / f"size-{size}")
        sb.write_login(harness.login_doc(pad=size))
        assert sb.creds.stat().st_size == size
        env = sb.env(fake)
        variants.append(("size", str(size), [sb.shim, *HOT_ARGS], env, None))
        variants.append(("size_cold", str(size), [sb.shim, *HOT_ARGS], env, sb.creds))
    for n in entries:
        extra = []
        for i in range(n - 4):  # shim folder, the real one, /usr/bin and /bin make the other 4
            d = root / "pathdirs" / f"d{i:04d}"
            d.mkdir(parents=True, exist_ok=True)
            extra.append(str(d))
        env = base.env(fake, path_extra=extra)
        assert len(env["PATH"].split(":")) == n
        variants.append(("path", str(n), [base.shim, *HOT_ARGS], env, None))
    for _, _, argv, env, _ in variants:
        run_timed(argv, env)  # judge each file once: the verdict is cached from here on
    wall: dict[tuple[str, str], list[float]] = {(g, k): [] for g, k, *_ in variants}
    cpu: dict[tuple[str, str], list[float]] = {(g, k): [] for g, k, *_ in variants}
    for r in range(reps):
        order = [None, *range(len(variants))]
        shift = r % len(order)
        order = order[shift:] + order[:shift]
        times: dict[Any, harness.Exit] = {}
        for idx in order:
            if idx is None:
                times[None] = _ok(run_timed(direct, variants[0][3]), "direct run")
                continue
            _, _, argv, env, touch = variants[idx]
            if touch is not None:
                # Any write changes the file's ctime: the next run re-judges (parses) it.
                os.utime(touch, ns=(time.time_ns(), time.time_ns()))
            times[idx] = _ok(run_timed(argv, env), "shim run")
        for idx, (g, k, *_) in enumerate(variants):
            wall[(g, k)].append(times[idx].ms - times[None].ms)
            cpu[(g, k)].append(times[idx].cpu_ms - times[None].cpu_ms)

    def table(group: str) -> dict[str, Any]:
        return {
            k: {
                "added_wall_ms": round(harness.median(wall[(g, k)]), 3),
                "added_cpu_ms": round(harness.median(cpu[(g, k)]), 3),
                "runs": len(wall[(g, k)]),
            }
            for g, k, *_ in variants
            if g == group
        }

    def spread(t: dict[str, Any]) -> dict[str, Any]:
        keys = list(t)
        first, last = t[keys[0]], t[keys[-1]]
        return {
            "from": keys[0],
            "to": keys[-1],
            "cpu": {
                "added_first_ms": first["added_cpu_ms"],
                "added_last_ms": last["added_cpu_ms"],
                "growth_ms": round(last["added_cpu_ms"] - first["added_cpu_ms"], 3),
            },
            "wall": {
                "added_first_ms": first["added_wall_ms"],
                "added_last_ms": last["added_wall_ms"],
                "growth_ms": round(last["added_wall_ms"] - first["added_wall_ms"], 3),
            },
        }

    sizes_t, cold_t, path_t = table("size"), table("size_cold"), table("path")
    path_growth = spread(path_t)
    # How it grows: CPU per PATH folder searched, from the two ends of the range.
    path_growth["cpu_us_per_entry"] = round(
        path_growth["cpu"]["growth_ms"] * 1000 / (entries[-1] - entries[0]), 3
    )
    return {
        "credentials_size": sizes_t,
        "credentials_size_cold": cold_t,
        "path_entries": path_t,
        "size_growth": spread(sizes_t),
        "size_growth_cold": spread(cold_t),
        "path_growth": path_growth,
    }


def _ok(exit_: harness.Exit, what: str) -> harness.Exit:
    if exit_.status != 0:
        raise RuntimeError(f"{what} exited {exit_.status}")
    return exit_


def watch_cost(root: Path, reps: int) -> dict[str, Any]:
    """What watching costs a healthy headless run: the shim in front of an instantly exiting
    binary, `auth status` with stdout a pipe (so the shim stays as the relay), watched against
    CLAUDE_WRAP_WATCH=0 (the shim execs), the two alternating. The figure is the CPU time the
    watch adds (user + system, the shim and its child), as a difference and a ratio."""
    sb = Sandbox(root)
    sb.write_login()
    fake = sb.copy_child("true", "/bin/true")
    env = sb.env(fake)
    shim = [sb.shim, *HOT_ARGS]
    unwatched_env = {**env, "CLAUDE_WRAP_WATCH": "0"}
    watched_env = {**env, "CLAUDE_WRAP_WATCH": "1"}

    def piped(run_env: dict[str, str], cpu: list[float], what: str) -> float:
        r, w = os.pipe()
        try:
            exit_ = run_timed(shim, run_env, stdout=w)
        finally:
            os.close(w)
            os.close(r)
        return _check(exit_, what, cpu)

    run_timed(shim, env)  # judge the file once: the verdict is cached from here on
    if not sb.verdict_cached():
        raise RuntimeError("the shim did not cache its verdict: the hot path was not measured")
    cx: list[float] = []
    cy: list[float] = []
    xs, ys = alternate(
        reps,
        lambda: piped(unwatched_env, cx, "unwatched run"),
        lambda: piped(watched_env, cy, "watched run"),
    )
    return {
        "cpu": pair_stats(cx, cy),
        "wall": pair_stats(xs, ys),
        "imports": imported_modules(sb, watched_env, HOT_ARGS),
    }

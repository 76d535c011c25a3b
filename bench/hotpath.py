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
    out["version"] = harness_version(claude, env)
    for label, args in (("--version", ["--version"]), ("auth status", HOT_ARGS)):
        out[label] = _time_pair(reps, [str(claude), *args], [sb.shim, *args], env)
    return out


def harness_version(claude: Path, env: dict[str, str]) -> str:
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


def _cold_pair(
    reps: int, direct: list[str], shim: list[str], env: dict[str, str], creds: Path
) -> dict[str, Any]:
    """The first run after the file was written: the verdict cache misses, the file is parsed."""
    cx: list[float] = []
    cy: list[float] = []

    def cold() -> float:
        # Any write changes the file's ctime: the next run re-judges (parses) it.
        os.utime(creds, ns=(time.time_ns(), time.time_ns()))
        return _check(run_timed(shim, env), "shim run", cy)

    xs, ys = alternate(reps, lambda: _check(run_timed(direct, env), "direct run", cx), cold)
    stats: dict[str, Any] = pair_stats(xs, ys)
    stats["cpu"] = pair_stats(cx, cy)
    return stats


def growth(root: Path, reps: int, *, quick: bool) -> dict[str, Any]:
    sb = Sandbox(root)
    fake = sb.copy_child("true", "/bin/true")
    sizes = [1024, 1024 * 1024] if quick else [1024, 16 * 1024, 256 * 1024, 1024 * 1024]
    entries = [10, 1000] if quick else [10, 100, 1000]
    cold_reps = max(2, reps // 3)
    env = sb.env(fake)
    direct = [str(fake / "claude"), *HOT_ARGS]
    shim = [sb.shim, *HOT_ARGS]
    by_size: dict[str, Any] = {}
    for size in sizes:
        sb.write_login(harness.login_doc(pad=size))
        actual = sb.creds.stat().st_size
        run_timed(shim, env)  # warm the verdict cache
        hot = _time_pair(reps, direct, shim, env)
        cold = _cold_pair(cold_reps, direct, shim, env, sb.creds)
        by_size[str(actual)] = {"hot": hot, "cold": cold}
    sb.write_login()
    run_timed(shim, env)
    dirs = root / "pathdirs"
    by_path: dict[str, Any] = {}
    for n in entries:
        extra = []
        for i in range(n - 4):  # shim folder, the real one, /usr/bin and /bin make the other 4
            d = dirs / f"d{i:04d}"
            d.mkdir(parents=True, exist_ok=True)
            extra.append(str(d))
        env_n = sb.env(fake, path_extra=extra)
        assert len(env_n["PATH"].split(":")) == n
        run_timed(shim, env_n)
        by_path[str(n)] = {"hot": _time_pair(reps, direct, shim, env_n)}

    def spread(table: dict[str, Any], key: str) -> dict[str, Any]:
        """Added time (median of pairs) at the smallest and the largest size, wall and CPU."""
        keys = list(table)
        first, last = table[keys[0]][key], table[keys[-1]][key]
        out: dict[str, Any] = {"from": keys[0], "to": keys[-1]}
        for kind, a, b in (("wall", first, last), ("cpu", first["cpu"], last["cpu"])):
            out[kind] = {
                "added_first_ms": a["added_paired_median"],
                "added_last_ms": b["added_paired_median"],
                "growth_ms": round(b["added_paired_median"] - a["added_paired_median"], 4),
            }
        return out

    return {
        "credentials_size": by_size,
        "path_entries": by_path,
        "size_growth": spread(by_size, "hot"),
        "size_growth_cold": spread(by_size, "cold"),
        "path_growth": spread(by_path, "hot"),
    }

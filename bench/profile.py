"""Profiles (pyinstrument) of where the shim's own time goes, to explain the figures.

A healthy run lasts ~15 ms, most of it the interpreter starting, which no in-process profiler
sees: -X importtime (in `wrapper`) and the bare interpreter's time cover that. What pyinstrument
shows is the rest:
- hot: the shim's logic on a healthy login (find the binary, judge the login from its cache,
  build the child's environment), looped in one process: microseconds per run.
- waiter: a shim whose login expired while another process holds the refresh lock (one of the
  31 waiters of the contention benchmark): what it spends before and while waiting.
The profiled process runs with `site` (pyinstrument lives in site-packages); the code profiled is
the installed shim's own modules.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import REPO, Sandbox

HOT = """
import json, os, sys, time
sys.path.insert(0, {repo!r})
from pyinstrument import Profiler
from claude_wrap.config.settings import Settings
from claude_wrap import shim
args, me, n = ["auth", "status"], {shim!r}, {n}
def once():
    settings = Settings.from_process()
    real = shim.find_real(settings, me)
    if shim.uses_stored_login(args, settings):
        shim.preflight(settings)
    child = settings.unnested().child_env()
once()
t = time.perf_counter()
for _ in range(n):
    once()
per_run_us = (time.perf_counter() - t) / n * 1e6
p = Profiler(interval=0.0001)
p.start()
for _ in range(n):
    once()
p.stop()
print(json.dumps({{"per_run_us": per_run_us, "runs": n}}))
print(p.output_text(unicode=False, color=False))
"""

WAITER = """
import json, os, sys, time
sys.path.insert(0, {repo!r})
from pyinstrument import Profiler
p = Profiler(interval=0.0005)
p.start()
t = time.perf_counter()
from claude_wrap.config.settings import Settings
from claude_wrap import shim
shim.preflight(Settings.from_process())
elapsed_ms = (time.perf_counter() - t) * 1000
p.stop()
print(json.dumps({{"elapsed_ms": elapsed_ms}}))
print(p.output_text(unicode=False, color=False))
"""


def available() -> bool:
    done = subprocess.run(
        [harness.wrap_python(), "-c", "import pyinstrument"], capture_output=True, check=False
    )
    return done.returncode == 0


def _run(code: str, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [harness.wrap_python(), "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"profiled process failed: {done.stderr.strip()[-2000:]}")
    head, _, text = done.stdout.partition("\n")
    return json.loads(head), text


def profiles(root: Path, out_dir: Path, *, quick: bool) -> dict[str, Any]:
    sb = Sandbox(root)
    sb.write_login()
    fake = sb.copy_child("true", "/bin/true")
    env = sb.env(fake)
    harness.run_timed([sb.shim, "auth", "status"], env)  # the verdict cache, as on a hot run
    figures, hot_text = _run(
        HOT.format(repo=str(REPO), shim=sb.shim, n=200 if quick else 2000), env
    )
    result: dict[str, Any] = {"hot": figures}

    # The waiter: expired login, our refresh flock held here; after a while "the other process"
    # (this runner) writes a fresh login and lets go, as the refreshing shim would.
    sb.write_login(harness.login_doc(expires_in_s=-60))
    fd = os.open(sb.cfg, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    hold_s = 0.5

    def refresh_then_release() -> None:
        time.sleep(hold_s)
        doc = harness.login_doc()
        doc["claudeAiOauth"]["accessToken"] += "-refreshed-elsewhere"
        tmp = sb.creds.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.chmod(0o600)
        tmp.replace(sb.creds)
        os.close(fd)

    other = threading.Thread(target=refresh_then_release)
    other.start()
    try:
        figures, waiter_text = _run(
            WAITER.format(repo=str(REPO)), {**env, "CLAUDE_WRAP_TOKEN_URL": "http://127.0.0.1:9/"}
        )
    finally:
        other.join()
    result["waiter"] = {**figures, "lock_held_ms": hold_s * 1000}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("hot", hot_text), ("waiter", waiter_text)):
        path = out_dir / f"profile-{name}.txt"
        path.write_text(text)
        result[name]["report"] = str(path)
        result[name]["top"] = _top_lines(text)
    result["waiter"]["httpx_import_ms"] = round(module_seconds(waiter_text, "httpx/__init__") * 1e3)
    result["waiter"]["loguru_import_ms"] = round(
        module_seconds(waiter_text, "loguru/__init__") * 1e3
    )
    return result


def module_seconds(text: str, where: str) -> float:
    """Seconds pyinstrument put on the first frame whose location contains `where`."""
    for line in text.splitlines():
        if where in line:
            words = line.replace("|", " ").replace("`-", " ").replace("|-", " ").split()
            for word in words:
                try:
                    return float(word)
                except ValueError:
                    continue
    return 0.0


def _top_lines(text: str, limit: int = 25) -> list[str]:
    """The profile's call tree, without pyinstrument's banner."""
    lines = [line.rstrip() for line in text.splitlines()]
    body = [line for line in lines if line.strip() and not line.lstrip().startswith(("_ ", "/"))]
    start = next((i for i, line in enumerate(body) if line[:1].isdigit()), 0)
    return body[start : start + limit]

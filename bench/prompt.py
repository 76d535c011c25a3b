"""`claude-wrap status --short`, as a shell prompt runs it before every command line: against a
trivial command (/bin/true) and, for scale, the bare interpreter, on a healthy login whose end
is near (the verdict cache answers: no JSON parse, no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import Sandbox, alternate, pair_stats, run_timed

DAY_MS = 86_400_000


def _ok(exit_: harness.Exit, what: str) -> float:
    if exit_.status != 0:
        raise RuntimeError(f"{what} exited {exit_.status}")
    return exit_.ms


def short_status(root: Path, reps: int) -> dict[str, Any]:
    sb = Sandbox(root)
    doc = harness.login_doc()
    doc["claudeAiOauth"]["refreshTokenExpiresAt"] = harness.now_ms() + 2 * DAY_MS
    sb.write_login(doc)
    env = sb.env("/bin")
    python = harness.wrap_python()
    short = [python, "-m", "claude_wrap", "status", "--short"]
    run_timed(short, env)  # judge the file once: the verdict is cached from here on
    if not sb.verdict_cached():
        raise RuntimeError("status --short did not cache its verdict: the cache was not measured")
    out: dict[str, Any] = {}
    for label, base in (("/bin/true", ["/bin/true"]), ("python -c pass", [python, "-c", "pass"])):
        def trivial(base: list[str] = base) -> float:
            return _ok(run_timed(base, env), " ".join(base))

        xs, ys = alternate(reps, trivial, lambda: _ok(run_timed(short, env), "status --short"))
        out[label] = pair_stats(xs, ys)
    return out

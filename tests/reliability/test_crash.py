"""Crash safety: SIGKILL `claude-wrap refresh` or the shim at random moments of a refresh.

After every kill the credentials file parses and holds either the old login or the new one whole,
and a following run succeeds: the lock folders and temp files a killed run leaves never block it.
Knobs: CLAUDE_WRAP_CRASH_ITERATIONS (default 200), CLAUDE_WRAP_CRASH_SEED.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

from claude_wrap_testing.tokenserver import TokenServer
from tests.conftest import WRAP
from tests.reliability.conftest import FIGURES, RSandbox, count_requests, watch
from tests.reliability.helpers import classify, delayed_ok, expired, lock_dirs, temp_files

ITERATIONS = int(os.environ.get("CLAUDE_WRAP_CRASH_ITERATIONS") or 200)
SEED = int(os.environ.get("CLAUDE_WRAP_CRASH_SEED") or 20261128)
LANES = 2  # two sandboxes side by side: half the wall time on two cores
# Kills land anywhere in [0, KILL_SPAN x the duration of a whole refresh run]; that duration is
# learnt from the follow-up runs, so that on a loaded machine the kills do not all land during
# the interpreter's start. 0.6 s is the first guess (a refresh takes ~0.35 s on a quiet machine).
KILL_SPAN = 1.2
FIRST_GUESS_S = 0.6
SERVER_DELAY_S = 0.15


def _lane(lane: int, count: int, root: Path, tally: collections.Counter[str]) -> None:
    rng = random.Random(f"{SEED}-{lane}")
    with TokenServer(tag=f"lane{lane}") as server:
        watch().servers.append(server)
        server.default = delayed_ok(random.Random(f"{SEED}-{lane}-server"), SERVER_DELAY_S)
        sandbox = RSandbox(root, server)
        # A killed claude-wrap's lock folders are taken over at once (lock.py's holder records);
        # only a kill between mkdir and that record costs the 10 s stale time, which the
        # default 15 s wait covers. test_locks proves the takeover with a 2 s wait.
        sandbox.env["CLAUDE_WRAP_LOCK_TIMEOUT"] = "15"
        shim_env = sandbox.shim_env()
        whole_run_s = FIRST_GUESS_S
        for i in range(count):
            old = expired(f"crash-{lane}-{i}")
            watch().secrets.update(
                (old["claudeAiOauth"]["accessToken"], old["claudeAiOauth"]["refreshToken"])
            )
            sandbox.write(old)
            victim = rng.choice(("refresh", "shim"))
            kill_at = rng.uniform(0.0, KILL_SPAN * whole_run_s)
            argv = [*WRAP, "refresh"] if victim == "refresh" else [str(sandbox.shim), "hi"]
            env = sandbox.env if victim == "refresh" else shim_env
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=sandbox.root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(kill_at)
            killed = proc.poll() is None
            if killed:
                proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
            sandbox.keep(f"{victim} (killed={killed})", err)
            where = f"lane {lane} iteration {i} ({victim}, kill at {kill_at:.3f} s)"

            state = classify(sandbox.creds.read_bytes(), old, server)
            left_locks = lock_dirs(sandbox.cfg)
            left_temps = temp_files(sandbox.cfg)
            for tmp in left_temps:
                assert tmp.stat().st_mode & 0o777 == 0o600, f"{where}: {tmp} is not 0600"
            if not killed:
                assert proc.returncode == 0, f"{where}: {err!r}"
                tally["runs that finished before the kill"] += 1
            else:
                tally["kills"] += 1
                tally[f"kills that left the {state} login"] += 1
                tally["kills that left lock folders"] += bool(left_locks)
                tally["kills that left a temp file"] += bool(left_temps)

            # The next run must succeed whatever the killed one left behind.
            started = time.monotonic()
            if rng.random() < 0.5:
                after = sandbox.wrap("refresh")
                assert after.returncode == 0, (
                    f"{where}: next refresh failed: {after.stderr} {_debug(sandbox)}"
                )
            else:
                runs = len(sandbox.runs())
                after2 = sandbox.claude("hi", env=shim_env)
                assert after2.returncode == 0, f"{where}: next claude failed: {after2.stderr!r}"
                assert len(sandbox.runs()) == runs + 1
                assert classify(sandbox.creds.read_bytes(), old, server) == "new", (
                    f"{where}: next claude did not refresh: {after2.stderr!r}"
                )
            if state == "old":  # it refreshed: a whole run, to scale the next kill by
                whole_run_s = 0.7 * whole_run_s + 0.3 * min(time.monotonic() - started, 4.0)
            assert classify(sandbox.creds.read_bytes(), old, server) == "new", where
            assert sandbox.oauth()["accessToken"] != old["claudeAiOauth"]["accessToken"]
            if state == "old":
                # The next run refreshed, so it also swept the killed run's temp file away.
                assert temp_files(sandbox.cfg) == [], where
            tally["iterations"] += 1
        tally["token requests"] += count_requests(server)
        log = sandbox.log.read_text()
        tally["lock folders taken over as abandoned"] += log.count("took over the abandoned")
        tally["lock folders taken over as stale"] += log.count("took over the stale")


def test_sigkill_at_random_moments_never_loses_or_mixes_the_login(tmp_path: Path) -> None:
    tally: collections.Counter[str] = collections.Counter()
    errors: list[BaseException] = []
    per_lane = [ITERATIONS // LANES + (lane < ITERATIONS % LANES) for lane in range(LANES)]

    def run(lane: int) -> None:
        try:
            root = tmp_path / f"lane{lane}"
            root.mkdir()
            _lane(lane, per_lane[lane], root, tally)
        except BaseException as exc:  # handed to the main thread, which fails the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lane,)) for lane in range(LANES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    assert tally["iterations"] == ITERATIONS
    assert tally["kills"] > 0
    for key, value in tally.items():
        FIGURES[f"crash: {key}"] += value
    FIGURES["crash: seed"] = SEED


def _debug(sandbox: RSandbox) -> str:
    out = []
    for p in [sandbox.cfg / ".oauth_refresh.lock", sandbox.home / ".claude.lock"]:
        if p.exists():
            st = p.stat()
            out.append(f"{p.name} ino={st.st_ino} mtime={st.st_mtime_ns}")
    recs = sandbox.state / "claude-wrap" / "locks"
    if recs.exists():
        out += [f"{r.name}: {r.read_text()!r}" for r in recs.iterdir()]
    return "; ".join(out)

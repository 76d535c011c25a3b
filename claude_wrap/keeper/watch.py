"""`claude-wrap keep --watch`: the keeper as a long-running user service.

Runs that bypass the shim (editors' bundled binaries, the real `claude` run directly) were
protected only by the keeper timer, every 5 minutes: in a 15-minute soak with the hostile
refresher, 5 of 141 direct runs met a stripped file (issue 14). This loop is told by the kernel
of each change to the credentials files (filewatch: inotify, kqueue) and repairs it at once,
locally when the token is good (restore.py), and it refreshes ahead of expiry: it sleeps until
the next login is due, or a file changes, whichever comes first. While idle it blocks in the
kernel: no polling loop where the kernel can tell (the poll is the fallback elsewhere).

A pid file in the state folder says it runs (`doctor` reads it); SIGTERM and SIGINT end it
cleanly, between repairs.
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

from claude_wrap import console
from claude_wrap.config import fspath
from claude_wrap.errors import EXIT_OK, Interrupted, WrapError
from claude_wrap.judging import login
from claude_wrap.refresh import refresher
from claude_wrap.storage import backends
from claude_wrap.system import processes
from claude_wrap.watch import filewatch

if TYPE_CHECKING:
    from collections.abc import Callable

    from claude_wrap.config.settings import Settings
    from claude_wrap.system.configs import ConfigDir

RETRY_S = 60.0  # after a failed refresh (the network is down): try again this much later
IDLE_S = 3600.0  # with no login due and no file to watch (the Keychain): look once an hour


def pid_file(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "keeper-watch.pid")


def running(settings: Settings) -> int | None:
    """The pid of a `keep --watch` that runs now, else None."""
    try:
        with open(pid_file(settings), encoding="ascii") as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0 or not processes.pid_alive(pid):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"keep" not in f.read():
                return None  # the pid was reused by another program
    except OSError:
        pass  # no /proc (macOS): the pid alone
    return pid


def _write_pid(settings: Settings) -> None:
    path = pid_file(settings)
    fspath.make_private_dirs(os.path.dirname(path))
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _clear_pid(settings: Settings) -> None:
    try:
        with open(pid_file(settings), encoding="ascii") as f:
            if f.read().strip() == str(os.getpid()):
                os.unlink(pid_file(settings))
    except OSError:
        pass


def due_in(folder: ConfigDir, now_ms: int) -> float | None:
    """Seconds until this folder's login is due for a refresh (0: now), None: never."""
    try:
        settings = folder.settings
        window_ms = settings.refresh_window_ms
        _, verdict = refresher.assess(backends.open_storage(settings), window_ms, now_ms)
    except WrapError:
        return RETRY_S
    if verdict.expires_at is None or verdict.state in (login.State.MISSING, login.State.MALFORMED):
        return None
    return max(0.0, (verdict.expires_at - window_ms - now_ms) / 1000)


def watch(
    settings: Settings,
    found: list[ConfigDir],
    keep_one: Callable[[ConfigDir], int],
    rescan: Callable[[], list[ConfigDir]] | None = None,
) -> int:
    """Keep every folder's login, on each change and ahead of each expiry, until told to stop.

    `rescan` (keep --watch --all) finds the folders again every settings.rescan_period: a login
    made in a folder that did not exist when we started (`CLAUDE_CONFIG_DIR=~/.claude-work
    claude /login`), or in the current one made since, is watched and kept from then on,
    without a restart of the service."""
    kind = settings.watch_kind
    period = settings.rescan_period if rescan is not None else 0.0
    files = _watched(found)
    watcher = _open(files, kind)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        watcher.interrupt()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    _write_pid(settings)
    _say_watching(files, watcher)
    failed_at: dict[str, float] = {}
    try:
        todo = list(found)
        while not stopping:
            if not _keep(todo, keep_one, failed_at) or stopping:
                break
            console.flush()
            timeout = _next_wait(found, failed_at)
            changed = watcher.wait(min(timeout, period) if period else timeout)
            if stopping:
                break
            todo = _to_keep(found, changed, failed_at)
            if rescan is None:
                continue
            fresh = rescan()
            known = {f.path for f in found}
            todo += [f for f in fresh if f.path not in known]
            found = fresh
            now_watched = _watched(found)
            if now_watched != files:
                files = now_watched
                watcher.close()
                watcher = _open(files, kind)
                if stopping:  # the signal came while the old one was being replaced
                    break
                _say_watching(files, watcher)
                todo = list(found)  # a change between the two watchers went unseen: look at all
    finally:
        _clear_pid(settings)
        watcher.close()
    return EXIT_OK


def _keep(
    todo: list[ConfigDir], keep_one: Callable[[ConfigDir], int], failed_at: dict[str, float]
) -> bool:
    """Keep each folder's login, noting when each failed (tried again after RETRY_S); False
    when a stop signal came meanwhile."""
    for folder in todo:
        try:
            kept = keep_one(folder)
        except Interrupted:
            # SIGTERM or SIGHUP came during a refresh, which finished first (the new
            # login is stored: refresher._signals_held): a clean stop all the same.
            return False
        if kept != EXIT_OK:
            failed_at[folder.path] = time.monotonic()
        else:
            failed_at.pop(folder.path, None)
    return True


def _to_keep(
    found: list[ConfigDir], changed: set[str], failed_at: dict[str, float]
) -> list[ConfigDir]:
    """The folders to keep after a wait: their file changed, their login is due, or (a wait
    that saw no change) their last keep failed."""
    now = int(time.time() * 1000)
    return [
        f for f in found
        if f.settings.credentials_file in changed
        or (not changed and f.path in failed_at)
        or due_in(f, now) == 0
    ]


def _watched(found: list[ConfigDir]) -> list[str]:
    """The credentials files to watch, in order: those of the folders that exist (none for the
    Keychain)."""
    files: list[str] = []
    for folder in found:
        for cred in backends.open_storage(folder.settings).watched_files():
            if os.path.isdir(os.path.dirname(cred)) and cred not in files:
                files.append(cred)
    return files


def _open(files: list[str], kind: str) -> filewatch.Watcher:
    try:
        return filewatch.open_watcher(files, 0.5, kind)
    except OSError:
        return filewatch.Watcher(files, 0.5)


def _say_watching(files: list[str], watcher: filewatch.Watcher) -> None:
    console.line(f"claude-wrap keep --watch: watching {len(files)} credentials file(s) "
                 f"({watcher.kind}); pid {os.getpid()}")


def _next_wait(found: list[ConfigDir], failed_at: dict[str, float]) -> float:
    now = int(time.time() * 1000)
    waits = [IDLE_S]
    for folder in found:
        due = due_in(folder, now)
        if due is not None:
            waits.append(due)
        if folder.path in failed_at:
            waits.append(max(0.0, RETRY_S - (time.monotonic() - failed_at[folder.path])))
    # Never a busy loop: a login still due right after it was kept (a token server that hands
    # out tokens shorter-lived than the refresh window) waits RETRY_S, as a failed one does.
    wait = min(waits)
    return wait if wait > 0 else RETRY_S

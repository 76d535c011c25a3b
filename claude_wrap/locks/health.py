"""doctor's check of the lock folders (`claude-wrap doctor`, and its `--fix`): each judged by
lock.py's own rules, a stale one removed only under our flock, and the leftovers of a killed
claude-wrap beside them."""

from __future__ import annotations

import os
import stat
import time
from typing import TYPE_CHECKING

from claude_wrap.findings import Finding, Level
from claude_wrap.locks import lock
from claude_wrap.locks.flock import FolderFlock

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings


def check_locks(cfg: str, settings: Settings, *, fix: bool) -> list[Finding]:
    """Each lock folder judged by lock.py's own rules (its stale times, the clock-change margin,
    our holder records and Claude Code's owner record), so --fix never removes a lock a refresh
    respects."""
    name = "locks"
    found = []
    for held in lock.config_locks(cfg, settings.lock_records):
        path = held.path
        found += _check_leftovers(path, fix=fix)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            found.append(Finding(name, Level.FAIL, f"{path} cannot be examined: {exc.strerror}"))
            continue
        if not stat.S_ISDIR(st.st_mode):
            found.append(
                Finding(
                    name,
                    Level.FAIL,
                    f"{path} is not a folder, so no refresh can ever take this lock",
                    f"remove it: rm {path}",
                )
            )
            continue
        age = time.time() - st.st_mtime
        verdict = held.judge()
        if not verdict:
            found.append(
                Finding(name, Level.OK, f"{path} is held by a running refresh ({age:.0f} s old)")
            )
            continue
        if verdict == lock.TakeOver.ABANDONED:
            why = "left by a claude-wrap process that is gone"
        elif verdict == lock.TakeOver.HOLDER_GONE:
            why = "its owner record names a Claude Code process that is gone"
        elif age < 0:
            why = f"its mtime is {-age:.0f} s in the future (the clock moved)"
        else:
            why = f"untouched for {age:.0f} s: its holder is gone"
        if fix:
            outcome = remove_stale_lock(cfg, held)
            level = Level.OK if outcome.startswith("removed") else Level.FAIL
            found.append(Finding(name, level, f"{path}: {why}; {outcome}"))
        else:
            found.append(
                Finding(
                    name,
                    Level.FAIL,
                    f"stale lock {path}: {why}; it can block refreshes",
                    "`claude-wrap doctor --fix` removes it safely",
                    path=path,
                )
            )
    if not found:
        found.append(Finding(name, Level.OK, f"no lock folders in or beside {cfg}"))
    return found


def _check_leftovers(lock_path: str, *, fix: bool) -> list[Finding]:
    """Folders a killed claude-wrap left while taking `lock_path` (lock.leftover_folders)."""
    leftovers = lock.leftover_folders(lock_path)
    if not leftovers:
        return []
    if fix:
        removed = lock.remove_leftover_folders(lock_path)
        kept = len(leftovers) - removed
        tail = f"; kept {kept} (too young, its process alive, or not empty)" if kept else ""
        said = f"removed {removed} leftover folder(s) of {lock_path}{tail}"
        return [Finding("locks", Level.OK, said)]
    return [
        Finding(
            "locks",
            Level.WARN,
            f"{len(leftovers)} leftover folder(s) of a killed claude-wrap beside {lock_path}"
            f" ({os.path.basename(leftovers[0][0])}...); they hold no lock",
            "`claude-wrap doctor --fix` removes those of processes no longer running",
        )
    ]


def remove_stale_lock(cfg: str, held: lock.DirLock) -> str:
    """Remove a lock folder whose holder is gone, holding our flock so that no claude-wrap
    refresh is between the judgement and its own mkdir; lock.py judges again and removes it."""
    try:
        flock = FolderFlock(cfg)  # the same flock our refreshes take
    except OSError as exc:
        return f"not removed: cannot open {cfg}: {exc.strerror}"
    try:
        if not flock.try_acquire():
            return "not removed: a claude-wrap refresh is running; try again in a moment"
        if not os.path.lexists(held.path):
            return "removed (it had just gone)"
        try:
            why = held.clear()
        except OSError as exc:
            return f"not removed: {exc.strerror}; remove it by hand if no claude is running"
        if not why:
            return "not removed: it was taken again meanwhile"
        return "removed (--fix)"
    finally:
        flock.release()

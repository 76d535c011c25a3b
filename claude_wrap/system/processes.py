"""Other processes on this machine, as far as the login's safety needs to know them: whether a
pid still runs (a lock's holder, a temp file's writer), whether another process has a file open
(a writer half-way through the credentials file), and the Claude Code processes running and
which login each one uses (doctor lists them).

Which folder a process uses is derived from its environment by settings.py's own rules
(CLAUDE_CONFIG_DIR NFC-normalised, CLAUDE_SECURESTORAGE_CONFIG_DIR for the credentials file
alone), so doctor names the folder Claude Code itself reads. psutil is imported only to list.
"""

from __future__ import annotations

import os

from claude_wrap.config.settings import Settings
from claude_wrap.findings import Finding, Level

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

UNREADABLE = "unknown (not readable)"


def is_claude(name: str, cmdline: list[str]) -> bool:
    """A Claude Code process: the native binary, or node running the npm package's cli.js."""
    if name in ("claude", "claude.exe"):
        return True
    for arg in cmdline[:2]:
        base = os.path.basename(arg)
        if base in ("claude", "claude.exe"):
            return True
        if base == "cli.js" and "claude-code" in arg:
            return True
    return False


def login_of(proc_env: Mapping[str, str], settings: Settings) -> tuple[str, str]:
    """(config folder, credentials file) of a process with environment `proc_env`. A process
    started without HOME (by an editor, say) is taken to have ours, from `settings`."""
    seen = Settings(proc_env).with_home(settings.home)
    return seen.config_dir, seen.credentials_file


def running_claudes(settings: Settings) -> list[dict[str, object]]:
    """One row per running Claude Code process: its pid, config folder and credentials file
    (UNREADABLE for another user's process, whose environment we may not read)."""
    import psutil  # noqa: PLC0415 - doctor only

    rows: list[dict[str, object]] = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            if not is_claude(proc.info["name"] or "", proc.info["cmdline"] or []):
                continue
            try:
                cfg, creds = login_of(proc.environ(), settings)
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cfg = creds = UNREADABLE
            rows.append({"pid": proc.info["pid"], "config_dir": cfg, "credentials": creds})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return rows

def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_elsewhere(path: str) -> bool | None:
    """Whether another process has this file open now (a writer may be half-way through it);
    None where that cannot be known (no /proc). Reads /proc/*/fd of the processes we may see:
    a few milliseconds, and only ever on the rare path of a file that does not parse."""
    try:
        st = os.stat(path)
        pids = os.listdir("/proc")
    except OSError:
        return None
    if not os.path.isdir("/proc/self/fd"):
        return None
    me = str(os.getpid())
    for pid in pids:
        if not pid.isdigit() or pid == me:
            continue
        folder = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(folder)
        except OSError:
            continue  # gone, or not ours to see
        for fd in fds:
            try:
                other = os.stat(f"{folder}/{fd}")
            except OSError:
                continue
            if other.st_ino == st.st_ino and other.st_dev == st.st_dev:
                return True
    return False


def check_processes(settings: Settings) -> Finding:
    rows = running_claudes(settings)
    if not rows:
        return Finding("processes", Level.OK, "no Claude Code process is running", processes=[])
    listed = ", ".join(f"{r['pid']} ({_where(r)})" for r in rows)
    return Finding("processes", Level.OK, f"Claude Code running: {listed}", processes=rows)


def _where(row: dict[str, object]) -> str:
    cfg, creds = str(row["config_dir"]), str(row["credentials"])
    if cfg == UNREADABLE or os.path.dirname(creds) == cfg:
        return cfg
    return f"{cfg}, its login in {creds}"  # CLAUDE_SECURESTORAGE_CONFIG_DIR moved the file

"""Claude Code's owner record of its refresh lock, `<config dir>/.oauth_refresh.lock.owner`.

Claude Code 2.1.332 (docs/protocol.md section 3, read in its bundled code) writes, right after
taking `.oauth_refresh.lock` and the legacy lock, one JSON line naming the holder:
`{"pid":…,"procStart":"…","pidDomain":"linux:<machine-id>:pid:[…]","pidSpace":"<host>#pid:[…]",
"lockBirthtimeMs":…,"legacyLockBirthtimeMs":…}` (temp file + rename), and removes it before it
releases; 2.1.337 appends `"parentPid":<ppid>` as the last key (section 3), which its reader,
like 2.1.332's, ignores. A contender that finds the lock held takes it over at once when the
record proves the holder gone; without a record it waits out the 60 s stale time. We read the
record by the same rules and write the newest release's record (every release of the matrix
honours it: tests/e2e/test_lock_interop.py), so that either side takes over at once what the
other left when it was killed.

Linux only: the birth time of a folder needs statx, and the pid domain needs /proc and a machine
id. Elsewhere no record is written or trusted, and the stale time stands.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import sys

from claude_wrap.config.protocol import OWNER_RECORD_MAX_BYTES, OWNER_RECORD_NAME
from claude_wrap.storage import privatefile

PID_MAX = 2147483647
MIN_PIDS = 16  # fewer visible pids than this: a pid view that cannot tell "gone" (a sandbox)
BIRTH_TOLERANCE_MS = 0.001  # a folder made again differs by far more than a rounding


def record_path(cfg: str) -> str:
    return os.path.join(cfg, OWNER_RECORD_NAME)


def birth_ms(path: str) -> float | None:
    """The folder's birth time in ms as Claude Code's runtime computes it, None when unknown."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # noqa: PLC0415 - only around a refresh

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        statx = libc.statx
    except (OSError, AttributeError):
        return None
    buf = ctypes.create_string_buffer(256)
    at_fdcwd, statx_btime = -100, 0x800
    if statx(at_fdcwd, os.fsencode(path), 0, statx_btime, buf) != 0:
        return None
    (mask,) = struct.unpack_from("<I", buf.raw, 0)
    sec, nsec = struct.unpack_from("<qI", buf.raw, 80)  # stx_btime
    if not mask & statx_btime:
        return None
    value = sec * 1000 + nsec / 1e6  # node's msFromTimeSpec
    return value if value > 0 else None


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces): field 3 onwards."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split(" ")


def proc_start(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (the start time in clock ticks), as Claude Code records it."""
    fields = _stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _proc_state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _pid_ns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _machine_id() -> str | None:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                text = f.read(200).strip()
        except OSError:
            continue
        if text:
            return text
    return None


def pid_domain() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    machine, ns = _machine_id(), _pid_ns()
    if machine is None or not ns:
        return None
    return f"linux:{machine}:{ns}"


def pid_space() -> str:
    ns = _pid_ns()
    return os.uname().nodename + (f"#{ns}" if ns else "")


def pid_view_trusted() -> bool:
    """/proc shows this process as itself and enough others to tell a dead pid from a hidden one."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return False
        return sum(1 for name in os.listdir("/proc") if name.isdigit()) >= MIN_PIDS
    except OSError:
        return False


def _number(value: float) -> str:
    # JSON.stringify's form: integral values without ".0", others as the shortest repr.
    return str(int(value)) if value == math.floor(value) else repr(value)


def render(lock_birth: float, legacy_birth: float | None) -> str | None:
    """Our own record, byte for byte in the newest Claude Code's key order and number form."""
    domain = pid_domain()
    if domain is None:
        return None
    parts = [f'"pid":{os.getpid()}']
    start = proc_start(os.getpid())
    if start is not None:
        parts.append(f'"procStart":{json.dumps(start)}')
    parts.append(f'"pidDomain":{json.dumps(domain)}')
    parts.append(f'"pidSpace":{json.dumps(pid_space())}')
    parts.append(f'"lockBirthtimeMs":{_number(lock_birth)}')
    if legacy_birth is not None:
        parts.append(f'"legacyLockBirthtimeMs":{_number(legacy_birth)}')
    parts.append(f'"parentPid":{os.getppid()}')  # 2.1.337's last key
    return "{" + ",".join(parts) + "}"


def write(cfg: str, lock_birth: float, legacy_birth: float | None) -> bool:
    """Write our record (temp file + rename, as Claude Code does); False when none can be."""
    text = render(lock_birth, legacy_birth)
    if text is None:
        return False
    return privatefile.replace(record_path(cfg), text.encode())


def read(cfg: str) -> dict[str, object] | None:
    """The record when it parses and has Claude Code's schema, else None (as if absent)."""
    try:
        with open(record_path(cfg), "rb") as f:
            data = f.read(OWNER_RECORD_MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > OWNER_RECORD_MAX_BYTES:
        return None
    try:
        rec = json.loads(data)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    pid, start = rec.get("pid"), rec.get("procStart")
    ok = (
        isinstance(pid, int)
        and not isinstance(pid, bool)
        and (start is None or (isinstance(start, str) and len(start) <= 64))
        and isinstance(rec.get("pidDomain"), str)
        and isinstance(rec.get("pidSpace"), str)
        and _positive(rec.get("lockBirthtimeMs"))
        and (rec.get("legacyLockBirthtimeMs") is None or _positive(rec["legacyLockBirthtimeMs"]))
    )
    return rec if ok else None


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def same_birth(a: float | None, b: object) -> bool:
    return a is not None and isinstance(b, int | float) and abs(a - float(b)) <= BIRTH_TOLERANCE_MS


def holder_gone(rec: dict[str, object]) -> bool:
    """The record's pid is proven gone: no such process, a zombie, or another process since."""
    pid = rec["pid"]
    assert isinstance(pid, int)
    if not 1 < pid <= PID_MAX or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # EPERM: it exists
    if _proc_state(pid) in ("Z", "X"):
        return True
    start = rec.get("procStart")
    now = proc_start(pid)
    return isinstance(start, str) and now is not None and now != start


def remove_if(cfg: str, pid: object, lock_birth: object) -> None:
    """Remove the record when it is still the one named by (pid, lock birth time)."""
    rec = read(cfg)
    if rec is not None and rec["pid"] == pid and rec["lockBirthtimeMs"] == lock_birth:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record_path(cfg))

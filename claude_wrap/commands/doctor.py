"""`claude-wrap doctor`: check everything the shim depends on, and say how to fix each problem.

Each check returns findings: a level (ok, warn, fail), one line saying what was found, and for
anything not ok the fix. `--fix` applies the fixes that are safe to apply unattended: removing
stale lock directories (under our flock, re-checked just before) and our own leftover temp
files, and making a readable credentials file 0600. The exit status is 0 only when every
finding is ok.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import time
from typing import TYPE_CHECKING, Any

from claude_wrap.commands.status import ADVICE
from claude_wrap.config import versions
from claude_wrap.errors import EXIT_NOT_USABLE, EXIT_OK, StorageUnavailableError
from claude_wrap.judging import login
from claude_wrap.keeper import service
from claude_wrap.locks import lock
from claude_wrap.locks.flock import FolderFlock
from claude_wrap.refresh import binary, refresher
from claude_wrap.shim import locate
from claude_wrap.storage import backends, filestore, store
from claude_wrap.system.processes import UNREADABLE, running_claudes

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings

OK = "ok"
WARN = "warn"
FAIL = "fail"
RC_FILES = (".bashrc", ".bash_profile", ".profile", ".zshrc", ".config/fish/config.fish")


class Finding:
    __slots__ = ("check", "data", "fix", "level", "message")

    def __init__(
        self,
        check: str,
        level: str,
        message: str,
        fix: str | None = None,
        **data: Any,
    ) -> None:
        self.check = check
        self.level = level
        self.message = message
        self.fix = fix
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "level": self.level,
            "message": self.message,
            "fix": self.fix,
            **self.data,
        }


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check the setup and the login; explain each fix")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument(
        "--fix",
        action="store_true",
        help=(
            "apply the safe fixes: remove stale lock folders, the leftovers of a killed"
            " claude-wrap (temp files, half-made lock folders), chmod 600"
        ),
    )
    p.set_defaults(func=run)


def run(ns: argparse.Namespace, settings: Settings) -> int:
    findings = examine(settings, fix=ns.fix)
    healthy = all(f.level == OK for f in findings)
    if ns.json:
        data = {"healthy": healthy, "findings": [f.as_dict() for f in findings]}
        print(json.dumps(data, indent=2))
    else:
        print(render(findings, healthy))
    return EXIT_OK if healthy else EXIT_NOT_USABLE


def render(findings: list[Finding], healthy: bool) -> str:
    lines = []
    for f in findings:
        lines.append(f"{f.level.upper():<5} {f.check}: {f.message}")
        if f.fix:
            lines.append(f"      fix: {f.fix}")
    lines.append("all healthy" if healthy else "problems found: see the fixes above")
    return "\n".join(lines)


def examine(settings: Settings, *, fix: bool = False) -> list[Finding]:
    first = first_on_path(settings)
    shim = first if first is not None and locate.is_shim(first) else None
    findings = [
        *check_real_binary(settings, shim),
        *check_path(settings, first, shim),
        *check_recursion(settings),
    ]
    storage = backends.open_storage(settings)
    findings += check_login(settings, storage)
    if storage.kind == "file":
        findings += check_mode(storage.where, fix=fix)
    findings += check_locks(storage.lock_dir, settings, fix=fix)
    if storage.kind == "file":
        findings += check_temps(storage.where, fix=fix)
    findings += [check_log(settings), check_keeper(settings), check_processes(settings)]
    return findings


# the binary and PATH -----------------------------------------------------------------------


def first_on_path(settings: Settings) -> str | None:
    found = locate.on_path(settings)
    return found[0] if found else None


def version_of(real: str, settings: Settings) -> tuple[str | None, str]:
    """(version line or None, why not)."""
    child = settings.unnested().child_env()  # should it be a shim after all, no pre-flight
    try:
        result = subprocess.run(
            [real, "--version"], capture_output=True, text=True, timeout=20, env=child, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        return None, f"`{real} --version` exited {result.returncode}"
    return lines[0], ""


def check_real_binary(settings: Settings, shim: str | None) -> list[Finding]:
    name = "real claude"
    override = settings.real_claude_override
    if override:
        problem = locate.check_override(override, shim)
        if problem is not None:
            return [
                Finding(
                    name,
                    FAIL,
                    f"CLAUDE_WRAP_REAL_CLAUDE={override} {problem}",
                    "point CLAUDE_WRAP_REAL_CLAUDE at Claude Code's own executable, or unset it",
                )
            ]
        real = override
    else:
        try:
            real = locate.find_real_claude(settings, shim)
        except locate.NotFoundError:
            return [
                Finding(
                    name,
                    FAIL,
                    "no real claude found on PATH or in the usual places",
                    "install Claude Code (https://docs.claude.com/en/docs/claude-code), or set "
                    "CLAUDE_WRAP_REAL_CLAUDE to its executable",
                )
            ]
    version, why = version_of(real, settings)
    if version is None:
        return [
            Finding(
                name,
                WARN,
                f"{real} does not tell its version ({why})",
                "reinstall Claude Code, or set CLAUDE_WRAP_REAL_CLAUDE to a working executable",
                path=real,
            )
        ]
    found = [Finding(name, OK, f"{real} ({version})", path=real, version=version)]
    number = version.split()[0]
    if binary.newer_than_tested(number):
        # Said, but not a problem (doctor stays healthy): Claude Code updates itself, and a newer
        # release most likely works; only nobody has proven it yet.
        found.append(
            Finding(
                "claude version",
                OK,
                f"Claude Code {number} is newer than the newest release claude-wrap was tested "
                f"with ({versions.newest_tested()})",
                "test it with `scripts/compat latest` (in a claude-wrap checkout, as root); on a "
                "FAIL, report it with the table and meanwhile pin the last release that passed "
                f"(`npm install -g {binary.PACKAGE}@{versions.newest_tested()}`, "
                "DISABLE_AUTOUPDATER=1)",
                version=number,
            )
        )
    return found


def alias_in_rc(settings: Settings) -> str | None:
    home = settings.home
    for name in RC_FILES:
        path = os.path.join(home, name)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 20)
        except OSError:
            continue
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("alias claude") and "claude-wrap" in stripped:
                return path
    return None


def check_path(settings: Settings, first: str | None, shim: str | None) -> list[Finding]:
    name = "shim"
    if shim is not None:
        return [Finding(name, OK, f"the shim comes first on PATH: {shim}", path=shim)]
    rc = alias_in_rc(settings)
    if rc is not None:
        return [Finding(name, OK, f"`claude` is an alias to claude-wrap (set in {rc})", rc=rc)]
    later = [p for p in locate.on_path(settings) if locate.is_shim(p)]
    if later and first is not None:
        return [
            Finding(
                name,
                FAIL,
                f"a shim is on PATH ({later[0]}) but {first} comes before it",
                f'put {os.path.dirname(later[0])} first: export PATH="'
                f'{os.path.dirname(later[0])}:$PATH" in your shell rc file',
            )
        ]
    what = (
        "there is no `claude` command on PATH"
        if first is None
        else f"`claude` runs {first} directly: nothing checks the login before a run"
    )
    return [
        Finding(
            name,
            FAIL,
            what,
            "run `claude-wrap install` and add the PATH line it prints to your shell rc file "
            "(or the alias it prints)",
        )
    ]


def check_recursion(settings: Settings) -> list[Finding]:
    name = "recursion"
    found = []
    if settings.nested:
        found.append(
            Finding(
                name,
                WARN,
                "CLAUDE_WRAP_ACTIVE=1 is set here, so every shim started from this shell skips "
                "its pre-flight (normal only inside a claude session the shim started)",
                "if this is not a claude session, remove CLAUDE_WRAP_ACTIVE from your shell "
                "rc file and open a new shell",
            )
        )
    for path in locate.on_path(settings):
        if not locate.is_shim(path):
            continue
        python = shim_python(path)
        if python is not None and not os.access(python, os.X_OK):
            found.append(
                Finding(
                    name,
                    FAIL,
                    f"the shim {path} runs {python}, which no longer exists",
                    "reinstall claude-wrap, then run `claude-wrap install` again",
                )
            )
    shims = [p for p in locate.on_path(settings) if locate.is_shim(p)]
    if not found:
        detail = f" ({len(shims)} shims on PATH; each skips the others)" if len(shims) > 1 else ""
        found.append(Finding(name, OK, f"no loop: the shim never runs itself{detail}"))
    return found


def shim_python(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    return words[0] if words else None


# the login and its files -------------------------------------------------------------------


def check_login(settings: Settings, storage: store.Storage) -> list[Finding]:
    name = "login"
    try:
        _, verdict = refresher.assess(storage, settings.refresh_window_ms)
    except StorageUnavailableError as exc:
        return [Finding(name, FAIL, str(exc), exc.hint or None, where=storage.where)]
    detail = f" ({verdict.detail})" if verdict.detail else ""
    text = f"{verdict.state}{detail} in {storage.where}"
    ends = _login_end(settings, verdict)
    if verdict.state == login.OK:
        return [Finding(name, OK, text, state=verdict.state, where=storage.where), *ends]
    level = WARN if verdict.state in login.REFRESHABLE else FAIL
    fix = ADVICE[verdict.state]
    return [Finding(name, level, text, fix, state=verdict.state, where=storage.where), *ends]


def _login_end(settings: Settings, verdict: login.Verdict) -> list[Finding]:
    """A warning when the login's hard end (refreshTokenExpiresAt) is within the window."""
    from claude_wrap.judging import loginend  # noqa: PLC0415

    now = int(time.time() * 1000)
    ends_at = verdict.login_ends_at
    window_ms = settings.login_end_window_ms
    if ends_at is None or not loginend.within(ends_at, now, window_ms):
        return []
    return [Finding("login end", WARN, loginend.sentence(ends_at, now), "run `claude /login`")]


def check_mode(path: str, *, fix: bool) -> list[Finding]:
    name = "file mode"
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return [Finding(name, OK, f"no file at {path} to check")]
    if not mode & 0o077:
        return [Finding(name, OK, f"{path} is {mode:04o}, readable by you alone")]
    if fix:
        try:
            os.chmod(path, 0o600)
        except OSError as exc:
            return [Finding(name, FAIL, f"{path} is {mode:04o}; chmod failed: {exc.strerror}")]
        return [Finding(name, OK, f"{path} was {mode:04o}; made it 0600 (--fix)")]
    return [
        Finding(
            name,
            FAIL,
            f"{path} is {mode:04o}: other users can read your login",
            f"chmod 600 {path}  (or `claude-wrap doctor --fix`)",
        )
    ]


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
            found.append(Finding(name, FAIL, f"{path} cannot be examined: {exc.strerror}"))
            continue
        if not stat.S_ISDIR(st.st_mode):
            found.append(
                Finding(
                    name,
                    FAIL,
                    f"{path} is not a folder, so no refresh can ever take this lock",
                    f"remove it: rm {path}",
                )
            )
            continue
        age = time.time() - st.st_mtime
        verdict = held.judge()
        if not verdict:
            found.append(
                Finding(name, OK, f"{path} is held by a running refresh ({age:.0f} s old)")
            )
            continue
        if verdict == lock.ABANDONED:
            why = "left by a claude-wrap process that is gone"
        elif verdict == lock.HOLDER_GONE:
            why = "its owner record names a Claude Code process that is gone"
        elif age < 0:
            why = f"its mtime is {-age:.0f} s in the future (the clock moved)"
        else:
            why = f"untouched for {age:.0f} s: its holder is gone"
        if fix:
            outcome = remove_stale_lock(cfg, held)
            level = OK if outcome.startswith("removed") else FAIL
            found.append(Finding(name, level, f"{path}: {why}; {outcome}"))
        else:
            found.append(
                Finding(
                    name,
                    FAIL,
                    f"stale lock {path}: {why}; it can block refreshes",
                    "`claude-wrap doctor --fix` removes it safely",
                    path=path,
                )
            )
    if not found:
        found.append(Finding(name, OK, f"no lock folders in or beside {cfg}"))
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
        return [Finding("locks", OK, f"removed {removed} leftover folder(s) of {lock_path}{tail}")]
    return [
        Finding(
            "locks",
            WARN,
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


def check_temps(path: str, *, fix: bool) -> list[Finding]:
    name = "temp files"
    leftovers = filestore.temp_files(path)
    if not leftovers:
        return [Finding(name, OK, "no leftover temp files beside the credentials file")]
    if fix:
        removed = filestore.remove_stale_temps(path)
        return [Finding(name, OK, f"removed {removed} leftover temp file(s) (--fix)")]
    return [
        Finding(
            name,
            WARN,
            f"{len(leftovers)} temp file(s) of a killed claude-wrap beside {path}",
            "`claude-wrap doctor --fix` removes those of processes no longer running",
        )
    ]


# the log and the running processes ---------------------------------------------------------


def check_log(settings: Settings) -> Finding:
    path = settings.log_file
    try:
        size = os.path.getsize(path)
    except OSError:
        return Finding("log", OK, f"{path} (not written yet)", path=path)
    return Finding("log", OK, f"{path} ({size} bytes)", path=path)


def check_keeper(settings: Settings) -> Finding:
    """Informational: the keeper is optional, needed only for launches that bypass the shim."""
    manager = service.default_manager()
    found = service.installed(manager, settings)
    if found:
        mode = service.installed_mode(manager, settings)
        detail = f"installed ({manager}, {mode}): {', '.join(found)}"
        running = None
        if mode == service.WATCH:
            from claude_wrap.keeper import watch  # noqa: PLC0415

            running = watch.running(settings)
            detail += f"; running (pid {running})" if running else "; not running now"
        return Finding("keeper", OK, detail, files=found, mode=mode, running=running)
    return Finding(
        "keeper",
        OK,
        "not installed; editors that start their own claude (VS Code without the wrapper "
        "setting, Zed) need it: `claude-wrap install --keeper`",
        files=[],
    )


def check_processes(settings: Settings) -> Finding:
    rows = running_claudes(settings)
    if not rows:
        return Finding("processes", OK, "no Claude Code process is running", processes=[])
    listed = ", ".join(f"{r['pid']} ({_where(r)})" for r in rows)
    return Finding("processes", OK, f"Claude Code running: {listed}", processes=rows)


def _where(row: dict[str, object]) -> str:
    cfg, creds = str(row["config_dir"]), str(row["credentials"])
    if cfg == UNREADABLE or os.path.dirname(creds) == cfg:
        return cfg
    return f"{cfg}, its login in {creds}"  # CLAUDE_SECURESTORAGE_CONFIG_DIR moved the file

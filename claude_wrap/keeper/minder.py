"""`claude-wrap exec`'s minder: a command keeps working past the owner's rotations.

The real token service revokes an access token when the login rotates (docs/protocol.md section
10), so a token handed over once (a pipe read at start, the environment) dies at the owner's next
rotation, and the command's claude has no way to get another. Instead, exec runs the command with
a private config folder (0700, under $XDG_RUNTIME_DIR or a private temp folder) whose
`.credentials.json` holds the access token and the scopes, never the refresh token; and it
leaves behind this minder, which follows this machine's login and writes each new access token
into that file within moments of the rotation. Claude Code re-reads its credentials file when
it changes and on a 401 (docs/protocol.md sections 5 and 10), so the command's claude rolls
over by itself.

Why a mirror, and not CLAUDE_SECURESTORAGE_CONFIG_DIR alone (the credentials file's folder):
2.1.87 does not read that variable. So the private folder is the command's CLAUDE_CONFIG_DIR
(and its CLAUDE_SECURESTORAGE_CONFIG_DIR too, for a command that sets CLAUDE_CONFIG_DIR itself,
which 2.1.197 and later then still send here), and it mirrors the real folder by symlinks:
settings, agents, commands, projects and the rest are the real ones. Not mirrored: the
credentials file and Claude Code's lock folders and owner record, so that the command's claude
never takes the owner's locks. The global config (`.claude.json`) sits in HOME for the default
folder and in the folder otherwise (Claude Code's own rule): the mirror links the right one.
Entries the command's claude creates in the private folder (a first `projects/`) are moved into
the real folder at the end when it has none of that name.

The minder ends, and removes the folder, when the command ends (a pidfd of it on Linux, else a
poll of its pid), or on SIGTERM, SIGINT or SIGHUP. Killed outright (SIGKILL), it leaves the
folder behind: the next exec removes every private folder whose minder is gone (`sweep`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import stat
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from claude_wrap.config import fspath, protocol
from claude_wrap.config.settings import Settings, write_lock_dir
from claude_wrap.errors import PrivateFolderError, WrapError
from claude_wrap.judging import login
from claude_wrap.locks import lock
from claude_wrap.refresh import refresher, renewal
from claude_wrap.storage import backends
from claude_wrap.watch import filewatch

if TYPE_CHECKING:
    from collections.abc import Callable

PREFIX = "exec-"
PID_NAME = ".claude-wrap-minder"  # in the private folder: the minder's pid, for `sweep`
RETRY_S = 60.0  # after a renewal that failed (the owner unreachable, the network down)
POLL_S = 0.5  # how often the command's pid is looked at where there is no pidfd
ORPHAN_S = 60.0  # a private folder this old with no minder's pid file was never minded
# Never mirrored: the login itself and Claude Code's locks and records of it.
NOT_MIRRORED = (
    protocol.CREDENTIALS_NAME,
    protocol.REFRESH_LOCK_NAME,
    protocol.OWNER_RECORD_NAME,
    protocol.WRITE_LOCK_NAME,
    PID_NAME,
)
GLOBAL_CONFIG = ".claude.json"


# Following the login: the one function the owner's push could replace -----------------------


def follow(
    settings: Settings, hand_on: Callable[[dict[str, Any]], None], watcher: filewatch.Watcher
) -> None:
    """Watch this machine's login and call `hand_on` with each new access token (as
    `current` gives it), until `watcher` is interrupted. The login is kept fresh on its own
    schedule meanwhile: when it is due (its refresh window), renewal.ensure_fresh (the owner
    refreshes under Claude Code's locks, a guest pulls from its owner); a rotation by anyone
    else (Claude Code, the keeper, another guest's pull) is seen as the file's change."""
    last = ""
    failed_at = -RETRY_S
    while not watcher.interrupted:
        due = due_in(settings)
        if due is not None and due <= 0 and time.monotonic() - failed_at >= RETRY_S:
            try:
                renewal.ensure_fresh(settings)
            except Exception as exc:  # noqa: BLE001 - the command runs on: retried, logged
                failed_at = time.monotonic()
                _log(settings, "exec minder: the login could not be renewed: {}", exc)
        cred = current(settings)
        if cred is not None and cred["accessToken"] != last:
            try:
                hand_on(cred)
                last = cred["accessToken"]
            except Exception as exc:  # noqa: BLE001 - handed on at the next wake instead
                _log(settings, "exec minder: could not hand the new token on: {}", exc)
                watcher.wait(1.0)
                continue
        due = due_in(settings)
        wait = RETRY_S if due is None or due <= 0 else min(due, RETRY_S)
        watcher.wait(wait)


def current(settings: Settings) -> dict[str, Any] | None:
    """This machine's usable login as a guest's file holds it (the access token, its expiry,
    the scopes and the plan; never the refresh token), else None."""
    try:
        snap, verdict = refresher.assess(backends.open_storage(settings), 0)
    except WrapError:
        return None
    oauth = login.oauth_section(snap.doc) if snap is not None else None
    if oauth is None or not verdict.usable:
        return None
    out: dict[str, Any] = {
        "accessToken": login.access_token(snap.doc),
        "expiresAt": verdict.expires_at,
        "scopes": list(verdict.scopes or []),
    }
    for key in ("subscriptionType", "rateLimitTier"):
        if isinstance(oauth.get(key), str):
            out[key] = oauth[key]
    if out["expiresAt"] is None:
        del out["expiresAt"]
    return out


def due_in(settings: Settings) -> float | None:
    """Seconds until this machine's login is due for renewal (0: now), None: it cannot be."""
    window_ms = settings.refresh_window_ms
    try:
        _, verdict = refresher.assess(backends.open_storage(settings), window_ms)
    except WrapError:
        return 0.0
    if verdict.state in (login.State.MISSING, login.State.MALFORMED, login.State.LOGGED_OUT):
        return None
    if verdict.state != login.State.OK or verdict.expires_at is None:
        return 0.0
    return max(0.0, (verdict.expires_at - window_ms) / 1000 - time.time())


# The private folder --------------------------------------------------------------------------


def parent_folder(settings: Settings) -> str:
    """Where private folders are made: $XDG_RUNTIME_DIR/claude-wrap (the user's own, 0700, gone
    at logout), else a folder of ours in the temp folder, checked to be ours and private."""
    if settings.runtime_dir:
        path = os.path.join(settings.runtime_dir, "claude-wrap")
    else:
        path = os.path.join(settings.temp_dir, f"claude-wrap-{os.getuid()}")
    try:
        fspath.make_private_dirs(path)
        st = os.lstat(path)
    except OSError as exc:
        raise PrivateFolderError(path, exc.strerror or str(exc)) from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PrivateFolderError(path, "it is not a folder of this user's alone (0700)")
    return path


def make_private(settings: Settings, cred: dict[str, Any]) -> str:
    """A new private config folder mirroring the real one, holding `cred`. Its path."""
    import tempfile  # noqa: PLC0415

    parent = parent_folder(settings)
    sweep(parent)
    private = tempfile.mkdtemp(prefix=PREFIX, dir=parent)  # 0700
    try:
        mirror(settings, private)
        write_credentials(settings, private, cred)
    except BaseException:
        remove(private, settings)
        raise
    return private


def mirror(settings: Settings, private: str) -> None:
    """Symlinks in `private` to every entry of the real config folder but the login and the
    locks; the global config as Claude Code finds it for that folder."""
    real = settings.config_dir
    try:
        names = os.listdir(real)
    except OSError:
        names = []
    for name in names:
        if name in NOT_MIRRORED or name.startswith(protocol.CREDENTIALS_NAME + "."):
            continue
        os.symlink(os.path.join(real, name), os.path.join(private, name))
    outside = settings.global_config
    if os.path.dirname(outside) != real and not os.path.exists(os.path.join(real, ".config.json")):
        # The default folder's global config is ~/.claude.json, outside it; with
        # CLAUDE_CONFIG_DIR set (the private folder), Claude Code looks in the folder instead.
        with contextlib.suppress(FileExistsError):
            os.symlink(outside, os.path.join(private, GLOBAL_CONFIG))


def write_credentials(settings: Settings, private: str, cred: dict[str, Any]) -> None:
    """The private `.credentials.json`: `cred` (no refresh token, ever) as Claude Code writes
    a login, replaced atomically under the folder's write lock, 0600 from birth."""
    oauth = {k: v for k, v in cred.items() if k != "refreshToken"}
    data = json.dumps({login.OAUTH_KEY: oauth}, separators=(",", ":")).encode()
    path = os.path.join(private, protocol.CREDENTIALS_NAME)
    tmp = f"{path}.tmp.{os.getpid()}"
    with lock.write_lock(write_lock_dir(private), records=settings.lock_records):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600)
        try:
            try:
                os.write(fd, data)
                os.fsync(fd)  # durable before it replaces the token CMD's claude reads
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def remove(private: str, settings: Settings | None = None) -> None:
    """Move back what the command's claude made here and the real folder lacks, then remove
    the private folder and its legacy lock."""
    real = settings.config_dir if settings is not None else ""
    with contextlib.suppress(OSError):
        for entry in os.scandir(private):
            if entry.is_symlink() or entry.name in NOT_MIRRORED or not real:
                continue
            if entry.name.startswith(protocol.CREDENTIALS_NAME):
                continue
            target = os.path.join(real, entry.name)
            if os.path.isdir(real) and not os.path.lexists(target):
                with contextlib.suppress(OSError, shutil.Error):
                    shutil.move(entry.path, target)
    shutil.rmtree(private, ignore_errors=True)
    for leftover in (private + protocol.LEGACY_LOCK_SUFFIX,):
        with contextlib.suppress(OSError):
            os.rmdir(leftover)


def sweep(parent: str) -> list[str]:
    """Remove the private folders whose minder is gone (killed outright): the paths removed."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            if entry.name.startswith(PREFIX) and entry.name.endswith(protocol.LEGACY_LOCK_SUFFIX):
                folder = entry.path[: -len(protocol.LEGACY_LOCK_SUFFIX)]
                if not os.path.lexists(folder):
                    with contextlib.suppress(OSError):
                        os.rmdir(entry.path)
            continue
        if _minded(entry.path):
            continue
        remove(entry.path)
        removed.append(entry.path)
    return removed


def _minded(private: str) -> bool:
    try:
        with open(os.path.join(private, PID_NAME), encoding="ascii") as f:
            pid = int(f.read().strip() or 0)
    except FileNotFoundError:
        try:
            return time.time() - os.lstat(private).st_mtime < ORPHAN_S
        except OSError:
            return False
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"minder" in f.read()
    except OSError:
        return True  # no /proc (macOS): the pid alone


# Starting the minder, and the minder's own process -------------------------------------------


def start(settings: Settings, private: str) -> None:
    """Leave a minder behind for `private`, following this process: after this returns, this
    process execs the command (same pid), and the minder ends when that ends. The minder is a
    grandchild in a session of its own (never the command's child, never in its process group),
    running a fresh interpreter; this process waits only for the child between them."""
    me = os.getpid()
    pidfd = -1
    if hasattr(os, "pidfd_open"):
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(me)  # close-on-exec: the command never holds it
    argv = [sys.executable, "-I", "-m", "claude_wrap.keeper.minder", private]
    argv += ["--pidfd", str(pidfd)] if pidfd >= 0 else ["--pid", str(me)]
    env = settings.child_env()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child between: forks the minder and leaves
        try:
            if os.fork() == 0:
                os.setsid()
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                # Nothing of the command's (a pipe a caller waits on for its end of file).
                keep = max(pidfd, 2)
                os.closerange(3, keep)
                os.closerange(keep + 1, 1 << 16)
                if pidfd >= 0:
                    os.set_inheritable(pidfd, True)
                os.execve(sys.executable, argv, env)  # noqa: S606 - our own module
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    if pidfd >= 0:
        os.close(pidfd)


def main(argv: list[str]) -> int:
    """The minder's process: `python -m claude_wrap.keeper.minder PRIVATE --pidfd N|--pid P`."""
    private, how, value = argv[0], argv[1], int(argv[2])
    settings = Settings.from_process()
    try:
        watcher = filewatch.open_watcher(
            backends.open_storage(settings).watched_files(), 0.5, settings.watch_kind
        )
    except (OSError, WrapError):
        watcher = filewatch.Watcher([], 0.5)

    def stop(_signum: int, _frame: object) -> None:
        watcher.interrupt()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    threading.Thread(target=_await_end, args=(how, value, watcher), daemon=True).start()
    # Written once the signals are ours: a minder told to stop from now on cleans up.
    with contextlib.suppress(OSError), open(os.path.join(private, PID_NAME), "w") as f:
        f.write(f"{os.getpid()}\n")

    def hand_on(cred: dict[str, Any]) -> None:
        if not os.path.isdir(private):
            watcher.interrupt()  # removed under us: nothing left to mind
            return
        write_credentials(settings, private, cred)
        _log(settings, "exec minder: a new access token handed on to {}", private)

    try:
        with open(os.path.join(private, protocol.CREDENTIALS_NAME), "rb") as raw:
            handed = json.loads(raw.read()).get(login.OAUTH_KEY, {}).get("accessToken", "")
    except (OSError, ValueError, AttributeError):
        handed = ""

    def hand_on_new(cred: dict[str, Any]) -> None:
        if cred["accessToken"] != handed:
            hand_on(cred)

    try:
        follow(settings, hand_on_new, watcher)
    except Exception as exc:  # noqa: BLE001 - the log has it; the folder is removed all the same
        _log(settings, "exec minder failed: {}", exc)
    finally:
        watcher.close()
        remove(private, settings)
    return 0


def _await_end(how: str, value: int, watcher: filewatch.Watcher) -> None:
    """Interrupt `watcher` when the command ends: its pidfd turns readable, or its pid goes."""
    if how == "--pidfd":
        with contextlib.suppress(OSError, ValueError):
            select.select([value], [], [])
        watcher.interrupt()
        return
    while True:
        try:
            os.kill(value, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        time.sleep(POLL_S)
    watcher.interrupt()


def _log(settings: Settings, message: str, *args: object) -> None:
    with contextlib.suppress(Exception):
        from claude_wrap.logfile.log import logger  # noqa: PLC0415

        logger(settings).info(message, *args)


if __name__ == "__main__":  # pragma: no cover - started by `start`
    sys.exit(main(sys.argv[1:]))

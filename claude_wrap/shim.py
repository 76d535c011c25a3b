"""The `claude` shim: find the real binary, repair the login if needed, then run it.

This is the hot path of every `claude` run. A healthy run stats the credentials file and reads
one small cache file; it imports only `posix`, `sys` and our own light modules: not even `os`
(fspath.py says why; settings.py decodes the environment, as os.environ would). Everything heavier
(json, httpx, loguru, psutil, pexpect; os for the watchers) is imported only when a run needs it.

Then it runs claude one of two ways. Watched (the default, for runs that use the stored login),
claude is our child: relay.py for headless runs, interactive.py under a pty for a terminal; they
watch it for a login failure, repair and retry, and return what happened (process.RunEnd).
Otherwise (CLAUDE_WRAP_WATCH=0, CLAUDE_WRAP_DISABLE, a nested or a login-free run) it execs
claude (process.exec_real). This is the entry point: only here is anything said or exited with.

The shim never stands between a user and Claude Code: whatever goes wrong in the pre-flight is
one line on stderr, then claude runs anyway.
"""

from __future__ import annotations

import posix
import sys

from claude_wrap.config import fspath, locate
from claude_wrap.config import settings as config
from claude_wrap.config.settings import Settings, StorageKind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NoReturn

    from claude_wrap.locks.flock import FolderFlock
    from claude_wrap.watch.process import RunEnd

# Runs that never use the stored login: no point in checking it first.
NO_AUTH_FLAGS = frozenset(("--version", "-v", "--help", "-h"))
NO_AUTH_COMMANDS = (("auth", "login"), ("auth", "logout"), ("setup-token",))
# The login's hard end (refreshTokenExpiresAt) this close: one stderr line, at most hourly.
NOTICE_WITHIN_MS = 86_400_000
NOTICE_EVERY_S = 3600


def say(message: str) -> None:
    from claude_wrap.console import say  # noqa: PLC0415 - off the healthy hot path

    say(message)


def enable_site() -> None:
    from claude_wrap.config.sitepath import enable_site  # noqa: PLC0415 - leaving the hot path

    enable_site()


def uses_stored_login(args: list[str], settings: Settings) -> bool:
    if settings.login_given_otherwise:
        return False
    for arg in args:
        if arg == "--":
            break
        if arg in NO_AUTH_FLAGS or arg == "--bare":
            return False
    return not any(tuple(args[: len(cmd)]) == cmd for cmd in NO_AUTH_COMMANDS)


def preflight(settings: Settings) -> bool:
    """Repair the login if it needs it. Never raises: problems become one line on stderr, and
    False (the watcher then does not try the same repair again)."""
    held = None
    try:
        cred = settings.credentials_file
        window_ms = settings.refresh_window_ms
        # The verdict cache knows files only: a Keychain login is judged afresh each run.
        if settings.storage_kind == StorageKind.FILE:
            # Here, not at the top: a run with no pre-flight (--version, nested) never loads it.
            from claude_wrap.storage import fastpath  # noqa: PLC0415

            now = _now_ms()
            fine, ends_at = fastpath.judged(cred, window_ms, now, settings)
            if fine:
                if ends_at is not None and ends_at - now < NOTICE_WITHIN_MS:
                    login_end_notice(ends_at, now, settings)
                return True
            held, fine = _take_turn(cred, window_ms, settings)
            if not fine:
                _slow_preflight(settings, held)
            # Judged afresh (the cache refilled): the login's end is known from it again.
            now = _now_ms()
            fine, ends_at = fastpath.judged(cred, window_ms, now, settings)
            if fine and ends_at is not None and ends_at - now < NOTICE_WITHIN_MS:
                login_end_notice(ends_at, now, settings)
            return True
        _slow_preflight(settings, held)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - said on one line, then claude runs anyway
        _preflight_failed(settings, exc)
        return False
    finally:
        if held is not None:
            held.release()
    return True


def _preflight_failed(settings: Settings, exc: BaseException) -> None:
    """A pre-flight that failed: one line on stderr (the trace in the log when it is a bug of
    ours), so that claude runs anyway; a stop signal ends the run instead."""
    from claude_wrap.config.settings import SettingError  # noqa: PLC0415
    from claude_wrap.errors import Interrupted, WrapError  # noqa: PLC0415

    if isinstance(exc, Interrupted):
        raise SystemExit(128 + exc.signum) from None
    if isinstance(exc, (WrapError, SettingError)):
        say(f"{exc} (running claude anyway)")
        _log_failure(settings, exc, trace=False)
    else:
        log = _log_failure(settings, exc, trace=True)
        say(f"internal error while checking the login, see {log} (running claude anyway)")


def login_end_notice(ends_at: int, now_ms: int, settings: Settings) -> None:
    """One line on stderr (never stdout: scripts parse it) when the login ends within a day, at
    most once an hour across all shims: the stamp file's mtime says when it was last said."""

    stamp = settings.shim_notice_stamp
    try:
        if now_ms / 1000 - posix.stat(stamp).st_mtime < NOTICE_EVERY_S:
            return
    except OSError:
        pass
    from claude_wrap.judging import loginend  # noqa: PLC0415 - only when it is said

    say(f"warning: this {loginend.sentence(ends_at, now_ms)}")
    try:
        fspath.make_private_dirs(fspath.dirname(stamp))
        posix.close(posix.open(stamp, posix.O_WRONLY | posix.O_CREAT | posix.O_CLOEXEC, 0o600))
        posix.utime(stamp, (now_ms / 1000, now_ms / 1000))
    except OSError:
        pass  # without the stamp the line comes again next run: a nuisance, not a failure


def _now_ms() -> int:
    import time  # noqa: PLC0415 - builtin module, cheap

    return int(time.time() * 1000)


def _take_turn(
    cred: str, window_ms: int, settings: Settings
) -> tuple[FolderFlock | None, bool]:
    """The login is due (or not judged yet): before `site` and the refresher's imports, take our
    flock of its folder, or wait while another process of ours holds it, most likely refreshing
    this very login. A herd of shims started at once on one expired login then pays for one
    refresh, not for 32 sets of imports (bench/run contention). Returns the flock when we got it
    at once (we go first and hold it through the refresh), else None and whether the login is
    fine after the wait (if not, judge it and refresh as usual, not holding the flock)."""
    from claude_wrap.locks import flock  # noqa: PLC0415 - fcntl, only when the login is due

    try:
        held = flock.take_turn(
            fspath.dirname(cred), settings.lock_wait, settings.state_dir,
            lambda: _warm_up(settings),
        )
    except OSError:
        return None, False  # no folder to lock: nothing to wait for; the slow path says why
    if held is not None:
        return held, False
    from claude_wrap.storage import fastpath  # noqa: PLC0415 - loaded by preflight already

    return None, fastpath.still_ok(cred, window_ms, _now_ms(), settings)


def _warm_up(settings: Settings) -> None:
    """While the holder of the flock waits on the network (flock.py: the gate), import what
    this run needs once its turn comes, so that the 31 others of a herd do not all import it
    at the moment the refresh lands (bench/run contention). Only a head start: whatever fails
    here fails again, and is reported, where it is needed."""
    try:
        from claude_wrap.watch import process  # noqa: PLC0415

        if not settings.watching:
            return
        if posix.isatty(0) and posix.isatty(1):
            enable_site()
            from claude_wrap.watch import interactive  # noqa: F401, PLC0415
        else:
            from claude_wrap.watch import relay  # noqa: F401, PLC0415

            process.prepare_spawn()
    except Exception:  # noqa: BLE001, S110 - see above
        pass


def _slow_preflight(settings: Settings, held: FolderFlock | None) -> None:
    enable_site()
    from claude_wrap.judging import login  # noqa: PLC0415
    from claude_wrap.refresh import refresher, renewal  # noqa: PLC0415
    from claude_wrap.storage import backends  # noqa: PLC0415

    if settings.guest_setting:  # a guest: pull from the owner (guest.py), never refresh
        outcome = renewal.ensure_fresh(settings, held=held)
        for warning in outcome.warnings:
            say(f"warning: {warning}")
        return
    storage = backends.open_storage(settings)
    path = storage.where
    _, verdict = refresher.settled(settings, storage, settings.refresh_window_ms)
    if verdict.state == login.State.OK:
        return
    if verdict.state in (login.State.MISSING, login.State.LOGGED_OUT):
        return  # nothing to repair: claude itself says "Please run /login", and that is right
    if verdict.state not in login.REFRESHABLE:
        error = refresher.unfixable(path, verdict)
        if error is not None:
            raise error
    from claude_wrap import feedback  # noqa: PLC0415

    with feedback.Spinner() as spinner:
        outcome = refresher.ensure_fresh(settings, on_slow=spinner.start, held=held)
    for warning in outcome.warnings:
        say(f"warning: {warning}")


def _log_failure(settings: Settings, exc: BaseException, *, trace: bool) -> str:
    try:
        enable_site()
        from claude_wrap.logfile.log import logger  # noqa: PLC0415

        log = logger(settings)
        if trace:
            log.opt(exception=exc).error("pre-flight failed")
        else:
            log.warning("pre-flight: {}", exc)
    except Exception:  # noqa: BLE001, S110 - logging must never be why claude does not start
        pass
    return settings.log_file


def find_real(settings: Settings, shim: str | None) -> str:
    override = settings.real_claude_override
    if override:
        problem = locate.check_override(override, shim)
        if problem is None:
            return override
        say(f"CLAUDE_WRAP_REAL_CLAUDE={override} {problem}; looking on PATH instead")
    try:
        return locate.find_real_claude(settings, shim)
    except locate.ClaudeNotFoundError:
        say("claude: command not found")
        from claude_wrap.watch import process  # noqa: PLC0415 - only when there is no claude

        raise SystemExit(process.NOT_FOUND) from None


def wrapped(args: list[str], shim: str | None, settings: Settings) -> tuple[str, list[str]]:
    """Wrapper mode: VS Code's `claudeCode.claudeProcessWrapper` runs `<shim> <its own claude>
    ARGS`. When the first argument is the path of a Claude Code executable (or the npm package's
    cli.js), run that one, without it in the arguments. ("", args) when not in wrapper mode."""
    first = args[0] if args else ""
    if first == "node" or first.endswith(fspath.SEP + "node"):
        # `<shim> node <its cli.js> ARGS` (2.1.81-2.1.87 ship cli.js): run that node on it.
        script = args[1] if len(args) > 1 else ""
        if (fspath.basename(script) in ("cli.js", "cli.mjs") and "claude-code" in script
                and fspath.isfile(script)):
            node = first if fspath.SEP in first else locate.find_node(settings)
            if node:
                return node, args[1:]
        return "", args
    if fspath.SEP not in first:
        return "", args  # the usual case, decided without touching the disk
    base = fspath.basename(first)
    if base in ("cli.js", "cli.mjs"):
        if "claude-code" not in first or not fspath.isfile(first):
            return "", args
        node = locate.find_node(settings)
        # Without node, the claude on PATH is the next best thing to run these arguments.
        return (node, [first, *args[1:]]) if node else ("", args[1:])
    if base not in ("claude", "claude.exe") and "/@anthropic-ai/claude-code" not in first:
        return "", args
    if not fspath.isfile(first) or not posix.access(first, posix.X_OK):
        return "", args
    if locate.is_shim(first, shim):
        return "", args[1:]  # pointed at a shim (ours): drop it, find the real one as usual
    return first, args[1:]


def run(args: list[str], shim: str | None, settings: Settings) -> NoReturn:
    real, args = wrapped(args, shim, settings)
    if settings.nested or settings.disabled:
        # Nested under another shim (which already did the pre-flight), or switched off.
        _exec(real or find_real(settings, shim), args, settings.child_env())
    real = real or find_real(settings, shim)
    if uses_stored_login(args, settings):
        repaired = preflight(settings)
        if settings.watching:
            # CLAUDE_WRAP_ACTIVE=1 for the claude we run; made after the pre-flight, so that
            # what it learnt (the guest line from the verdict cache) carries over.
            _watch(real, args, settings.unnested(), preflight_failed=not repaired)
    _exec(real, args, settings.unnested().child_env())


def _watch(real: str, args: list[str], settings: Settings, *, preflight_failed: bool) -> None:
    """Run claude as our child and watch its output for a login failure the pre-flight could not
    see coming (it repairs the login, then retries or lets the running TUI pick it up); then end
    as it ended. Returns only when the watch could not start (a bad setting): then exec."""
    from claude_wrap.watch import process  # noqa: PLC0415 - builtins only, on every watched run

    try:
        with _rollover(settings):
            if posix.isatty(0) and posix.isatty(1):
                enable_site()
                from claude_wrap.watch import interactive  # noqa: PLC0415 - pexpect, for terminals

                outcome = interactive.run(real, args, settings, preflight_failed=preflight_failed)
            else:
                from claude_wrap.watch import relay  # noqa: PLC0415

                outcome = relay.run(real, args, settings, preflight_failed=preflight_failed)
    except KeyboardInterrupt:
        outcome = process.RunEnd(130)
    except config.SettingError as exc:
        say(f"{exc} (running claude unwatched)")
        return
    except Exception as exc:  # noqa: BLE001 - a bug of ours: one line here, the trace in the log
        log = _log_failure(settings, exc, trace=True)
        outcome = process.RunEnd(70, [f"internal error while watching claude, see {log}"])
    _end(outcome)


class _Nothing:
    """contextlib.nullcontext without importing contextlib on the hot path."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _rollover(settings: Settings) -> Any:
    """On a guest, a thread that pulls a new token before the running claude's is due (guest.py);
    elsewhere nothing (one environment lookup and one failed open: no import)."""
    owner = settings.guest_setting
    if not owner:
        return _Nothing()
    from claude_wrap.guests import rollover  # noqa: PLC0415 - light: guest.py only once due

    return rollover.Rollover(settings, owner, settings.guest_period)


def _exec(real: str, args: list[str], env: Mapping[str, str]) -> NoReturn:
    from claude_wrap.watch import process  # noqa: PLC0415 - builtins only

    _end(process.exec_real(real, args, env))


def _end(outcome: RunEnd) -> NoReturn:
    """Say what the run came to, then end with its status: the one place that does both."""
    from claude_wrap.watch import process  # noqa: PLC0415 - builtins only

    for message in outcome.messages:
        say(message)
    process.exit_with(outcome.status)


def main() -> NoReturn:
    """Entry point of the installed shim and of bin/claude."""
    shim = sys.argv[0] if sys.argv and sys.argv[0] else None
    shim = fspath.abspath(shim) if shim else None
    run(sys.argv[1:], shim, Settings.from_process())


"""Interactive runs (stdin and stdout are terminals): the real claude under a pty, the user's
terminal wired straight through, its screen watched for the login failure.

pexpect's `interact` with no escape character copies keys and screen both ways; we forward
window size changes (SIGWINCH), restore the terminal on every way out (signals included), and
return how claude ended, with what to tell the user (process.RunEnd), to the entry point.

When the TUI shows `Not logged in · Run /login` (or a 401), the credentials file is repaired in
place, in the background: a running Claude Code re-reads a changed file (docs/protocol.md
section 5), so the user's next prompt works without a restart.
Its status line keeps saying `Not logged in` afterwards, so each failure is repaired once, and a
new repair starts only when the file changed again since: never a refresh loop.

Better still, the user never sees the failure: while the session runs, a guard (guard.py) is
told by the kernel of each change to the file within milliseconds, and when another program has
changed it into something we fix (a rewrite without `scopes`), it is repaired at once, before the
next prompt meets it (the soak, issue 9: TUI prompts sent after the hostile refresher's rewrite
failed until the next keeper run or the failure itself triggered the repair).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import struct
import termios
import threading
import time
from typing import TYPE_CHECKING, Any, cast

import pexpect

from claude_wrap.config.settings import Settings
from claude_wrap.errors import ClaudeStartError, Interrupted
from claude_wrap.refresh import recover
from claude_wrap.storage import backends
from claude_wrap.watch import detect, guard, process

if TYPE_CHECKING:
    from collections.abc import Iterator


def window_size(fd: int = 1) -> tuple[int, int]:
    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return 24, 80
    rows, cols = struct.unpack("hhhh", packed)[:2]
    return (rows or 24), (cols or 80)


class Repairer:
    """Repairs the login in a background thread, once per failure.

    `known` is the file's identity as claude was started, then as our last repair left it: a
    failure seen while the file is still that one was already dealt with (the status line just
    keeps saying so). A file changed since is judged again, and refreshed only if unusable.
    """

    def __init__(self, settings: Settings, *, preflight_failed: bool) -> None:
        self.settings = settings
        self.known = backends.identity(settings)
        # The pre-flight could not repair this file (and said why): count that as our one try.
        self.repairs = 1 if recover.already_tried(settings, self.known, preflight_failed) else 0
        self.problem: str | None = None
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()  # the screen watcher and the guard both start repairs
        self._healing = False  # the thread under way is a heal (the guard's), not a repair
        self._repaired_at = 0.0

    def trigger(self, message: str) -> None:
        with self._starting:
            busy = self._thread is not None and self._thread.is_alive()
            if busy and not self._healing:
                return  # a repair of a failure is under way
            ident = backends.identity(self.settings)
            if self.repairs and ident == self.known and not self._may_ask_again():
                return
            self.repairs += 1
            # A heal under way may find nothing to do (a token the server refused looks fine):
            # this repair runs after it, so that the failure claude showed is never dropped.
            self._start(self._repair, message, self.known, self._thread if busy else None)

    def _may_ask_again(self) -> bool:
        """A refusal of the very file our last repair left ends the repairs, except on a guest:
        there a repair is a pull, which spends nothing, and the owner may have rotated since
        (the service revokes the old token at once: docs/protocol.md section 10, issue 26).
        Once per guest period, so that a failure redrawn on the screen is not a pull each time."""
        if not self.settings.guest_setting:
            return False
        return time.monotonic() - self._repaired_at >= max(1.0, self.settings.guest_period)

    def heal(self) -> None:
        """The guard saw the file change: judge it and repair it if a refresh fixes it. Not a
        failure claude showed, so it does not count as this session's repair of one."""
        with self._starting:
            if self._thread is None or not self._thread.is_alive():
                self._start(self._heal)
                self._healing = True

    def _start(self, target: Any, *args: Any) -> None:
        self._healing = False
        self._thread = threading.Thread(
            target=target, args=args, name="claude-wrap-repair", daemon=True
        )
        self._thread.start()

    def _repair(
        self, message: str, launched: tuple[int, ...] | None, after: threading.Thread | None
    ) -> None:
        if after is not None:
            after.join()
        self.problem = recover.repair(self.settings, launched, refused=detect.needs_force(message))
        self.known = backends.identity(self.settings)
        self._repaired_at = time.monotonic()

    def _heal(self) -> None:
        recover.heal(self.settings)

    def unresolved(self) -> str | None:
        """Why the last repair failed, unless the file changed since (a /login in the TUI)."""
        if self.problem is not None and backends.identity(self.settings) == self.known:
            return self.problem
        return None

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


class Guard(guard.Guard):
    """The guard of a TUI session (guard.py): each change of the file that our own last repair
    did not leave has the repairer judge (and, if need be, repair) it, in its thread."""

    def __init__(self, settings: Settings, repairer: Repairer, period: float) -> None:
        def on_change(ident: tuple[int, ...] | None) -> None:
            if ident is not None and ident != repairer.known:
                repairer.heal()

        super().__init__(settings, on_change, period)
        self.repairer = repairer


@contextlib.contextmanager
def _terminal_kept() -> Iterator[None]:
    """The terminal's settings as we found them, on every way out."""
    try:
        saved: list[Any] | None = termios.tcgetattr(0)
    except termios.error:
        saved = None
    try:
        yield
    finally:
        if saved is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(0, termios.TCSADRAIN, saved)


def run(
    real: str, args: list[str], settings: Settings, *, preflight_failed: bool = False
) -> process.RunEnd:
    """The session, to its end: how claude ended, and what to tell the user about the login."""
    grace = settings.kill_grace
    repairer = Repairer(settings, preflight_failed=preflight_failed)
    matcher = detect.TuiMatcher()

    def watch(data: bytes) -> bytes:
        try:
            found = matcher.feed(data)
            if found is not None:
                repairer.trigger(found)
        except Exception:  # noqa: BLE001, S110 - watching must never break the session
            pass
        return data

    child = _spawn(real, args, settings)
    if isinstance(child, process.RunEnd):
        return child
    saved = _handle_signals(child)
    try:
        with _terminal_kept(), Guard(settings, repairer, settings.guard_period):
            stopped_by = _interact(child, watch)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    if stopped_by is not None:
        status = process.stop_pty_child(child, stopped_by, grace)
    else:
        child.wait()
        status = _status(child)
    repairer.join()
    child.close(force=True)
    return _ending(status, repairer)


def _spawn(real: str, args: list[str], settings: Settings) -> Any:
    """claude started on a pty of its own, or the process.RunEnd saying why it cannot run."""
    # pexpect reports a missing and a non-executable binary alike: ask first, for the shell's
    # rule (process.launch_status).
    refused = process.check_runnable(real)
    if refused is not None:
        return process.cannot_run(real, refused)
    try:
        return pexpect.spawn(
            real, args, env=settings.child_env(), dimensions=window_size(),
            preexec_fn=process.python_signals,
        )
    except OSError as exc:
        return process.cannot_run(real, exc)
    except pexpect.ExceptionPexpect as exc:
        error = ClaudeStartError(real, str(exc), process.CANNOT_EXECUTE)
        return process.RunEnd(error.status, [str(error)])


def _handle_signals(child: Any) -> dict[int, Any]:
    """Our handlers for the session (window size copied to the pty, SIGINT passed on, a stop
    signal ends the session); the handlers they replace, to put back."""

    def on_winch(_signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            child.setwinsize(*window_size())

    def on_stop(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    def on_int(signum: int, _frame: object) -> None:
        # Not from the keyboard (raw mode turns Ctrl-C into a byte for the child): pass it on.
        with contextlib.suppress(OSError):
            child.kill(signum)

    saved: dict[int, Any] = {
        signal.SIGWINCH: signal.signal(signal.SIGWINCH, on_winch),
        signal.SIGINT: signal.signal(signal.SIGINT, on_int),
    }
    for signum in process.STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            saved[signum] = signal.signal(signum, on_stop)
    return saved


def _interact(child: Any, watch: Any) -> int | None:
    """The user's terminal wired to claude's until it exits; the signal that stopped us instead
    (SIGHUP when our terminal is gone), None when claude ended by itself."""
    try:
        # types-pexpect says str; without an encoding pexpect passes bytes.
        child.interact(escape_character=None, output_filter=cast("Any", watch))
        _drain(child, watch)
    except Interrupted as exc:
        return exc.signum
    except OSError as exc:
        if exc.errno not in (errno.EIO, errno.EPIPE, errno.EBADF):
            raise
        return signal.SIGHUP  # our terminal is gone
    except termios.error as exc:
        # interact() restores the terminal's modes on its way out; on a terminal that is
        # gone that fails with EIO, hiding the stop signal that brought us out (found by
        # the soak, issue 9, closing its TUI sessions like a closed terminal window).
        if not exc.args or exc.args[0] not in (errno.EIO, errno.EBADF, errno.ENOTTY):
            raise
        cause = exc.__context__
        return cause.signum if isinstance(cause, Interrupted) else signal.SIGHUP
    return None


def _ending(status: int, repairer: Repairer) -> process.RunEnd:
    """How the session ended, with what to tell the user about the login's repairs."""
    problem = repairer.unresolved()
    if problem is not None:
        return process.RunEnd(
            status, [f"claude said it is not logged in; could not repair the login: {problem}"]
        )
    if repairer.repairs and repairer.problem is None and status != 0:
        return process.RunEnd(
            status, ["claude said it is not logged in; the login is repaired now: run it again"]
        )
    return process.RunEnd(status)


def _drain(child: Any, watch: Any) -> None:
    """What the child printed between its last read and its exit (interact stops on exit).
    Only what is there now: a grandchild may hold the pty open for as long as it lives."""
    import select  # noqa: PLC0415

    while True:
        try:
            if not select.select([child.child_fd], [], [], 0)[0]:
                return
            data = os.read(child.child_fd, 65536)
        except OSError:
            return
        if not data:
            return
        os.write(1, watch(data))


def _status(child: Any) -> int:
    return process.pty_status(child)

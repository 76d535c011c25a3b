"""The real claude as a process: exec'ing it, starting it as our child, signalling it, reaping
it, and translating how it ended into the status we end with.

One rule for a launch that fails, whichever way claude is run (exec'd, relayed, under a pty),
the shell's: 127 when there is no such file, 126 when it is there but cannot be executed.

Only builtins (posix, sys, _signal): this is imported on the hot path of every run, and an
exec'd one (CLAUDE_WRAP_WATCH=0, --version, a nested or disabled run) imports nothing else, not
even `os` (fspath.py says why). psutil only to kill a process tree that outlived its grace
period; ctypes not at all (see _light_prctl).
"""

from __future__ import annotations

# `_signal`, not `signal`: that one imports enum, ~10 ms on every watched run; the C module has
# the same functions, with plain int constants.
import _signal  # type: ignore[import-not-found]  # no typeshed stub
import errno
import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, NoReturn

    from claude_wrap.errors import ClaudeStartError

NOT_FOUND = 127  # as a shell: `claude: command not found`
CANNOT_EXECUTE = 126  # there, but not executable (permissions, a directory, a bad format)
STOP_SIGNALS = (_signal.SIGTERM, _signal.SIGHUP)
PR_SET_PDEATHSIG = 1


class RunEnd:
    """How a run of claude ended, for the entry point to act on: the status to end with (-N:
    die of signal N, as claude did) and the lines to say on stderr first."""

    __slots__ = ("messages", "status")

    def __init__(self, status: int, messages: Sequence[str] = ()) -> None:
        self.status = status
        self.messages = tuple(messages)

    def __repr__(self) -> str:
        return f"RunEnd({self.status!r}, {self.messages!r})"


def launch_status(exc: OSError) -> int:
    """The exit status for a claude we could not start: the shell's rule."""
    return NOT_FOUND if exc.errno == errno.ENOENT else CANNOT_EXECUTE


def start_error(real: str, exc: OSError) -> ClaudeStartError:
    """`exc`, met starting claude, as the error we report for it."""
    from claude_wrap.errors import ClaudeStartError  # noqa: PLC0415 - only when claude cannot start

    # ptyprocess (under pexpect) raises the child's errno with a text of its own: say errno's.
    why = posix.strerror(exc.errno) if exc.errno else str(exc)
    return ClaudeStartError(real, why, launch_status(exc))


def cannot_run(real: str, exc: OSError) -> RunEnd:
    error = start_error(real, exc)
    return RunEnd(error.status, (str(error),))


def check_runnable(real: str) -> OSError | None:
    """Why execve would refuse `real`, asked before a launcher that cannot tell us (pexpect says
    "not found or not executable" for both): ENOENT, EACCES, or None when it looks runnable."""
    try:
        st = posix.stat(real)
    except OSError as exc:
        return exc
    import stat  # noqa: PLC0415 - builtin, cheap; only under a pty

    if stat.S_ISDIR(st.st_mode) or not posix.access(real, posix.X_OK):
        return OSError(errno.EACCES, posix.strerror(errno.EACCES))
    return None


def exit_status(status: int) -> int:
    """A waitpid status as subprocess reports it: the exit code, or -N for death by signal N
    (the shim then dies of the same signal, so its parent sees what it would have seen)."""
    if posix.WIFSIGNALED(status):
        return -posix.WTERMSIG(status)
    return posix.WEXITSTATUS(status)


def _flush() -> None:
    # Not console.flush: this is the healthy hot path, which does not import console.py.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def exec_real(real: str, args: list[str], env: Mapping[str, str]) -> RunEnd:
    """Become the real claude. Returns only when exec failed: what to say and exit with."""
    _flush()
    python_signals(restore_defaults=True)
    try:
        posix.execve(real, [real, *args], env)
    except OSError as exc:
        python_signals(restore_defaults=False)  # still us: a broken stderr must not kill us
        return cannot_run(real, exc)
    raise AssertionError("unreachable")  # pragma: no cover - execve returns only by raising


def python_signals(*, restore_defaults: bool = True) -> None:
    """Python starts by ignoring SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across
    exec: before exec put them back to their defaults, as the shell left them, so that claude
    behaves the same behind us (`claude -p ... | head -1` ends it by SIGPIPE). Found by bench/run:
    SigIgn of the exec'd claude was 0x1001000. The one reset of them: before our own exec, and
    in a child we start (spawn, and pexpect's preexec_fn), before its exec."""
    for name in ("SIGPIPE", "SIGXFSZ"):
        number = getattr(_signal, name, None)
        if number is not None:
            _signal.signal(number, _signal.SIG_DFL if restore_defaults else _signal.SIG_IGN)


def die_by(signum: int) -> NoReturn:
    """End the way claude did, by its signal: a parent then sees exactly what it would have seen
    had we exec'd (a shell reports 128+N). Exits 128+N should the signal not end us."""
    _flush()
    try:
        import resource  # noqa: PLC0415 - only when claude died of a signal

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # claude's crash, not ours: no core
        if signum not in (_signal.SIGKILL, _signal.SIGSTOP):  # those cannot be handled anyway
            _signal.signal(signum, _signal.SIG_DFL)
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [signum])
        posix.kill(posix.getpid(), signum)
    except (OSError, ValueError):
        pass
    raise SystemExit(128 + signum)


def exit_with(status: int) -> NoReturn:
    """The entry point's way out after a watched run: end as claude ended (-N: by signal N)."""
    if status < 0:
        die_by(-status)
    _flush()
    if _nothing_to_finalize():
        # Our streams are flushed and nothing else of ours holds a buffer: skip the
        # interpreter's teardown (module and object finalization), ~1-2 ms of CPU on every
        # watched run (bench/run watch).
        posix._exit(status & 0xFF)
    raise SystemExit(status)


def _nothing_to_finalize() -> bool:
    """A run that stayed on the light path: no logger, no HTTP client, no pty, no threads."""
    heavy = ("loguru", "httpx", "pexpect", "threading", "psutil")
    return not any(name in sys.modules for name in heavy)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant, children first found, so none is orphaned."""
    from claude_wrap.config import sitepath  # noqa: PLC0415 - not on a healthy run

    sitepath.enable_site()
    import psutil  # noqa: PLC0415 - only when a child outlived its grace period

    try:
        top = psutil.Process(pid)
        procs = [*top.children(recursive=True), top]
    except psutil.Error:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass


_prctl_found: list[Callable[..., int] | None] = []  # looked up once: the answer never changes


def prepare_spawn() -> None:
    """Do now what `spawn` would do first (look prctl up), for a process with time to spare
    (shim.py: _warm_up)."""
    _prctl()


def _prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, None elsewhere. Looked up before fork: importing after fork in a
    process that may have threads is not safe."""
    if not _prctl_found:
        _prctl_found.append(_find_prctl())
    return _prctl_found[0]


def _find_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return _light_prctl()
    except Exception:  # noqa: BLE001, S110 - _ctypes is private: should it change, use ctypes
        pass
    try:
        import ctypes  # noqa: PLC0415 - 3-6 ms, on every watched run

        return ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None


def _light_prctl() -> Callable[..., int]:
    """prctl through `_ctypes` alone, the way ctypes.CDLL looks a function up, without importing
    ctypes itself: 0.7-1.1 ms instead of 4.7-6.7 ms here, on every watched run."""
    import _ctypes  # noqa: PLC0415 - see above

    class Int(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_int
        _type_ = "i"

    class Function(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = Int

    class Libc:  # what CFuncPtr wants of a library: its handle
        _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # type: ignore[arg-type]  # the program

    function: Callable[..., int] = Function(("prctl", Libc))  # type: ignore[arg-type]
    return function


def spawn(path: str, argv: list[str], env: dict[str, str], plan: list[tuple[int, int]]) -> int:
    """fork and exec, with `plan`'s (fd in the child, our fd to put there) as the child's stdio;
    OSError (its errno from the child's execve) when exec fails, the child then reaped.

    Not os.posix_spawn: glibc's leaves its two internal real-time signals ignored in the child
    (SigIgn 0x180000000), and an ignored signal stays ignored across exec. SIGPIPE and SIGXFSZ are
    ignored by Python itself, not by whoever started us: the child gets them at their defaults,
    as it would have without us. Every other fd of ours is close-on-exec (os.pipe's default).
    """
    prctl = _prctl()
    parent = posix.getpid()
    errors_r, errors_w = posix.pipe()
    pid = posix.fork()
    if pid == 0:  # the child: only async-signal-safe work until exec
        try:
            if prctl is not None:
                # Die with us, as claude would have died with the exec'd shim: a SIGKILLed
                # wrapper (which cannot forward anything) leaves no orphaned claude behind.
                prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0)
                if posix.getppid() != parent:  # we died before prctl took effect
                    posix._exit(128 + _signal.SIGKILL)
            for target, fd in plan:
                posix.dup2(fd, target)
            python_signals()
            posix.execve(path, argv, env)
        except OSError as exc:
            posix.write(errors_w, str(exc.errno).encode())
        finally:
            posix._exit(NOT_FOUND)
    posix.close(errors_w)
    try:
        report = posix.read(errors_r, 64)  # empty: exec closed it, all went well
    finally:
        posix.close(errors_r)
    if report:
        posix.waitpid(pid, 0)
        code = int(report)
        raise OSError(code, posix.strerror(code))
    return pid


def reap(pid: int) -> int | None:
    """The child's waitpid status once it has exited, else None (it is still running)."""
    try:
        done, status = posix.waitpid(pid, posix.WNOHANG)
    except ChildProcessError:
        return 1 << 8  # reaped elsewhere, status unknown: exit 1, never "success"
    return status if done else None


def pty_status(child: Any) -> int:
    """How a pexpect child ended, as exit_status gives it."""
    if child.signalstatus is not None:
        return -int(child.signalstatus)
    return int(child.exitstatus or 0)


def stop_pty_child(child: Any, signum: int, grace: float) -> int:
    """We were told to stop: tell the child (a pexpect.spawn), give it `grace` seconds, then kill
    its whole tree. How it ended, or -signum when it is past telling."""
    import time  # noqa: PLC0415 - builtin; only under a pty

    try:
        child.kill(signum)
    except OSError:
        pass
    deadline = time.monotonic() + grace
    while child.isalive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if child.isalive():
        kill_tree(child.pid)
        child.wait()
    return pty_status(child) if child.terminated else -signum

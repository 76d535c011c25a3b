"""Headless runs (stdout is not a terminal): the real claude runs as our child; its output is
relayed as it arrives and watched for a login failure, which is repaired and retried
(once, or again while other programs keep breaking the file: see MAX_LAUNCHES).

Pipelines, scripts and editors speaking stream-json read what we relay, so relaying must be
invisible: stdout and stderr byte for byte, as they arrive (a stream stays a stream); stdin
forwarded as the child takes it, with a bounded copy kept so that a retry can replay it. Output
is held back only while it could still be the failure (detect.Watch). The consumer sees either
the failed run or the retried one, never a mix, and never anything of a run it was not meant to.

Once a run can no longer be retried (its output was judged healthy, or stdin outgrew the replay
limit), the bytes no longer pass through us: splice(2) moves them from pipe to pipe inside the
kernel (bench/run stdout, stdin), and reading and writing remain for what cannot be spliced.

Only builtins on the way (os, select, _signal): no subprocess, selectors or json for a healthy
run; psutil only to kill a process tree that outlived its grace period.
"""

from __future__ import annotations

# `_signal`, not `signal`: that one imports enum, ~10 ms here on every watched run; the C module
# has the same functions, with plain int constants.
import _signal  # type: ignore[import-not-found]  # no typeshed stub
import errno
import os
import select
import sys
import time

from claude_wrap import console, detect, paths, recover, sitepath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

DEFAULT_REPLAY_LIMIT = 64 << 20  # bytes of stdin kept for a replay; past it, no retry
DEFAULT_GRACE_S = 5.0  # after SIGTERM/SIGHUP, how long the child gets before its tree is killed
# A consumer that keeps stdin open may wait for our output before it writes more; the output
# we hold waits for the child's next line. Past this much quiet, release it: no deadlock.
DEFAULT_HOLD_QUIET_S = 2.0
CHUNK = 65536  # a pipe's capacity, the most one read from it returns
SPLICE_LEN = 1 << 20  # a splice moves what the pipes hold, up to this
# Launches of claude per invocation. A retry is repaired and launched once; another one only when
# claude was refused again because another program rewrote the file during that retry (the soak's
# hostile refresher, issue 9), never for a refusal of the login our own repair left.
MAX_LAUNCHES = 4
MORE, IDLE, EOF = "more", "idle", "eof"
STOP_SIGNALS = (_signal.SIGTERM, _signal.SIGHUP)
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)


def replay_limit(env: Mapping[str, str]) -> int:
    raw = env.get("CLAUDE_WRAP_REPLAY_LIMIT")
    if not raw:
        return DEFAULT_REPLAY_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise paths.SettingError("CLAUDE_WRAP_REPLAY_LIMIT", raw, "a number of bytes") from None
    if value < 0:
        raise paths.SettingError("CLAUDE_WRAP_REPLAY_LIMIT", raw, "a number of bytes")
    return value


def grace_seconds(env: Mapping[str, str]) -> float:
    return paths._seconds(env, "CLAUDE_WRAP_KILL_GRACE", DEFAULT_GRACE_S)


def exit_status(status: int) -> int:
    """A waitpid status as subprocess reports it: the exit code, or -N for death by signal N
    (the shim then dies of the same signal, so its parent sees what it would have seen)."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant, children first found, so none is orphaned."""
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


def _usable(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _terminal_foreground() -> bool:
    """Whether we are the foreground job of a terminal: a Ctrl-C then reaches our child too."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return True
        except OSError:
            continue
    return False


class StdinCopy:
    """What the consumer wrote on stdin so far, up to `limit` bytes, for a replay. Kept only while
    a replay could still happen: past the limit, or once the run cannot be retried (its output
    was judged healthy), it is freed and stdin goes to the child without passing through us."""

    __slots__ = ("chunks", "dropped", "eof", "limit", "on", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.dropped = False  # past the limit: this invocation will not retry
        self.on = True  # still copying
        self.eof = False

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if not self.on:
            return
        if self.size > self.limit:
            self.dropped = True
            self.stop()
        else:
            self.chunks.append(data)

    def stop(self) -> None:
        self.chunks = []  # free it
        self.on = False


def _read_stdin() -> bytes:
    try:
        return os.read(0, CHUNK)
    except OSError:
        return b""  # taken as its end, as a closed stdin


class Signals:
    """SIGCHLD and the stop signals wake the poll loop through a pipe; stop signals are passed to
    the child as they arrive."""

    def __init__(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.pid: int | None = None
        self.stop_at: float | None = None  # when a stop signal's grace period ends
        self.stopped_by: int | None = None
        self.terminal = _terminal_foreground()
        self._saved: dict[int, object] = {}
        self._old_wakeup = -1

    def install(self, grace: float) -> None:
        self._old_wakeup = _signal.set_wakeup_fd(self.wake_w)

        def on_stop(signum: int, _frame: object) -> None:
            if signum in STOP_SIGNALS:
                self.stopped_by = signum
                if self.stop_at is None:
                    self.stop_at = time.monotonic() + grace
            if signum in (_signal.SIGINT, _signal.SIGQUIT) and self.terminal:
                return  # the terminal sent it to our whole process group: the child has it
            if self.pid is not None:
                try:
                    os.kill(self.pid, signum)
                except ProcessLookupError:
                    pass

        self._saved[_signal.SIGCHLD] = _signal.signal(_signal.SIGCHLD, lambda *_: None)
        for signum in FORWARDED:
            if _signal.getsignal(signum) is _signal.SIG_IGN:
                continue  # ignored by whoever started us (nohup): the child inherits that
            self._saved[signum] = _signal.signal(signum, on_stop)

    def drain(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except OSError:
            pass

    def restore(self) -> None:
        for signum, handler in self._saved.items():
            _signal.signal(signum, handler)
        _signal.set_wakeup_fd(self._old_wakeup)
        os.close(self.wake_r)
        os.close(self.wake_w)


def _ready(fd: int, events: int, timeout_ms: int) -> bool:
    poller = select.poll()  # not select.select: it cannot take an fd above 1023
    poller.register(fd, events)
    return bool(poller.poll(timeout_ms))


def _moved(src: int, dst: int) -> int | None:
    """Move up to SPLICE_LEN bytes from `src` to `dst` inside the kernel, one of them a pipe: the
    bytes never pass through us (no copy, no buffer of ours). The count moved (0: end of file),
    None when one side has to wait, or -1 when the kernel cannot splice these two (then read and
    write them)."""
    try:
        return os.splice(src, dst, SPLICE_LEN, flags=os.SPLICE_F_NONBLOCK)
    except BlockingIOError:
        return None
    except OSError as exc:
        # EINVAL: an output opened O_APPEND, a terminal, or a file system without splice.
        if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            return -1
        raise


class Output:
    """One of our own output streams (fd 1 or 2). Never made non-blocking: the open file is shared
    with other processes. A consumer that went away (`| head -1`) ends relaying quietly."""

    __slots__ = ("broken", "fd", "splice", "written")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.broken = False
        self.written = 0
        self.splice = hasattr(os, "splice")  # until the kernel says it cannot splice to this fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.broken:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                select.select([], [self.fd], [])  # someone else made it non-blocking
                continue
            except OSError as exc:
                self._failed(exc)
                return
            self.written += n
            view = view[n:]

    def move_from(self, src: int) -> int | None:
        """Relay what the pipe `src` holds with splice: the bytes moved (0: end of file), or None
        when there was nothing, or the consumer went away (`broken`), or the kernel cannot splice
        to this fd (`splice` is then off: read and write instead). Waits while the consumer is
        full, as write does. One splice per call: looping until the pipe is empty measured no
        better (a fast child keeps it from ever being empty; a slow one costs a failed splice)."""
        for waited in (False, True):
            if self.broken:
                break
            try:
                n = _moved(src, self.fd)
            except OSError as exc:
                self._failed(exc)
                break
            if n is None:
                # Either our pipe is empty or the consumer is full (splice cannot tell which):
                # wait for the consumer only when there is something to give it.
                if waited or not _ready(src, select.POLLIN, 0):
                    break
                _ready(self.fd, select.POLLOUT, -1)
                continue
            if n < 0:
                self.splice = False
                break
            self.written += n
            return n
        return None

    def _failed(self, exc: OSError) -> None:
        if exc.errno not in (errno.EPIPE, errno.EBADF, errno.EINVAL):
            raise exc
        self.broken = True


PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, None elsewhere. Looked up before fork: importing after fork in a
    process that may have threads is not safe."""
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


def _spawn(path: str, argv: list[str], env: dict[str, str], plan: list[tuple[int, int]]) -> int:
    """fork and exec, with `plan`'s pipes as the child's stdio; OSError when exec fails.

    Not os.posix_spawn: glibc's leaves its two internal real-time signals ignored in the child
    (SigIgn 0x180000000), and an ignored signal stays ignored across exec. SIGPIPE and SIGXFSZ are
    ignored by Python itself, not by whoever started us: the child gets them at their defaults,
    as it would have without us. Every other fd of ours is close-on-exec (os.pipe's default).
    """
    prctl = _prctl()
    parent = os.getpid()
    errors_r, errors_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only async-signal-safe work until exec
        try:
            if prctl is not None:
                # Die with us, as claude would have died with the exec'd shim: a SIGKILLed
                # wrapper (which cannot forward anything) leaves no orphaned claude behind.
                prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0)
                if os.getppid() != parent:  # we died before prctl took effect
                    os._exit(128 + _signal.SIGKILL)
            for target, fd in plan:
                os.dup2(fd, target)
            _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
            _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
            os.execve(path, argv, env)  # noqa: S606 - the real claude, by design
        except OSError as exc:
            os.write(errors_w, str(exc.errno).encode())
        finally:
            os._exit(127)
    os.close(errors_w)
    try:
        report = os.read(errors_r, 64)  # empty: exec closed it, all went well
    finally:
        os.close(errors_r)
    if report:
        os.waitpid(pid, 0)
        code = int(report)
        raise OSError(code, os.strerror(code))
    return pid


class Run:
    """One launch of the real claude, and the loop relaying its streams until it has exited."""

    def __init__(
        self,
        real: str,
        args: list[str],
        env: Mapping[str, str],
        pipe_stdin: bool,
        pipe_stderr: bool,
    ) -> None:
        fds_parent: list[int] = []
        plan = []  # (fd in the child, our end to put there)
        out_r, out_w = os.pipe()
        plan.append((1, out_w))
        fds_parent += [out_r, out_w]
        self.inp = self.err = -1
        if pipe_stdin:
            in_r, self.inp = os.pipe()
            plan.append((0, in_r))
            fds_parent += [in_r, self.inp]
        if pipe_stderr:
            self.err, err_w = os.pipe()
            plan.append((2, err_w))
            fds_parent += [self.err, err_w]
        self.out = out_r
        try:
            self.pid = _spawn(real, [real, *args], dict(env), plan)
        except OSError:
            for fd in fds_parent:
                os.close(fd)
            raise
        os.close(out_w)
        if pipe_stdin:
            os.close(in_r)
            os.set_blocking(self.inp, False)
        if pipe_stderr:
            os.close(err_w)
            os.set_blocking(self.err, False)
        os.set_blocking(self.out, False)
        self.status: int | None = None

    def reap(self) -> bool:
        if self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.status = 1 << 8  # reaped elsewhere, status unknown: exit 1, never "success"
                return True
            if pid:
                self.status = status
        return self.status is not None

    def close(self) -> None:
        for fd in (self.inp, self.out, self.err):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.inp = self.out = self.err = -1


class Relay:
    def __init__(
        self, real: str, args: list[str], env: Mapping[str, str], *, preflight_failed: bool
    ) -> None:
        self.real = real
        self.preflight_failed = preflight_failed
        self.args = args
        self.env = env
        self.pipe_stdin = _usable(0) and not os.isatty(0)
        self.pipe_stderr = _usable(2) and not os.isatty(2)
        self.copy = StdinCopy(replay_limit(env))
        self.grace = grace_seconds(env)
        self.quiet = paths._seconds(env, "CLAUDE_WRAP_HOLD_QUIET", DEFAULT_HOLD_QUIET_S)
        self.stdout = Output(1)
        self.stderr = Output(2)
        self.signals = Signals()
        # stdin read but not yet taken by the child (a view: taking part of it copies nothing)
        self.pending = memoryview(b"")
        self.splice_in = hasattr(os, "splice")  # until the kernel says it cannot splice fd 0

    def run(self) -> int:
        self.signals.install(self.grace)
        try:
            if self._stays_open():
                # A session that stays open (stream-json on stdin: editors, SDKs, for hours)
                # gets the TUI's guard; a one-shot run does not pay for it (guard.py).
                from claude_wrap import guard  # noqa: PLC0415

                with guard.Guard(self.env, guard.heal_inline(self.env), guard.period(self.env)):
                    return self._attempts()
            return self._attempts()
        finally:
            self.signals.restore()

    def _stays_open(self) -> bool:
        return self.pipe_stdin and _stream_json_input(self.args)

    def _attempts(self) -> int:
        launched = recover.file_identity(self.env)
        preflight_failed = self.preflight_failed
        for attempt in range(1, MAX_LAUNCHES + 1):
            watch = detect.Watch()
            run = self._launch()
            try:
                self._loop(run, watch)
            finally:
                run.close()
            assert run.status is not None
            code = exit_status(run.status)
            verdict = watch.finish(code)
            failed = watch.release()
            if verdict != detect.FAILURE:
                self.stdout.write(failed)
                return code
            now = recover.file_identity(self.env)
            if recover.already_tried(self.env, launched, preflight_failed):
                self.stdout.write(failed)  # the pre-flight's line on stderr already said why
                return code
            if attempt > 1 and now == launched:
                # Refused again, on the very file our repair left: another repair would only
                # spend another token on whatever claude has against it. Show it as it is.
                self.stdout.write(failed)
                console.say(f"claude said {watch.message!r} again after the login was repaired")
                return code
            if attempt == MAX_LAUNCHES:
                self.stdout.write(failed)
                console.say(
                    f"claude said {watch.message!r}; the login was repaired and the run "
                    f"retried {MAX_LAUNCHES - 1} times, and each time another program had "
                    "changed the credentials file again before claude read it"
                )
                return code
            stopped = self._repair(watch, launched, failed, code, attempt)
            if stopped is not None:
                return stopped
            self.pending = memoryview(b"".join(self.copy.chunks))
            launched = recover.file_identity(self.env)
            preflight_failed = False
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _repair(
        self,
        watch: detect.Watch,
        launched: tuple[int, ...] | None,
        failed: bytes,
        code: int,
        attempt: int,
    ) -> int | None:
        """Repair the login after a failed run. None: retry; else the exit status to end with
        (the failed run's output already written and, when it helps, one line said why)."""
        why_not = self._why_no_retry()
        problem = None
        if self.signals.stopped_by is None:
            from claude_wrap.errors import Interrupted  # noqa: PLC0415

            try:
                problem = recover.repair(
                    self.env, launched, refused=detect.needs_force(watch.message), run=attempt
                )
            except Interrupted as exc:
                self.stdout.write(failed)
                return -exc.signum
        if self.signals.stopped_by is not None:
            why_not = "we were told to stop"
        if problem is None and why_not is None:
            return None
        self.stdout.write(failed)
        if problem is not None:
            console.say(f"claude said {watch.message!r}; could not repair the login: {problem}")
        elif self.signals.stopped_by is None:
            console.say(
                f"claude said {watch.message!r}; the login is repaired, but the run was "
                f"not retried ({why_not}); run it again"
            )
        return code

    def _why_no_retry(self) -> str | None:
        if self.copy.dropped:
            return f"more than {self.copy.limit} bytes on stdin, set CLAUDE_WRAP_REPLAY_LIMIT"
        if self.stderr.written:
            return "it had already written to stderr"
        if self.stdout.broken:
            return "stdout was closed"
        return None

    def _launch(self) -> Run:
        try:
            run = Run(self.real, self.args, self.env, self.pipe_stdin, self.pipe_stderr)
        except OSError as exc:
            console.say(f"cannot run {self.real}: {exc.strerror}")
            raise SystemExit(126 if exc.errno != errno.ENOENT else 127) from None
        self.signals.pid = run.pid
        if self.signals.stopped_by is not None:
            os.kill(run.pid, self.signals.stopped_by)  # it arrived while we were between runs
        return run

    def _loop(self, run: Run, watch: detect.Watch | None) -> None:
        poller = select.poll()
        poller.register(self.signals.wake_r, select.POLLIN)
        open_out = {run.out}
        poller.register(run.out, select.POLLIN)
        if run.err >= 0:
            open_out.add(run.err)
            poller.register(run.err, select.POLLIN)
        stdin_on = self.pipe_stdin and not self.copy.eof
        if self.pipe_stdin and self.copy.eof and not self.pending:
            os.close(run.inp)
            run.inp = -1
        last_out = time.monotonic()
        in_watch = -1  # which fd we poll on for stdin: ours (0) or the child's (inp), or none
        child_full = False  # the child's stdin pipe had no room for what we spliced
        # Whether to ask if the child is gone: not after every chunk relayed (a wait4 each), but
        # when SIGCHLD woke us, an output ended, the poll timed out, or every so many turns.
        check = True
        turns = 0

        def want_stdin() -> None:
            nonlocal in_watch
            target = -1
            if run.inp >= 0 and (self.pending or child_full):
                target = run.inp
            elif run.inp >= 0 and stdin_on:
                target = 0
            if target == in_watch:
                return
            if in_watch >= 0:
                poller.unregister(in_watch)
            if target >= 0:
                poller.register(target, select.POLLOUT if target == run.inp else select.POLLIN)
            in_watch = target

        def close_out(fd: int) -> None:
            nonlocal check
            check = True
            open_out.discard(fd)
            poller.unregister(fd)
            os.close(fd)
            if fd == run.out:
                run.out = -1
            else:
                run.err = -1

        def pump(fd: int) -> str:
            """Relay what there is to read on one of the child's outputs: MORE, IDLE or EOF."""
            nonlocal last_out
            sink = self.stdout if fd == run.out else self.stderr
            # Once the watcher has let go (a healthy run), the kernel moves the bytes.
            if sink.splice and (
                watch is None or sink is self.stderr or watch.state == detect.HEALTHY
            ):
                n = sink.move_from(fd)
                if n:
                    return MORE
                if n == 0 or sink.broken:
                    close_out(fd)  # end of file, or our consumer went away (see below)
                    return EOF
                if sink.splice:
                    return IDLE
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                return IDLE
            if not data:
                close_out(fd)
                return EOF
            if fd == run.out:
                last_out = time.monotonic()
                if watch is not None:
                    data = watch.feed(data)
            sink.write(data)
            if sink.broken:
                # Our consumer went away: let the child find that out itself, as it would have
                # without us (EPIPE or SIGPIPE on its next write).
                close_out(fd)
                return EOF
            return MORE

        def take_stdin() -> None:
            """fd 0 is readable: give what it has to the child (and to the copy, while kept)."""
            nonlocal stdin_on, child_full
            if self.copy.on and (
                watch is None or watch.state == detect.HEALTHY or self.stderr.written
            ):
                self.copy.stop()  # no retry can happen any more: no replay to keep
            data = b""
            if not self.copy.on and self.splice_in:
                try:
                    moved = _moved(0, run.inp)
                except OSError as exc:
                    if exc.errno == errno.EPIPE:
                        self._child_stdin_gone(run)
                        return
                    moved = -1  # a read error, perhaps: let read say what it is
                if moved is None:
                    child_full = True  # (or fd 0 had nothing after all: then we come back)
                    return
                if moved > 0:
                    return
                if moved < 0:
                    self.splice_in = False
                    data = _read_stdin()
            else:
                data = _read_stdin()
            if data:
                self.copy.add(data)
                self.pending = memoryview(data)
                self._feed_child(run)
                return
            self.copy.eof = True
            stdin_on = False
            if not self.pending and run.inp >= 0:
                os.close(run.inp)
                run.inp = -1

        want_stdin()
        while True:
            turns += 1
            if (check or not open_out or turns % 64 == 0) and run.reap():
                # Gone: take what it left in the pipes, but do not wait for EOF: a grandchild
                # may hold them open for as long as it lives.
                for fd in list(open_out):
                    for _ in range(64):  # bounded: a grandchild may keep writing
                        if pump(fd) != MORE:
                            break
                    if fd in open_out:
                        close_out(fd)
                return
            check = False
            timeout = -1.0
            if self.signals.stop_at is not None or (watch is not None and watch.holding):
                now = time.monotonic()
                if self.signals.stop_at is not None:
                    if now >= self.signals.stop_at:
                        kill_tree(run.pid)
                        self.signals.stop_at = None  # a later stop signal starts another grace
                    else:
                        timeout = self.signals.stop_at - now
                if watch is not None and watch.holding and stdin_on and run.out >= 0:
                    left = last_out + self.quiet - now
                    if left <= 0:
                        self.stdout.write(watch.release())
                    else:
                        timeout = left if timeout < 0 else min(timeout, left)
            events = poller.poll(None if timeout < 0 else max(1, int(timeout * 1000) + 1))
            if not events:
                check = True
            for fd, ev in events:
                if fd == self.signals.wake_r:
                    self.signals.drain()
                    check = True
                elif fd in open_out:
                    pump(fd)
                elif fd == 0 and in_watch == 0:
                    take_stdin()
                    want_stdin()
                elif fd == run.inp and in_watch == run.inp:
                    child_full = False
                    if ev & (select.POLLERR | select.POLLHUP) and not ev & select.POLLOUT:
                        self._child_stdin_gone(run)
                    elif self.pending:
                        self._feed_child(run)
                    if run.inp >= 0 and not self.pending and self.copy.eof:
                        os.close(run.inp)
                        run.inp = -1
                    want_stdin()
                    if run.inp < 0:
                        stdin_on = False

    def _feed_child(self, run: Run) -> None:
        try:
            n = os.write(run.inp, self.pending)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            self._child_stdin_gone(run)
            return
        self.pending = self.pending[n:]  # a memoryview: no copy of what is left

    def _child_stdin_gone(self, run: Run) -> None:
        # The child closed its stdin (or exited): stop reading ours, so we take from the
        # consumer no more than the child did.
        self.pending = memoryview(b"")
        if run.inp >= 0:
            os.close(run.inp)
            run.inp = -1


def _stream_json_input(args: list[str]) -> bool:
    """A headless run fed stream-json on stdin: it stays open for as long as its caller (an
    editor, an SDK) keeps the pipe, often for hours. A list scan: no import on the hot path."""
    for i, arg in enumerate(args):
        if arg == "--input-format=stream-json":
            return True
        if arg == "--input-format" and args[i + 1 : i + 2] == ["stream-json"]:
            return True
    return False


def run(
    real: str, args: list[str], env: Mapping[str, str], *, preflight_failed: bool = False
) -> int:
    return Relay(real, args, env, preflight_failed=preflight_failed).run()

"""The byte plumbing of a relayed run (relay.py has the policy): our stdio wired to the real
claude's through pipes, each byte passed on as it arrives, output held back while the watcher
(detect.Watch) says it could still be a login failure, and stdin copied for a replay.

Once a run can no longer be retried (its output was judged healthy, or stdin outgrew the replay
limit), the bytes no longer pass through us: splice(2) moves them from pipe to pipe inside the
kernel (bench/run stdout, stdin), and reading and writing remain for what cannot be spliced.
The replay copy of stdin lives in a memory file (memfd), or an unlinked temporary file, that is
never mapped: spliced in from stdin and out to the child, it never enters our heap either.

Only builtins on the way (os, select, _signal): no subprocess, selectors or json for a healthy
run.
"""

from __future__ import annotations

# `_signal`, not `signal`: that one imports enum, ~10 ms on every watched run.
import _signal  # type: ignore[import-not-found]  # no typeshed stub
import errno
import posix
import select
import time

from claude_wrap import detect, fspath, paths, process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

CHUNK = 65536  # a pipe's capacity, the most one read from it returns
SPLICE_LEN = 1 << 20  # a splice moves what the pipes hold, up to this
MORE, IDLE, EOF = "more", "idle", "eof"
TURNS = 16  # moves of stdin per wake-up, at most: then the outputs get their turn
CHILD_PIPE = 1 << 20  # stdin's pipe and the child's, when stdin is a stream: fewer, larger moves
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)


def usable(fd: int) -> bool:
    try:
        posix.fstat(fd)
    except OSError:
        return False
    return True


def _terminal_foreground() -> bool:
    """Whether we are the foreground job of a terminal: a Ctrl-C then reaches our child too."""
    for fd in (0, 1, 2):
        try:
            if posix.isatty(fd) and posix.tcgetpgrp(fd) == posix.getpgrp():
                return True
        except OSError:
            continue
    return False


def _replay_file(env: Mapping[str, str], *, memfd: bool = True) -> int:
    """A file for the replay copy that no one else can open and that goes when we do: a memfd,
    else an unlinked file in the temporary folder; -1 when neither can be had (then the copy is
    kept in our heap, as before). `memfd=False` is the tests' way to the fallbacks."""
    if memfd and hasattr(posix, "memfd_create"):
        try:
            return posix.memfd_create("claude-wrap-stdin", posix.MFD_CLOEXEC)
        except OSError:
            pass
    folder = paths.temp_dir(env)
    flags = posix.O_RDWR | posix.O_CLOEXEC
    tmpfile = getattr(posix, "O_TMPFILE", 0)
    if tmpfile:
        try:
            return posix.open(folder, flags | tmpfile, 0o600)
        except OSError:
            pass
    name = fspath.join(folder, f".claude-wrap-stdin-{posix.getpid()}-{time.monotonic_ns()}")
    try:
        fd = posix.open(name, flags | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW, 0o600)
    except OSError:
        return -1
    try:
        posix.unlink(name)
    except OSError:
        posix.close(fd)
        return -1
    return fd


class Replay:
    """What the consumer wrote on stdin so far, up to `limit` bytes, for a replay; and, as long as
    it is kept, the way stdin goes to the child: into the file, then from the file to the child
    (`backlog` bytes are in it that the child has not taken yet). Kept only while a replay could
    still happen: past the limit, or once the run cannot be retried (its output was judged
    healthy), it stops growing, is freed once the child has the backlog, and stdin then goes to
    the child without passing through it."""

    __slots__ = ("dropped", "env", "eof", "fd", "heap", "limit", "memfd", "on", "sent", "size")

    def __init__(self, limit: int, env: Mapping[str, str], *, memfd: bool = True) -> None:
        self.limit = limit
        self.env = env
        self.memfd = memfd
        self.fd = -2  # -2: not made yet (a run without stdin never makes it), -1: in the heap
        self.heap = bytearray()
        self.size = 0  # bytes stored
        self.sent = 0  # of which the child has this many (in this launch)
        self.dropped = False  # past the limit: this invocation will not retry
        self.on = True  # still copying
        self.eof = False

    @property
    def backlog(self) -> int:
        return self.size - self.sent

    def _file(self) -> int:
        if self.fd == -2:
            self.fd = _replay_file(self.env, memfd=self.memfd)
        return self.fd

    def take_from(self, src: int) -> int | None:
        """Splice what `src` holds into the file: the count (0: end of file), None when there
        was nothing, -1 when it cannot be spliced (read it and `add` it instead)."""
        fd = self._file()
        if fd < 0:
            return -1
        try:
            n = posix.splice(
                src, fd, SPLICE_LEN, offset_dst=self.size, flags=posix.SPLICE_F_NONBLOCK
            )
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF):
                return -1  # stdin is not a pipe (a file, a socket): read it
            raise
        self._grew(n)
        return n

    def add(self, data: bytes) -> None:
        if not data:
            return
        fd = self._file()
        if fd >= 0:
            view = memoryview(data)
            at = self.size
            while view:
                n = posix.pwrite(fd, view, at)
                view = view[n:]
                at += n
        else:
            self.heap += data
        self._grew(len(data))

    def _grew(self, n: int) -> None:
        self.size += n
        if self.size > self.limit:
            self.dropped = True
            self.on = False  # the backlog still goes to the child, then the file is freed

    def give_to(self, dst: int) -> int | None:
        """Pass on some of the backlog to `dst` (the child's stdin): the count, or None when it
        is full. OSError (EPIPE) when the child closed its stdin."""
        want = self.backlog
        if want <= 0:
            return 0
        try:
            if self.fd >= 0:
                try:
                    n = posix.splice(
                        self.fd, dst, want, offset_src=self.sent, flags=posix.SPLICE_F_NONBLOCK
                    )
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    n = posix.write(dst, posix.pread(self.fd, min(want, CHUNK), self.sent))
            else:
                n = posix.write(dst, self.heap[self.sent : self.sent + min(want, CHUNK)])
        except BlockingIOError:
            return None
        self.sent += n
        if not self.on and not self.backlog:
            self.free()
        return n

    def rewind(self) -> None:
        """For the next launch: the whole copy is its backlog."""
        self.sent = 0

    def stop(self) -> None:
        """No retry can happen any more: copy no more; free it once the child has the backlog."""
        self.on = False
        if not self.backlog:
            self.free()

    def free(self) -> None:
        if self.fd >= 0:
            posix.close(self.fd)
        self.fd = -1 if self.fd != -2 else -2
        self.heap = bytearray()
        self.size = self.sent = 0


def read_stdin() -> bytes:
    try:
        return posix.read(0, CHUNK)
    except OSError:
        return b""  # taken as its end, as a closed stdin


class Signals:
    """SIGCHLD and the stop signals wake the poll loop through a pipe; stop signals are passed to
    the child as they arrive."""

    def __init__(self) -> None:
        self.wake_r, self.wake_w = posix.pipe()
        posix.set_blocking(self.wake_r, False)
        posix.set_blocking(self.wake_w, False)
        self.pid: int | None = None
        self.stop_at: float | None = None  # when a stop signal's grace period ends
        self.stopped_by: int | None = None
        self.terminal = _terminal_foreground()
        self._saved: dict[int, object] = {}
        self._old_wakeup = -1

    def install(self, grace: float) -> None:
        self._old_wakeup = _signal.set_wakeup_fd(self.wake_w)

        def on_stop(signum: int, _frame: object) -> None:
            if signum in process.STOP_SIGNALS:
                self.stopped_by = signum
                if self.stop_at is None:
                    self.stop_at = time.monotonic() + grace
            if signum in (_signal.SIGINT, _signal.SIGQUIT) and self.terminal:
                return  # the terminal sent it to our whole process group: the child has it
            if self.pid is not None:
                try:
                    posix.kill(self.pid, signum)
                except ProcessLookupError:
                    pass

        self._saved[_signal.SIGCHLD] = _signal.signal(_signal.SIGCHLD, lambda *_: None)
        for signum in FORWARDED:
            if _signal.getsignal(signum) is _signal.SIG_IGN:
                continue  # ignored by whoever started us (nohup): the child inherits that
            self._saved[signum] = _signal.signal(signum, on_stop)

    def drain(self) -> None:
        try:
            while posix.read(self.wake_r, 512):
                pass
        except OSError:
            pass

    def restore(self) -> None:
        for signum, handler in self._saved.items():
            _signal.signal(signum, handler)
        _signal.set_wakeup_fd(self._old_wakeup)
        posix.close(self.wake_r)
        posix.close(self.wake_w)


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
        return posix.splice(src, dst, SPLICE_LEN, flags=posix.SPLICE_F_NONBLOCK)
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
        self.splice = hasattr(posix, "splice")  # until the kernel says it cannot splice to this fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.broken:
            try:
                n = posix.write(self.fd, view)
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


def _is_stream(fd: int) -> bool:
    """A pipe, socket or file: data that can come fast (not /dev/null, not a terminal)."""
    try:
        mode = posix.fstat(fd).st_mode
    except OSError:
        return False
    kind = mode & 0o170000
    return kind in (0o010000, 0o140000, 0o100000)  # S_IFIFO, S_IFSOCK, S_IFREG


def _widen(fd: int) -> None:
    """Grow the pipe `fd` to CHILD_PIPE if it is smaller (Linux; the default is 64 KiB): our
    pipe to the child's stdin, and the pipe our stdin comes through. Never shrinks one: whoever
    made it may have grown it further. Not a pipe (a file, a socket) or not allowed (a lower
    /proc/sys/fs/pipe-max-size, the user's pipe pages used up): left as it is, which works too."""
    try:
        import fcntl  # noqa: PLC0415 - only for a run fed a stream on stdin

        if fcntl.fcntl(fd, getattr(fcntl, "F_GETPIPE_SZ", 1032)) < CHILD_PIPE:
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), CHILD_PIPE)
    except (ImportError, OSError):
        pass


class Streams:
    """Our side of the plumbing, kept across the launches of one invocation: our outputs, the
    replay copy of stdin, what of stdin the child has not taken yet, and the signals."""

    def __init__(self, env: Mapping[str, str], quiet: float) -> None:
        self.pipe_stdin = usable(0) and not posix.isatty(0)
        self.pipe_stderr = usable(2) and not posix.isatty(2)
        self.stdin_stream = self.pipe_stdin and _is_stream(0)
        if self.stdin_stream:
            # Each wake-up moves what stdin's pipe holds: 64 KiB in a default pipe, 4096 wake-ups
            # (poll, splice, the loop's Python) and as many stalls of the writer at 256 MiB.
            # Grown, the writer runs on while we move up to 1 MiB at a time. bench/run stdin at
            # 256 MiB, load 6-7 (noisy): 0.47-0.61x direct before, 0.59-1.30x after (a direct
            # run keeps the 64 KiB pipe); our CPU for the 256 MiB, 82.5 -> 75.6 ms: the replay's
            # 64 MiB, copied into the memfd, is most of what is left.
            _widen(0)
        self.stdout = Output(1)
        self.stderr = Output(2)
        self.copy = Replay(paths.replay_limit(env), env)
        self.signals = Signals()
        self.quiet = quiet
        # stdin read but not yet taken by the child, once it is no longer copied (a view: taking
        # part of it copies nothing)
        self.pending = memoryview(b"")
        self.splice_in = hasattr(posix, "splice")  # until the kernel says it cannot splice fd 0

    def has_pending(self) -> bool:
        return bool(self.pending) or self.copy.backlog > 0


class Launch:
    """One launch of the real claude, and the loop relaying its streams until it has exited.
    OSError from the constructor when claude cannot be started (process.spawn)."""

    def __init__(
        self, real: str, args: list[str], env: Mapping[str, str], streams: Streams
    ) -> None:
        self.streams = streams
        fds_parent: list[int] = []
        plan = []  # (fd in the child, our end to put there)
        out_r, out_w = posix.pipe()
        plan.append((1, out_w))
        fds_parent += [out_r, out_w]
        self.inp = self.err = -1
        if streams.pipe_stdin:
            in_r, self.inp = posix.pipe()
            plan.append((0, in_r))
            fds_parent += [in_r, self.inp]
        if streams.pipe_stderr:
            self.err, err_w = posix.pipe()
            plan.append((2, err_w))
            fds_parent += [self.err, err_w]
        self.out = out_r
        try:
            self.pid = process.spawn(real, [real, *args], dict(env), plan)
        except OSError:
            for fd in fds_parent:
                posix.close(fd)
            raise
        posix.close(out_w)
        if streams.pipe_stdin:
            posix.close(in_r)
            posix.set_blocking(self.inp, False)
            if streams.stdin_stream:
                _widen(self.inp)
        if streams.pipe_stderr:
            posix.close(err_w)
            posix.set_blocking(self.err, False)
        posix.set_blocking(self.out, False)
        self.status: int | None = None
        # The loop's state.
        self.watch: detect.Watch | None = None
        self.poller = select.poll()
        self.open_out: set[int] = set()
        self.stdin_on = False
        self.last_out = time.monotonic()
        self.in_watch = -1  # which fd we poll on for stdin: ours (0) or the child's (inp), or none
        self.child_full = False  # the child's stdin pipe had no room for what we spliced
        # Whether to ask if the child is gone: not after every chunk relayed (a wait4 each), but
        # when SIGCHLD woke us, an output ended, the poll timed out, or every so many turns.
        self.check = True

    def reap(self) -> bool:
        if self.status is None:
            self.status = process.reap(self.pid)
        return self.status is not None

    def close(self) -> None:
        for fd in (self.inp, self.out, self.err):
            if fd >= 0:
                try:
                    posix.close(fd)
                except OSError:
                    pass
        self.inp = self.out = self.err = -1

    def relay(self, watch: detect.Watch | None) -> int:
        """Relay until the child has exited; its waitpid status."""
        s = self.streams
        self.watch = watch
        self.poller.register(s.signals.wake_r, select.POLLIN)
        self.open_out.add(self.out)
        self.poller.register(self.out, select.POLLIN)
        if self.err >= 0:
            self.open_out.add(self.err)
            self.poller.register(self.err, select.POLLIN)
        self.stdin_on = s.pipe_stdin and not s.copy.eof
        if s.pipe_stdin and s.copy.eof and not s.has_pending():
            self._close_inp()
        self._want_stdin()
        turns = 0
        while True:
            turns += 1
            if (self.check or not self.open_out or turns % 64 == 0) and self.reap():
                self._drain_outputs()
                assert self.status is not None
                return self.status
            self.check = False
            timeout = self._timeout()
            events = self.poller.poll(None if timeout < 0 else max(1, int(timeout * 1000) + 1))
            if not events:
                self.check = True
            for fd, ev in events:
                if fd == s.signals.wake_r:
                    s.signals.drain()
                    self.check = True
                elif fd in self.open_out:
                    self._pump(fd)
                elif fd == 0 and self.in_watch == 0:
                    self._take_stdin()
                    self._want_stdin()
                elif fd == self.inp and self.in_watch == self.inp:
                    self._child_ready(ev)

    def _drain_outputs(self) -> None:
        # Gone: take what it left in the pipes, but do not wait for EOF: a grandchild may hold
        # them open for as long as it lives.
        for fd in list(self.open_out):
            for _ in range(64):  # bounded: a grandchild may keep writing
                if self._pump(fd) != MORE:
                    break
            if fd in self.open_out:
                self._close_out(fd)

    def _timeout(self) -> float:
        """Seconds until the loop has something to do unasked (-1: nothing): the end of a stop
        signal's grace period, or releasing held output after a quiet spell."""
        s, watch = self.streams, self.watch
        timeout = -1.0
        if s.signals.stop_at is None and (watch is None or not watch.holding):
            return timeout
        now = time.monotonic()
        if s.signals.stop_at is not None:
            if now >= s.signals.stop_at:
                process.kill_tree(self.pid)
                s.signals.stop_at = None  # a later stop signal starts another grace
            else:
                timeout = s.signals.stop_at - now
        if watch is not None and watch.holding and self.stdin_on and self.out >= 0:
            left = self.last_out + s.quiet - now
            if left <= 0:
                s.stdout.write(watch.release())
            else:
                timeout = left if timeout < 0 else min(timeout, left)
        return timeout

    def _want_stdin(self) -> None:
        target = -1
        if self.inp >= 0 and (self.streams.has_pending() or self.child_full):
            target = self.inp
        elif self.inp >= 0 and self.stdin_on:
            target = 0
        if target == self.in_watch:
            return
        if self.in_watch >= 0:
            self.poller.unregister(self.in_watch)
        if target >= 0:
            self.poller.register(target, select.POLLOUT if target == self.inp else select.POLLIN)
        self.in_watch = target

    def _close_out(self, fd: int) -> None:
        self.check = True
        self.open_out.discard(fd)
        self.poller.unregister(fd)
        posix.close(fd)
        if fd == self.out:
            self.out = -1
        else:
            self.err = -1

    def _close_inp(self) -> None:
        if self.inp >= 0:
            posix.close(self.inp)
            self.inp = -1

    def _pump(self, fd: int) -> str:
        """Relay what there is to read on one of the child's outputs: MORE, IDLE or EOF."""
        s, watch = self.streams, self.watch
        sink = s.stdout if fd == self.out else s.stderr
        # Once the watcher has let go (a healthy run), the kernel moves the bytes.
        if sink.splice and (watch is None or sink is s.stderr or watch.state == detect.HEALTHY):
            n = sink.move_from(fd)
            if n:
                return MORE
            if n == 0 or sink.broken:
                self._close_out(fd)  # end of file, or our consumer went away (see below)
                return EOF
            if sink.splice:
                return IDLE
        try:
            data = posix.read(fd, CHUNK)
        except BlockingIOError:
            return IDLE
        if not data:
            self._close_out(fd)
            return EOF
        if fd == self.out:
            self.last_out = time.monotonic()
            if watch is not None:
                data = watch.feed(data)
        sink.write(data)
        if sink.broken:
            # Our consumer went away: let the child find that out itself, as it would have
            # without us (EPIPE or SIGPIPE on its next write).
            self._close_out(fd)
            return EOF
        return MORE

    def _take_stdin(self) -> None:
        """fd 0 is readable: give what it has to the child (through the copy, while kept).
        Up to TURNS moves before polling again: a busy stdin keeps them all full."""
        s, watch = self.streams, self.watch
        copy = s.copy
        if copy.on and (watch is None or watch.state == detect.HEALTHY or s.stderr.written):
            copy.stop()  # no retry can happen any more: no replay to keep
        for turn in range(TURNS):
            if copy.on:
                moved = self._copy_stdin()
                if moved is None:
                    return
                if moved > 0:
                    self._feed_child()
                    if copy.backlog or self.inp < 0 or not s.splice_in:
                        # The child is full (or gone): poll for it. Or fd 0 was read, not
                        # spliced: a blocking read must wait for poll to say it is ready, or it
                        # stalls the whole relay on a client that keeps stdin open and idle.
                        return
                    continue
            else:
                data = b""
                if s.splice_in:
                    try:
                        moved = _moved(0, self.inp)
                    except OSError as exc:
                        if exc.errno == errno.EPIPE:
                            self._child_stdin_gone()
                            return
                        moved = -1  # a read error, perhaps: let read say what it is
                    if moved is None:
                        # The child is full, or fd 0 had nothing after all (then we come back);
                        # after a move in this turn, most likely the latter.
                        self.child_full = turn == 0
                        return
                    if moved > 0:
                        continue
                    if moved < 0:
                        s.splice_in = False
                        data = read_stdin()
                else:
                    data = read_stdin()
                if data:
                    s.pending = memoryview(data)
                    self._feed_child()
                    return
            copy.eof = True
            self.stdin_on = False
            if not s.has_pending():
                self._close_inp()
            return

    def _copy_stdin(self) -> int | None:
        """Take what fd 0 has into the replay copy: the count (0: its end), None: nothing now."""
        s = self.streams
        try:
            moved = s.copy.take_from(0) if s.splice_in else -1
        except OSError:
            moved = -1  # a read error, perhaps: let read say what it is
        if moved is not None and moved < 0:
            s.splice_in = False
            data = read_stdin()
            s.copy.add(data)
            moved = len(data)
        return moved

    def _child_ready(self, ev: int) -> None:
        """The child's stdin has room (or is gone)."""
        s = self.streams
        self.child_full = False
        if ev & (select.POLLERR | select.POLLHUP) and not ev & select.POLLOUT:
            self._child_stdin_gone()
        elif s.has_pending():
            self._feed_child()
        if self.inp >= 0 and not s.has_pending() and s.copy.eof:
            self._close_inp()
        self._want_stdin()
        if self.inp < 0:
            self.stdin_on = False

    def _feed_child(self) -> None:
        s = self.streams
        try:
            if s.copy.backlog > 0:
                s.copy.give_to(self.inp)
                return
            n = posix.write(self.inp, s.pending)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            self._child_stdin_gone()
            return
        s.pending = s.pending[n:]  # a memoryview: no copy of what is left

    def _child_stdin_gone(self) -> None:
        # The child closed its stdin (or exited): stop reading ours, so we take from the
        # consumer no more than the child did.
        s = self.streams
        s.pending = memoryview(b"")
        s.copy.sent = s.copy.size  # nothing more of this launch's backlog goes anywhere
        if not s.copy.on:
            s.copy.free()
        self._close_inp()

"""The byte plumbing of a relayed run (relay.py has the policy): our stdio wired to the real
claude's through pipes of ours, each byte passed on as it arrives, output held back while the
watcher (detect.Watch) says it could still be a login failure, and stdin copied for a replay.

The loop blocks nowhere but in its poll. Our fds 0, 1 and 2 are open files we share with whoever
started us, so they are never made non-blocking: each is read or written only once poll has said
it is ready, once per readiness, and never more than that readiness promises (Output). Node's
child_process gives us a socket as stdin and keeps it open and idle until it has the answer: a
second read there would wait for a message that comes only after the answer. The pipes to the
child are ours, and non-blocking. The three streams flow apart, each holding at most one chunk
in us: a consumer that stops reading our stdout holds back claude's stdout, as it would without
us, and nothing else (stdin keeps flowing to claude).

Where the kernel has splice(2) (Linux), it moves bytes between two pipes without their passing
through us, and without blocking whatever the open files' modes (SPLICE_F_NONBLOCK): stdin's
pipe into the replay copy or into the child's pipe, and, once the watcher has let go, the child's
output pipes into ours. Only where our descriptor is a pipe: a socket, a file or a terminal is
read and written. `CLAUDE_WRAP_SPLICE=0` sends pipes that way too, as on a system without splice
(macOS).

The replay copy of stdin lives in a memory file (memfd), or an unlinked temporary file, that is
never mapped: spliced in from stdin and out to the child, it never enters our heap either.

Only builtins on the way (posix, select, _signal; _socket when one of our outputs is a socket):
no os, subprocess, selectors or json for a healthy run.
"""

from __future__ import annotations

# `_signal`, not `signal`: that one imports enum, ~10 ms on every watched run.
import _signal  # type: ignore[import-not-found]  # no typeshed stub
import errno
import posix
import select
import time

from claude_wrap.config import fspath
from claude_wrap.config.settings import Settings
from claude_wrap.watch import detect, process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CHUNK = 65536  # a default pipe's capacity, the most one read takes
SPLICE_LEN = 1 << 20  # a splice moves what the pipe holds, up to this
# What a pipe or a terminal that poll said has room takes without blocking: POLLOUT on a pipe
# promises PIPE_BUF bytes (Linux: a free page of the pipe; macOS: PIPE_BUF free), and a blocking
# write of more waits until the reader has taken the rest.
ROOM = select.PIPE_BUF
MORE, IDLE, EOF = "more", "idle", "eof"
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
# What a descriptor is, for how it may be read and written (_kind).
PIPE, SOCKET, FILE, OTHER = "pipe", "socket", "file", "other"


def usable(fd: int) -> bool:
    try:
        posix.fstat(fd)
    except OSError:
        return False
    return True


def _kind(fd: int) -> str:
    """PIPE (a pipe or a FIFO), SOCKET, FILE (a regular file or a block device: a write there never
    waits for a reader) or OTHER (a terminal, a character device); "" when `fd` is not open."""
    try:
        mode = posix.fstat(fd).st_mode & 0o170000
    except OSError:
        return ""
    if mode == 0o010000:  # S_IFIFO
        return PIPE
    if mode == 0o140000:  # S_IFSOCK
        return SOCKET
    if mode in (0o100000, 0o060000):  # S_IFREG, S_IFBLK
        return FILE
    return OTHER


def _terminal_foreground() -> bool:
    """Whether we are the foreground job of a terminal: a Ctrl-C then reaches our child too."""
    for fd in (0, 1, 2):
        try:
            if posix.isatty(fd) and posix.tcgetpgrp(fd) == posix.getpgrp():
                return True
        except OSError:
            continue
    return False


def _replay_file(settings: Settings, *, memfd: bool = True) -> int:
    """A file for the replay copy that no one else can open and that goes when we do: a memfd,
    else an unlinked file in the temporary folder; -1 when neither can be had (then the copy is
    kept in our heap, as before). `memfd=False` is the tests' way to the fallbacks."""
    if memfd and hasattr(posix, "memfd_create"):
        try:
            return posix.memfd_create("claude-wrap-stdin", posix.MFD_CLOEXEC)
        except OSError:
            pass
    folder = settings.temp_dir
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

    __slots__ = (
        "dropped", "eof", "fd", "heap", "limit", "memfd", "on", "sent", "settings", "size", "splice"
    )

    def __init__(
        self, limit: int, settings: Settings, *, memfd: bool = True, splice: bool = True
    ) -> None:
        self.limit = limit
        self.settings = settings
        self.memfd = memfd
        self.splice = splice and hasattr(posix, "splice")  # from the file to the child's pipe
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
            self.fd = _replay_file(self.settings, memfd=self.memfd)
        return self.fd

    def take_from(self, src: int) -> int | None:
        """Splice what the pipe `src` holds into the file, without blocking: the count (0: end of
        file), None when there was nothing, -1 when it cannot be spliced (read it and `add` it
        instead)."""
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
                return -1  # not to be spliced after all: read it
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
        """Pass on some of the backlog to `dst` (the child's stdin, ours, non-blocking): the
        count, or None when it is full. OSError (EPIPE) when the child closed its stdin."""
        want = self.backlog
        if want <= 0:
            return 0
        try:
            if self.fd >= 0 and not self.splice:
                n = posix.write(dst, posix.pread(self.fd, min(want, CHUNK), self.sent))
            elif self.fd >= 0:
                try:
                    n = posix.splice(
                        self.fd, dst, want, offset_src=self.sent, flags=posix.SPLICE_F_NONBLOCK
                    )
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    self.splice = False
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
        self.received = 0  # signals of FORWARDED that reached us
        self.terminal = _terminal_foreground()
        self._saved: dict[int, object] = {}
        self._old_wakeup = -1

    def install(self, grace: float) -> None:
        self._old_wakeup = _signal.set_wakeup_fd(self.wake_w)

        def on_stop(signum: int, _frame: object) -> None:
            self.received += 1
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


def read_stdin() -> bytes | None:
    """One read of fd 0, which poll said is ready: what it has, up to CHUNK; None when it had
    nothing after all (someone else read it first, and made it non-blocking)."""
    try:
        return posix.read(0, CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""  # taken as its end, as a closed stdin


def _ready(fd: int, events: int, timeout_ms: int) -> bool:
    poller = select.poll()  # not select.select: it cannot take an fd above 1023
    poller.register(fd, events)
    return bool(poller.poll(timeout_ms))


def _moved(src: int, dst: int) -> int | None:
    """Move up to SPLICE_LEN bytes from the pipe `src` to the pipe `dst` inside the kernel, without
    blocking (SPLICE_F_NONBLOCK holds for both pipes whatever their open files' modes): the count
    moved (0: end of file), None when one side has to wait, or -1 when the kernel cannot splice
    these two (then read and write them)."""
    try:
        return posix.splice(src, dst, SPLICE_LEN, flags=posix.SPLICE_F_NONBLOCK)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            return -1
        raise


class Output:
    """One of our own output streams (fd 1 or 2), and what the child gave it that it has not
    taken yet (`pending`: one read at most, or what the watcher released). The open file is
    shared with whoever started us, so it is never made non-blocking: it is written only once poll
    says it has room, and only what that room promises: all of it to a file (a write there never
    waits for a reader), what a socket takes at once (send with MSG_DONTWAIT, non-blocking for that
    one call), ROOM bytes to a pipe or a terminal; or, when it is a pipe, what a non-blocking
    splice moves there from the child's pipe. A consumer that went away (`| head -1`) ends
    relaying quietly (`broken`)."""

    __slots__ = ("broken", "fd", "full", "kind", "passed", "pending", "sock", "splice")

    def __init__(self, fd: int, *, splice: bool) -> None:
        self.fd = fd
        self.kind = _kind(fd)
        self.splice = splice and self.kind == PIPE  # until the kernel says it cannot
        self.broken = False
        self.passed = 0  # bytes of the child's taken for this stream (written, or pending)
        self.pending = memoryview(b"")
        self.full = False  # a splice found no room here: the child's pipe waits for ours
        self.sock: Any = None  # (a socket on a dup of fd, MSG_DONTWAIT), made when first needed

    def waiting(self) -> bool:
        """Whether this stream waits for room in fd (the child's pipe is not read meanwhile)."""
        return not self.broken and (bool(self.pending) or self.full)

    def add(self, data: bytes) -> None:
        if data and not self.broken:
            self.passed += len(data)
            self.pending = memoryview(bytes(self.pending) + data if self.pending else data)

    def send(self) -> None:
        """fd has room (poll said so): write what that room takes of `pending`."""
        view = self.pending
        try:
            if self.kind == SOCKET:
                sock, dontwait = self._socket()
                n = sock.send(view, dontwait)
            elif self.kind == FILE:
                n = posix.write(self.fd, view)
            else:
                n = posix.write(self.fd, view[:ROOM])
        except BlockingIOError:
            return  # another writer took the room first, or made the open file non-blocking
        except OSError as exc:
            self.fail(exc)
            return
        self.pending = view[n:]

    def _socket(self) -> tuple[Any, int]:
        if self.sock is None:
            import _socket  # noqa: PLC0415 - only when an output is a socket

            # A dup: closing the socket object closes the dup, never our fd 1 or 2.
            dup = posix.dup(self.fd)
            try:
                self.sock = (_socket.socket(fileno=dup), _socket.MSG_DONTWAIT)
            except OSError:
                posix.close(dup)
                raise
        return self.sock  # type: ignore[no-any-return]

    def fail(self, exc: OSError) -> None:
        gone = (errno.EPIPE, errno.EBADF, errno.EINVAL, errno.ECONNRESET, errno.ENOTCONN)
        if exc.errno not in gone:
            raise exc
        self.broken = True
        self.pending = memoryview(b"")
        self.full = False

    def close(self) -> None:
        if self.sock is not None:
            self.sock[0].close()
            self.sock = None


class Streams:
    """Our side of the plumbing, kept across the launches of one invocation: our outputs, the
    replay copy of stdin, what of stdin the child has not taken yet, and the signals."""

    def __init__(self, settings: Settings, quiet: float) -> None:
        splice = hasattr(posix, "splice") and settings.splicing
        self.pipe_stdin = usable(0) and not posix.isatty(0)
        self.pipe_stderr = usable(2) and not posix.isatty(2)
        # stdin's pipe is spliced; anything else is read, once per readiness
        self.splice_in = splice and self.pipe_stdin and _kind(0) == PIPE
        self.stdout = Output(1, splice=splice)
        self.stderr = Output(2, splice=splice)
        self.copy = Replay(settings.replay_limit, settings, splice=splice)
        self.signals = Signals()
        self.quiet = quiet
        # stdin read but not yet taken by the child, once it is no longer copied (a view: taking
        # part of it copies nothing)
        self.pending = memoryview(b"")

    def has_pending(self) -> bool:
        return bool(self.pending) or self.copy.backlog > 0

    def write(self, out: Output, data: bytes) -> None:
        """Give `data` to `out` once no child runs (what a run left held), waiting in a poll for
        room: abandoned when a signal comes meanwhile (a consumer that stopped reading must not
        keep us from ending)."""
        out.add(data)
        self.flush(out)

    def flush(self, out: Output) -> None:
        """Write what `out` has pending, waiting in a poll for room (see write)."""
        while out.pending and not out.broken:
            if not self.wait_room(out):
                out.pending = memoryview(b"")
                return
            out.send()

    def wait_room(self, out: Output) -> bool:
        """Wait in a poll until `out` has room: False when a signal came first."""
        signals = self.signals
        before = signals.received
        poller = select.poll()
        poller.register(out.fd, select.POLLOUT)
        poller.register(signals.wake_r, select.POLLIN)
        while signals.received == before:
            for fd, _ev in poller.poll():
                if fd == out.fd:
                    return True
                signals.drain()
        return False

    def close(self) -> None:
        self.stdout.close()
        self.stderr.close()


class Flow:
    """One of the child's outputs on its way to one of ours: `src`, our end of the child's pipe
    (-1 once closed), the Output it goes to, and which of the two the loop polls: `src` while the
    Output has room in us, else the Output's fd, until it has taken what is pending."""

    __slots__ = ("polled", "sink", "src")

    def __init__(self, src: int, sink: Output) -> None:
        self.src = src
        self.sink = sink
        self.polled = -1


class Launch:
    """One launch of the real claude, and the loop relaying its streams until it has exited.
    OSError from the constructor when claude cannot be started (process.spawn)."""

    def __init__(
        self, real: str, args: list[str], settings: Settings, streams: Streams
    ) -> None:
        self.streams = streams
        fds_parent: list[int] = []
        plan = []  # (fd in the child, our end to put there)
        out_r, out_w = posix.pipe()
        plan.append((1, out_w))
        fds_parent += [out_r, out_w]
        self.inp = err_r = -1
        if streams.pipe_stdin:
            in_r, self.inp = posix.pipe()
            plan.append((0, in_r))
            fds_parent += [in_r, self.inp]
        if streams.pipe_stderr:
            err_r, err_w = posix.pipe()
            plan.append((2, err_w))
            fds_parent += [err_r, err_w]
        try:
            self.pid = process.spawn(real, [real, *args], settings.child_env(), plan)
        except OSError:
            for fd in fds_parent:
                posix.close(fd)
            raise
        posix.close(out_w)
        posix.set_blocking(out_r, False)
        self.out = Flow(out_r, streams.stdout)
        self.flows = [self.out]
        if streams.pipe_stdin:
            posix.close(in_r)
            posix.set_blocking(self.inp, False)
        if streams.pipe_stderr:
            posix.close(err_w)
            posix.set_blocking(err_r, False)
            self.flows.append(Flow(err_r, streams.stderr))
        self.status: int | None = None
        # The loop's state.
        self.watch: detect.Watch | None = None
        self.poller = select.poll()
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
        for fd in (self.inp, *(flow.src for flow in self.flows)):
            if fd >= 0:
                try:
                    posix.close(fd)
                except OSError:
                    pass
        self.inp = -1
        for flow in self.flows:
            flow.src = -1

    def relay(self, watch: detect.Watch | None) -> int:
        """Relay until the child has exited; its waitpid status."""
        s = self.streams
        self.watch = watch
        self.poller.register(s.signals.wake_r, select.POLLIN)
        for flow in self.flows:
            self._want_output(flow)
        self.stdin_on = s.pipe_stdin and not s.copy.eof
        if s.pipe_stdin and s.copy.eof and not s.has_pending():
            self._close_inp()
        self._want_stdin()
        turns = 0
        while True:
            turns += 1
            ended = all(flow.src < 0 for flow in self.flows)
            if (self.check or ended or turns % 64 == 0) and self.reap():
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
                elif fd == 0 and self.in_watch == 0:
                    self._take_stdin()
                    self._want_stdin()
                elif fd == self.inp and self.in_watch == self.inp:
                    self._child_ready(ev)
                else:
                    for flow in self.flows:
                        if fd == flow.polled:
                            self._step(flow)
                            break

    def _drain_outputs(self) -> None:
        """Gone: take what it left in the pipes, but do not wait for EOF (a grandchild may hold
        them open for as long as it lives), and pass it on as our outputs have room."""
        s = self.streams
        for flow in self.flows:
            sink = flow.sink
            turns = 64  # bounded: a grandchild may keep writing
            left = False  # a signal came while our consumer had no room: leave the rest
            while flow.src >= 0 and not sink.broken and turns and not left:
                if sink.waiting():
                    left = not s.wait_room(sink)
                    if not left:
                        self._step(flow)
                elif self._pump(flow) == MORE:
                    turns -= 1
                elif not sink.full:
                    break  # nothing more there now
            if not left:
                s.flush(sink)
            if flow.src >= 0:
                self._close_src(flow)

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
        if watch is not None and watch.holding and self.stdin_on and self.out.src >= 0:
            left = self.last_out + s.quiet - now
            if left <= 0:
                s.stdout.add(watch.release())
                self._want_output(self.out)
            else:
                timeout = left if timeout < 0 else min(timeout, left)
        return timeout

    # --- the child's outputs ---------------------------------------------------------------------

    def _want_output(self, flow: Flow) -> None:
        sink = flow.sink
        target = sink.fd if sink.waiting() else flow.src
        events = select.POLLOUT if target == sink.fd else select.POLLIN
        flow.polled = self._repoll(flow.polled, target, events)

    def _step(self, flow: Flow) -> None:
        """What the flow polled is ready: our output has room, or the child's pipe has data."""
        sink = flow.sink
        if sink.pending:
            sink.send()
        else:
            sink.full = False
            self._pump(flow)
        if sink.broken and flow.src >= 0:
            # Our consumer went away: let the child find that out itself, as it would have
            # without us (EPIPE or SIGPIPE on its next write).
            self._close_src(flow)
        self._want_output(flow)

    def _pump(self, flow: Flow) -> str:
        """Take what there is on one of the child's outputs for ours: MORE, IDLE or EOF."""
        watch, sink, src = self.watch, flow.sink, flow.src
        # Once the watcher has let go (a healthy run), the kernel moves the bytes.
        healthy = watch is None or flow is not self.out or watch.state == detect.Output.HEALTHY
        if sink.splice and healthy:
            try:
                n = _moved(src, sink.fd)
            except OSError as exc:
                sink.fail(exc)  # our consumer went away
                return EOF
            if n is None:
                # Our pipe is empty or the consumer's is full (splice cannot tell which): wait
                # for the consumer only when there is something to give it.
                sink.full = _ready(src, select.POLLIN, 0)
                return IDLE
            if n > 0:
                sink.passed += n
                return MORE
            if n == 0:
                self._close_src(flow)
                return EOF
            sink.splice = False
        try:
            data = posix.read(src, CHUNK)
        except BlockingIOError:
            return IDLE
        if not data:
            self._close_src(flow)
            return EOF
        if flow is self.out:
            self.last_out = time.monotonic()
            if watch is not None:
                data = watch.feed(data)
        sink.add(data)
        return MORE

    def _close_src(self, flow: Flow) -> None:
        self.check = True
        if flow.polled == flow.src:
            self.poller.unregister(flow.src)
            flow.polled = -1
        posix.close(flow.src)
        flow.src = -1
        flow.sink.full = False

    # --- stdin -----------------------------------------------------------------------------------

    def _want_stdin(self) -> None:
        target = -1
        if self.inp >= 0 and (self.streams.has_pending() or self.child_full):
            target = self.inp
        elif self.inp >= 0 and self.stdin_on:
            target = 0
        self.in_watch = self._repoll(
            self.in_watch, target, select.POLLOUT if target == self.inp else select.POLLIN
        )

    def _repoll(self, polled: int, target: int, events: int) -> int:
        """Poll `target` for `events` instead of `polled` (-1: none); returns what is polled now."""
        if target != polled:
            if polled >= 0:
                self.poller.unregister(polled)
            if target >= 0:
                self.poller.register(target, events)
        return target

    def _close_inp(self) -> None:
        if self.inp >= 0:
            posix.close(self.inp)
            self.inp = -1

    def _take_stdin(self) -> None:
        """fd 0 is ready (poll said so): take from it once, and give that to the child (through
        the copy, while it is kept). Once: a second read of a stdin kept open and idle would
        wait for its next message, and the relay with it."""
        s, watch = self.streams, self.watch
        copy = s.copy
        if copy.on and (watch is None or watch.state == detect.Output.HEALTHY or s.stderr.passed):
            copy.stop()  # no retry can happen any more: no replay to keep
        if copy.on:
            n = self._copy_stdin()
            if n is None:
                return
            if n > 0:
                self._feed_child()
                return
        else:
            n = self._splice_stdin() if s.splice_in else -1
            if n is None or n > 0:
                return
            if n < 0:
                data = read_stdin()
                if data is None:
                    return
                if data:
                    s.pending = memoryview(data)
                    self._feed_child()
                    return
        copy.eof = True
        self.stdin_on = False
        if not s.has_pending():
            self._close_inp()

    def _copy_stdin(self) -> int | None:
        """Take what fd 0 has into the replay copy: the count (0: its end), None: nothing now."""
        s = self.streams
        try:
            n = s.copy.take_from(0) if s.splice_in else -1
        except OSError:
            n = -1  # a read error, perhaps: let read say what it is
        if n is not None and n < 0:
            s.splice_in = False
            data = read_stdin()
            if data is None:
                return None
            s.copy.add(data)
            n = len(data)
        return n

    def _splice_stdin(self) -> int | None:
        """Move what stdin's pipe has to the child's: the count (0: its end), None: nothing to do
        now, -1: read it instead."""
        s = self.streams
        try:
            n = _moved(0, self.inp)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                self._child_stdin_gone()
                return None
            n = -1  # a read error, perhaps: let read say what it is
        if n is None:
            # Ours had something (poll said so): the child's is full.
            self.child_full = True
        elif n < 0:
            s.splice_in = False
        return n

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

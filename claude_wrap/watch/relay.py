"""Headless runs (stdout is not a terminal): the real claude runs as our child; its output is
relayed as it arrives and watched for a login failure, which is repaired and retried
(once, or again while other programs keep breaking the file: see MAX_LAUNCHES).

Pipelines, scripts and editors speaking stream-json read what we relay, so relaying must be
invisible: stdout and stderr byte for byte, as they arrive (a stream stays a stream); stdin
forwarded as the child takes it, with a bounded copy kept so that a retry can replay it. Output
is held back only while it could still be the failure (detect.Watch). The consumer sees either
the failed run or the retried one, never a mix, and never anything of a run it was not meant to.

This module is the policy: when to retry, and what to say when not. The bytes are moved by
pipes.py, the process is started and reaped by process.py, and what happened goes back to the
entry point (shim.py: run) as a process.RunEnd: it alone speaks and exits.
"""

from __future__ import annotations

import posix

from claude_wrap.storage import backends
from claude_wrap.watch import detect, pipes, process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings

# Launches of claude per invocation. A retry is repaired and launched once; another one only when
# claude was refused again because another program rewrote the file during that retry (the soak's
# hostile refresher, issue 9), never for a refusal of the login our own repair left.
MAX_LAUNCHES = 4


class Relay:
    """One headless invocation: launches of claude until one is not a login failure we can
    repair and retry, then what to end with."""

    def __init__(
        self, real: str, args: list[str], settings: Settings, *, preflight_failed: bool
    ) -> None:
        self.real = real
        self.preflight_failed = preflight_failed
        self.args = args
        self.settings = settings
        self.grace = settings.kill_grace
        self.streams = pipes.Streams(settings, settings.hold_quiet)
        self.stdout = self.streams.stdout
        self.copy = self.streams.copy
        self.signals = self.streams.signals

    def run(self) -> process.RunEnd:
        self.signals.install(self.grace)
        try:
            if self._stays_open():
                # A session that stays open (stream-json on stdin: editors, SDKs, for hours)
                # gets the TUI's guard; a one-shot run does not pay for it (guard.py).
                from claude_wrap.watch import guard  # noqa: PLC0415

                heal = guard.heal_inline(self.settings)
                with guard.Guard(self.settings, heal, self.settings.guard_period):
                    return self._attempts()
            return self._attempts()
        except OSError as exc:
            # errors.py only when claude cannot start: not on every watched run.
            from claude_wrap.errors import ClaudeStartError  # noqa: PLC0415

            if not isinstance(exc, ClaudeStartError):
                raise
            return process.RunEnd(exc.status, (str(exc),))
        finally:
            self.signals.restore()
            self.copy.free()
            self.streams.close()

    def _stays_open(self) -> bool:
        return self.streams.pipe_stdin and _stream_json_input(self.args)

    def _attempts(self) -> process.RunEnd:
        launched = backends.identity(self.settings)
        preflight_failed = self.preflight_failed
        repaired = False  # the last launch followed a repair of ours (not a wait for a lock)
        for attempt in range(1, MAX_LAUNCHES + 1):
            watch = detect.Watch()
            launch = self._launch()
            try:
                status = launch.relay(watch)
            finally:
                launch.close()
            code = process.exit_status(status)
            verdict = watch.finish(code)
            failed = watch.release()
            if verdict == detect.Output.BUSY:
                # Another Claude Code process is refreshing: wait for its lock, then run again
                # (that process's new token, or claude's own refresh, serves the retry).
                stopped = self._await_lock(watch, failed, code, attempt)
                if stopped is not None:
                    return stopped
                self.copy.rewind()
                launched = backends.identity(self.settings)
                preflight_failed = repaired = False
                continue
            if verdict != detect.Output.FAILURE:
                self._show(failed)
                return process.RunEnd(code)
            now = backends.identity(self.settings)
            from claude_wrap.refresh import recover  # noqa: PLC0415 - only after a failure: off the healthy path

            if recover.already_tried(self.settings, launched, preflight_failed):
                self._show(failed)  # the pre-flight's line on stderr already said why
                return process.RunEnd(code)
            if repaired and now == launched:
                # Refused again, on the very file our repair left: another repair would only
                # spend another token on whatever claude has against it. Show it as it is.
                self._show(failed)
                return process.RunEnd(
                    code, [f"claude said {watch.message!r} again after the login was repaired"]
                )
            if attempt == MAX_LAUNCHES:
                self._show(failed)
                return process.RunEnd(
                    code,
                    [
                        f"claude said {watch.message!r}; the login was repaired and the run "
                        f"retried {MAX_LAUNCHES - 1} times, and each time another program had "
                        "changed the credentials file again before claude read it"
                    ],
                )
            stopped = self._repair(watch, launched, failed, code, attempt)
            if stopped is not None:
                return stopped
            self.copy.rewind()
            launched = backends.identity(self.settings)
            preflight_failed, repaired = False, True
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _repair(
        self,
        watch: detect.Watch,
        launched: tuple[int, ...] | None,
        failed: bytes,
        code: int,
        attempt: int,
    ) -> process.RunEnd | None:
        """Repair the login after a failed run. None: retry; else what to end with (the failed
        run's output already written and, when it helps, one line saying why)."""
        why_not = self._why_no_retry()
        problem = None
        if self.signals.stopped_by is None:
            from claude_wrap.errors import Interrupted  # noqa: PLC0415
            from claude_wrap.refresh import recover  # noqa: PLC0415 - only after a failure: off the healthy path

            try:
                problem = recover.repair(
                    self.settings, launched, refused=detect.needs_force(watch.message),
                    run=attempt, message=watch.message,
                )
            except Interrupted as exc:
                self._show(failed)
                return process.RunEnd(-exc.signum)
        if self.signals.stopped_by is not None:
            why_not = "we were told to stop"
        if problem is None and why_not is None:
            return None
        self._show(failed)
        if problem is not None:
            return process.RunEnd(
                code, [f"claude said {watch.message!r}; could not repair the login: {problem}"]
            )
        if self.signals.stopped_by is None:
            return process.RunEnd(
                code,
                [
                    f"claude said {watch.message!r}; the login is repaired, but the run was "
                    f"not retried ({why_not}); run it again"
                ],
            )
        return process.RunEnd(code)

    def _await_lock(
        self, watch: detect.Watch, failed: bytes, code: int, attempt: int
    ) -> process.RunEnd | None:
        """claude found the refresh lock busy. None: it is free now, retry; else what to end
        with (the run's output written as it was). Never a token request of ours."""
        why_not = self._why_no_retry()
        if why_not is None and attempt == MAX_LAUNCHES:
            why_not = f"claude was run {MAX_LAUNCHES} times"
        if why_not is None and self.signals.stopped_by is None:
            from claude_wrap.refresh import recover  # noqa: PLC0415 - only after a failure: off the healthy path

            why_not = recover.await_lock(self.settings, lambda: self.signals.stopped_by is not None)
        if why_not is None:
            return None
        self._show(failed)
        if self.signals.stopped_by is not None:
            return process.RunEnd(code)
        return process.RunEnd(
            code,
            [
                f"claude said {watch.message!r}; the run was not retried ({why_not}); "
                "no token was requested"
            ],
        )

    def _show(self, held: bytes) -> None:
        """What the last run left held goes out after all (it is its output)."""
        self.streams.write(self.stdout, held)

    def _why_no_retry(self) -> str | None:
        if self.copy.dropped:
            return f"more than {self.copy.limit} bytes on stdin, set CLAUDE_WRAP_REPLAY_LIMIT"
        if self.streams.stderr.passed:
            return "it had already written to stderr"
        if self.stdout.broken:
            return "stdout was closed"
        return None

    def _launch(self) -> pipes.Launch:
        try:
            launch = pipes.Launch(self.real, self.args, self.settings, self.streams)
        except OSError as exc:
            raise process.start_error(self.real, exc) from None
        self.signals.pid = launch.pid
        if self.signals.stopped_by is not None:
            # It arrived while we were between runs.
            posix.kill(launch.pid, self.signals.stopped_by)
        return launch


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
    real: str, args: list[str], settings: Settings, *, preflight_failed: bool = False
) -> process.RunEnd:
    return Relay(real, args, settings, preflight_failed=preflight_failed).run()

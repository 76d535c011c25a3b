"""The push: an owner sends each new access token to its guests as it is made, so that no guest
meets a token the owner's rotation revoked (docs/protocol.md section 10: the real service
revokes the previous access token at once).

Over SSH one forced command serves every guest: `command="claude-wrap token --json --for-guest"`.
sshd runs it whatever the guest asked, and puts what the guest asked in SSH_ORIGINAL_COMMAND;
`parse_request` reads from it `--follow` (hold the session: one compact ExecCredential line now,
one more for each new token, keeper/push.py) or `--min-valid S` (one answer, as before), and
refuses anything else in one line. The guest's keeper holds one such session (`Link`): it stores
each line at once (guest.store_pulled, under Claude Code's write lock), reconnects with backoff
when the session drops, and says one line per outage. Its ssh child ends with it: the child's
stdin is a pipe from the keeper, so when the keeper goes, ssh sees end of file, the owner's side
sees it too and ends, and the session closes.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import subprocess
import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from claude_wrap import console
from claude_wrap.errors import OwnerUnreachableError, SettingError, WrapError
from claude_wrap.guests import guest
from claude_wrap.refresh import refresher

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings

FOLLOW = "--follow"
MIN_VALID = "--min-valid"
MAX_MIN_VALID_S = 12 * 3600.0
SOURCE = "SSH_ORIGINAL_COMMAND"
# Waits between two tries to reach the owner, the last one repeated: the first retry is quick
# (an owner's sshd restarting), later ones cost nothing while the owner is away.
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# An owner whose authorized_keys line has no --for-guest answers one pull and ends the session:
# pull again this much later (the keeper's old period), not in a loop.
ONE_SHOT_WAIT_S = 300.0
# ssh's own keepalive: a session to an owner that vanished without a word ends within 45 s.
ALIVE_S = 15


class Request(NamedTuple):
    """What a guest asked for through the forced command."""

    follow: bool
    min_valid: float | None


def parse_request(original: str | None) -> Request:
    """The guest's request, from SSH_ORIGINAL_COMMAND, strictly: optionally the program (a path
    ending in `claude-wrap`) and `token`, then `--json` (ignored: the answer is always JSON) and
    either `--follow` or `--min-valid SECONDS`. Nothing at all (`ssh owner` alone) is a one-shot
    pull. Anything else: SettingError, one line naming the first word refused (never the
    command whole)."""
    words = (original or "").split()
    if words and os.path.basename(words[0]) == "claude-wrap":
        if words[1:2] != ["token"]:
            raise _refused(words[1] if len(words) > 1 else words[0])
        words = words[2:]
    follow = False
    min_valid: float | None = None
    i = 0
    while i < len(words):
        word = words[i]
        value: str | None = None
        if word.startswith(f"{MIN_VALID}="):
            word, value = MIN_VALID, word.partition("=")[2]
        if word == "--json":
            pass
        elif word == FOLLOW and not follow:
            follow = True
        elif word == MIN_VALID and min_valid is None:
            if value is None:
                i += 1
                value = words[i] if i < len(words) else ""
            min_valid = _seconds(value)
        else:
            raise _refused(word)
        i += 1
    if follow and min_valid is not None:
        raise _refused(MIN_VALID)  # a push session's tokens are the owner's newest, not asked for
    return Request(follow, min_valid)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_MIN_VALID_S:
        raise SettingError(
            SOURCE, value[:40],
            message=f"{MIN_VALID} {value[:40]!r}: not a number of seconds from 0 to "
            f"{MAX_MIN_VALID_S:g}",
        )
    return seconds


def _refused(word: str) -> SettingError:
    shown = word[:40]
    return SettingError(
        SOURCE, shown,
        message=f"the guest asked for {shown!r}: this key serves only `token --json` with "
        f"{FOLLOW} or {MIN_VALID} SECONDS",
    )


def compact(cred: dict[str, Any]) -> str:
    """One ExecCredential on one line: a push session's unit."""
    return json.dumps(cred, separators=(",", ":"))


def outage_line(owner: str, reason: str) -> str:
    """What a guest says, once, when its owner cannot be reached."""
    return (
        f"cannot reach the owner of this login ({owner}): {reason}; the last token works "
        "until the owner next rotates"
    )


class _Ended(NamedTuple):
    lines: int  # credentials received and stored
    reason: str | None  # why it ended, when it was not the owner's clean end of a one-shot
    one_shot: bool  # the owner answered once and ended: its line lacks --for-guest


class _Reading:
    """What a session has given so far."""

    def __init__(self) -> None:
        self.pending = b""  # the start of a line not yet ended
        self.whole = b""  # an answer that is not one line per credential: an owner's one-shot
        self.err = b""  # the end of ssh's stderr
        self.lines = 0
        self.problem: str | None = None

    def complete_lines(self) -> list[bytes]:
        """The one-line credentials received whole since the last call."""
        found = []
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            if not line.strip():
                continue
            if self.whole or not line.startswith(b"{") or not line.rstrip().endswith(b"}"):
                self.whole += line + b"\n"  # an indented answer, line by line
            else:
                found.append(line)
        return found


class Link:
    """The guest keeper's one long-lived ssh session to its owner (`run` in a thread, `stop`
    from any other). `pushes` counts the credentials received."""

    def __init__(self, settings: Settings, owner: str) -> None:
        self.settings = settings
        self.owner = owner
        self.host = owner.partition(":")[2]
        self.pushes = 0
        self._said_one_shot = False
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def stop(self) -> None:
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def run(self) -> None:
        failures = 0
        said = False
        while not self._stop.is_set():
            ended = self._session()
            if self._stop.is_set():
                break
            if ended.lines:
                failures, said = 0, False  # the outage, if any, is over
            if ended.one_shot:
                self._sleep(ONE_SHOT_WAIT_S)
                continue
            if not ended.lines:
                if not said:
                    console.say(outage_line(self.owner, ended.reason or "the session ended"))
                    said = True
                wait = wait_seconds(failures)
                failures += 1
            else:
                wait = BACKOFF_S[0]  # a session that served and dropped: back at once
            self._sleep(wait)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def argv(self) -> list[str]:
        timeout = self.settings.guest_timeout
        return [
            *shlex.split(self.settings.guest_ssh_command),
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, int(timeout / 2))}",
            "-o", f"ServerAliveInterval={ALIVE_S}",
            "-o", "ServerAliveCountMax=3",
            "-T", "--", self.host, f"{self.settings.guest_remote_command} {FOLLOW}",
        ]  # fmt: skip

    def _session(self) -> _Ended:
        argv = self.argv()
        try:
            proc = subprocess.Popen(  # ssh, with the user's own settings
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=self.settings.child_env(),
            )
        except FileNotFoundError:
            return _Ended(0, f"{argv[0]}: command not found", one_shot=False)
        reading = _Reading()
        try:
            self._relay(proc, reading)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()  # the owner's side sees end of file and ends
            try:
                status = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        if self._stop.is_set():
            return _Ended(reading.lines, None, one_shot=False)
        whole = reading.whole + reading.pending
        if whole.strip() and status == 0:
            try:
                self._store(whole)
            except WrapError as exc:
                return _Ended(reading.lines, str(exc), one_shot=False)
            if not self._said_one_shot:
                console.say(
                    f"{self.owner}: the owner answered one pull and ended the session (its "
                    "authorized_keys line lacks --for-guest): new tokens are pulled every "
                    f"{ONE_SHOT_WAIT_S:g} s and when due, not pushed"
                )
                self._said_one_shot = True
            return _Ended(reading.lines + 1, None, one_shot=True)
        return _Ended(reading.lines, reading.problem or _why(status, reading.err), one_shot=False)

    def _relay(self, proc: subprocess.Popen[bytes], reading: _Reading) -> None:
        """Read the session until it ends or we are stopped, storing each credential line."""
        out = proc.stdout.fileno() if proc.stdout is not None else -1
        err = proc.stderr.fileno() if proc.stderr is not None else -1
        open_fds = [out, err]
        while open_fds and not self._stop.is_set():
            ready, _, _ = select.select([*open_fds, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.remove(fd)
                elif fd == err:
                    reading.err = (reading.err + chunk)[-4096:]
                else:
                    reading.pending += chunk
            for line in reading.complete_lines():
                try:
                    self._store(line)
                    reading.lines += 1
                except WrapError as exc:
                    reading.problem = (
                        exc.reason if isinstance(exc, OwnerUnreachableError) else str(exc)
                    )
                    console.say(f"{self.owner}: {reading.problem}")

    def _store(self, raw: bytes) -> None:
        pulled = guest.parse_credential(self.owner, raw)
        changed, _ = guest.store_pulled(self.settings, pulled)
        self.pushes += 1
        path = self.settings.credentials_file
        refresher.look(self.settings, path, self.settings.refresh_window_ms)
        if changed:
            console.out(f"{path}: new access token pushed by the owner ({self.owner})", flush=True)
        else:
            console.out(f"{path}: the owner ({self.owner}) pushed the token already held",
                        flush=True)


def _why(status: int, err: bytes) -> str:
    lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else f"exit status {status}"
    if status == 255:  # ssh's own failure status
        return f"ssh failed: {last}"
    if status == 0:
        return "the owner ended the session"
    return f"the owner said: {last.removeprefix('claude-wrap: ')}"


def wait_seconds(failures: int) -> float:
    """The wait before the next try after `failures` tries in a row that reached no owner."""
    return BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]

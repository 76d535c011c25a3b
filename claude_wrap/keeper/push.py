"""The push, both ends of it (guests/push.py says why): the owner's side of a guest's session
(`serve`, what `token --for-guest` runs behind the forced command), and the guest keeper's side
(`guest_link`, started by `keep --watch` on a guest).

The owner's side prints one compact ExecCredential line at once and one more each time the
access token changes: the kernel says when the credentials file changes (watch/filewatch.py),
and a slow look every CLAUDE_WRAP_PUSH_PERIOD seconds covers the rest (the Keychain). It keeps
the owner's login fresh on the owner's own schedule (its refresh window, renewal.ensure_fresh
under Claude Code's locks: one request however many sessions are due at once), so a guest never
causes a rotation. It ends when the guest goes (end of file on its stdin) or on SIGTERM/SIGHUP.

A guest on a shared folder has no session: its keeper watches the folder's token file, which the
owner's keeper rewrites at each rotation, and stores each new token at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from claude_wrap import console
from claude_wrap.errors import (
    EXIT_OK,
    CredentialsError,
    OwnerUnreachableError,
    SettingError,
    WrapError,
)
from claude_wrap.guests import guest, push
from claude_wrap.judging import login
from claude_wrap.refresh import refresher, renewal
from claude_wrap.storage import backends
from claude_wrap.watch import filewatch

if TYPE_CHECKING:
    from collections.abc import Iterator

    from claude_wrap.config.settings import Settings
    from claude_wrap.storage.store import Storage

RETRY_S = 60.0  # after a failed refresh on the owner: try again this much later


# The owner's side ----------------------------------------------------------------------------


def serve(settings: Settings, min_valid: float | None) -> int:
    """`token --json --for-guest`: what the guest asked (SSH_ORIGINAL_COMMAND), served. A
    one-shot pull is answered as `token --json` always was; its --min-valid is honoured up to
    the owner's refresh window plus guest.MARGIN_S, so a guest asking for more cannot make the
    owner rotate (and revoke every other guest's token) at each ask."""
    request = push.parse_request(settings.ssh_original_command)
    if request.follow:
        return follow(settings)
    usual = settings.refresh_window + guest.MARGIN_S
    asked = request.min_valid if request.min_valid is not None else min_valid
    cred = _one_shot(settings, usual if asked is None else min(asked, usual))
    console.out(json.dumps(cred, indent=2), flush=True)
    return EXIT_OK


def _one_shot(settings: Settings, seconds: float) -> dict[str, Any]:
    if not settings.guest_setting:
        return guest.credential(settings, seconds)
    renewal.ensure_fresh(settings)  # a guest of a guest: what its own owner gave it
    storage = backends.open_storage(settings)
    cred = current(storage)
    if cred is None:
        raise CredentialsError(storage.where, "no usable token was pulled", guest.login_hint())
    return cred


def current(storage: Storage) -> dict[str, Any] | None:
    """The stored login's access token as an ExecCredential, or None when Claude Code would not
    accept it now."""
    snap, verdict = refresher.assess(storage, 0)
    if snap is None or not verdict.usable:
        return None
    oauth = login.oauth_section(snap.doc) or {}
    return guest.make_credential(
        login.access_token(snap.doc), verdict.expires_at, verdict.scopes or [], oauth
    )


def _due(storage: Storage, window_ms: int) -> float:
    """Seconds until the owner's own schedule refreshes this login (0: now)."""
    _, verdict = refresher.assess(storage, window_ms)
    if verdict.state != login.State.OK:
        return 0.0
    if verdict.expires_at is None:
        return float("inf")
    return max(0.0, (verdict.expires_at - window_ms - refresher.now_ms()) / 1000)


def follow(settings: Settings) -> int:
    """The owner's end of a guest's push session (see the module's docstring)."""
    storage = backends.open_storage(settings)
    files = [f for f in storage.watched_files() if os.path.isdir(os.path.dirname(f))]
    try:
        watcher = filewatch.open_watcher(files, 0.5, settings.watch_kind)
    except OSError:
        watcher = filewatch.Watcher(files, 0.5)
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()
        watcher.interrupt()

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, stop)
    threading.Thread(target=_until_end_of_input, args=(stop,), daemon=True).start()
    sent = ""
    said_at = time.monotonic()
    failed_at: float | None = None
    window_ms = settings.refresh_window_ms
    try:
        while not stopping.is_set():
            failed_at = _keep_fresh(settings, storage, failed_at)
            cred = current(storage)
            if cred is None and not sent:
                raise CredentialsError(
                    storage.where, "the owner's login is not usable", guest.login_hint()
                )
            token = cred["status"]["token"] if cred is not None else sent
            if cred is not None and token != sent:
                if not _send(push.compact(cred)):
                    break  # the guest is gone
                sent, said_at = token, time.monotonic()
            elif time.monotonic() - said_at >= (settings.push_period or RETRY_S):
                # An empty line now and then: a guest that vanished without closing the session
                # shows as a failed write (sshd learns it from TCP), and this process ends.
                if not _send(""):
                    break
                said_at = time.monotonic()
            waits = [settings.push_period or RETRY_S]
            if failed_at is None:
                waits.append(_due(storage, window_ms))
            else:
                waits.append(max(1.0, RETRY_S - (time.monotonic() - failed_at)))
            watcher.wait(max(0.5, min(waits)))
    finally:
        watcher.close()
    return EXIT_OK


def _keep_fresh(settings: Settings, storage: Storage, failed_at: float | None) -> float | None:
    """Refresh the owner's login when its own schedule says so (not after a failure less than
    RETRY_S ago); when the last failure was, else None."""
    retry_in = 0.0 if failed_at is None else RETRY_S - (time.monotonic() - failed_at)
    if retry_in > 0 or _due(storage, settings.refresh_window_ms) > 0:
        return failed_at
    try:
        renewal.ensure_fresh(settings)
    except SettingError:
        raise
    except WrapError as exc:
        console.say(f"the owner's login could not be kept fresh: {exc}")
        return time.monotonic()
    # Still due right after (a token server handing out tokens shorter-lived than the window):
    # wait RETRY_S as after a failure, never a loop of rotations.
    return time.monotonic() if _due(storage, settings.refresh_window_ms) == 0 else None


def _send(line: str) -> bool:
    try:
        console.out(line, flush=True)
    except (BrokenPipeError, ValueError, OSError):
        # The session closed under us: nothing more to say, not even at exit's flush.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
        return False
    return True


def _until_end_of_input(stop: Any) -> None:
    """The guest holds its end of the session's stdin open and never writes: end of file means
    its ssh, or the guest itself, is gone."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    stop()


# The guest's side ----------------------------------------------------------------------------


@contextlib.contextmanager
def guest_link(settings: Settings, owner: str) -> Iterator[None]:
    """While `keep --watch` runs on a guest: the push session to an ssh owner, or the watch of a
    shared folder's token file, in a thread of its own; ended (and its ssh child with it) when
    the keeper ends."""
    kind, _, target = owner.partition(":")
    link: push.Link | _FolderLink = (
        push.Link(settings, owner) if kind == "ssh" else _FolderLink(settings, owner, target)
    )
    thread = threading.Thread(target=link.run, name="claude-wrap-push", daemon=True)
    thread.start()
    try:
        yield
    finally:
        link.stop()
        thread.join(timeout=10)


class _FolderLink:
    """A folder guest's keeper: the token file watched (the owner's keeper rewrites it at each
    rotation), each new token stored at once."""

    def __init__(self, settings: Settings, owner: str, folder: str) -> None:
        self.settings = settings
        self.owner = owner
        self.path = os.path.join(folder, guest.SHARE_NAME)
        self.watcher = _open(self.path, settings.watch_kind)
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()
        self.watcher.interrupt()

    def run(self) -> None:
        said = False
        try:
            while not self._stop.is_set():
                try:
                    self._take()
                    said = False
                except SettingError:
                    return
                except WrapError as exc:
                    if not said:  # one line per outage
                        reason = exc.reason if isinstance(exc, OwnerUnreachableError) else str(exc)
                        console.say(push.outage_line(self.owner, reason))
                        said = True
                self.watcher.wait(self.settings.push_period or RETRY_S)
        finally:
            self.watcher.close()

    def _take(self) -> None:
        pulled = guest.fetch(self.settings, self.owner, 0)
        changed, _ = guest.store_pulled(self.settings, pulled)
        path = self.settings.credentials_file
        refresher.look(self.settings, path, self.settings.refresh_window_ms)
        if changed:
            console.out(f"{path}: new access token from the owner's folder ({self.owner})",
                        flush=True)


def _open(path: str, kind: str) -> filewatch.Watcher:
    try:
        return filewatch.open_watcher([path], 0.5, kind)
    except OSError:
        return filewatch.Watcher([path], 0.5)

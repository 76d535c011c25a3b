"""Repair the login after Claude Code refused it mid-run: the one step between "claude printed
`Not logged in`" and "run it again" (headless) or "the next prompt works" (TUI).

The pre-flight judged the file before claude started, so a refusal means something changed or
the server disagreed: another program stripped the scopes or spent the refresh token, or a token
that looked fine was refused. So: re-read first (another process may just have fixed it, or be
in the middle of it: ensure_fresh waits on the locks and adopts its token), and force a refresh
only when the file is exactly the one claude was started with.
"""

from __future__ import annotations

from claude_wrap.config import sitepath
from claude_wrap.config.settings import Settings, legacy_lock_dir, refresh_lock_dir
from claude_wrap.storage import backends

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def already_tried(settings: Settings, launched: tuple[int, ...] | None, failed: bool) -> bool:
    """The pre-flight tried to repair this very file and could not, and said why. Trying again
    now would fail the same way, or spend a refresh token the endpoint just refused
    (invalid_grant) or may already have spent: never. A file changed since is a new case."""
    return failed and launched is not None and backends.identity(settings) == launched


def repair(
    settings: Settings,
    launched: tuple[int, ...] | None,
    *,
    refused: bool,
    run: int = 1,
    message: str = "",
) -> str | None:
    """Make the stored login usable again. Returns None when it is, else one line saying why not.

    `launched` is the login's identity when claude was started (backends.identity); `refused` says
    the failure was the server refusing a token (a 401, a revocation) rather than claude finding
    no usable login; `message` is what claude printed. When it says the API revoked the very
    access token still stored, the forced refresh first waits for its successor (refresher's
    SUCCESSOR_WAIT_S), and the refusal is evidence of why the login died (judging/cause.py).
    """
    sitepath.enable_site()
    from claude_wrap.errors import Interrupted, WrapError  # noqa: PLC0415
    from claude_wrap.judging import cause, login  # noqa: PLC0415
    from claude_wrap.logfile.log import logger  # noqa: PLC0415
    from claude_wrap.refresh import refresher, renewal  # noqa: PLC0415

    log = logger(settings)
    try:
        storage = backends.open_storage(settings)
        unchanged = launched is not None and storage.identity() == launched
        if not refused:
            # "Not logged in" while the login looks fine and is the one claude read: claude and
            # we disagree about it, and only a new token can settle that.
            _, verdict = refresher.assess(storage, settings.refresh_window_ms)
            refused = verdict.state == login.State.OK
        force = refused and unchanged
        if not unchanged:
            _blanked_under_run(settings, storage, launched, message)
        # Only for the file claude was refused with: a changed one holds another token.
        revoked = cause.refusal(message) if force else None
        log.info(
            "watch: claude refused the login (run {}); repairing ({} {}, force={}, revoked={})",
            run,
            storage.kind,
            "unchanged" if unchanged else "changed since launch",
            force,
            revoked,
        )
        outcome = renewal.ensure_fresh(settings, force=force, revoked=revoked)
    except Interrupted:
        raise
    except WrapError as exc:
        log.warning("watch: repair failed: {}", exc)
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug here must not hide claude's own output
        log.opt(exception=exc).error("watch: repair crashed")
        return f"internal error while repairing the login, see {settings.log_file}"
    log.info("watch: repair done: {}", outcome.action)
    return None


def _blanked_under_run(
    settings: Settings, storage: Any, launched: tuple[int, ...] | None, message: str
) -> None:
    """claude left the login blanked (tokens emptied, as Claude Code does when its own refresh
    meets invalid_grant): when claude-wrap knows which login claude started with, say why it
    died, as for a refusal of its own (judging/cause.py). Never raises: only evidence."""
    from claude_wrap.judging import cause  # noqa: PLC0415
    from claude_wrap.logfile import deaths  # noqa: PLC0415
    from claude_wrap.logfile.log import Event, event  # noqa: PLC0415

    try:
        snap = storage.read()
        evidence = None if snap is None else deaths.blanked_under_run(
            settings, settings.config_dir, launched, snap.doc, message
        )
    except Exception:  # noqa: BLE001 - a bad file is the repair's to report, not this
        return
    if evidence is not None:
        found = cause.of_invalid_grant(evidence)
        deaths.note_blanked_death(settings, settings.config_dir, found)
        event(Event.FAILURE, settings.config_dir, "claude's own refresh was refused and it blanked "
              f"the login: {cause.sentence(*found)}", settings)


def heal(settings: Settings) -> None:
    """The credentials file changed under a running session: when the change broke the login in
    a way a refresh fixes (scopes dropped by a third-party tool, above all), fix it now, before
    claude's next request meets it. Never forced, never raises: a failure here is logged, and
    the watcher still acts on what claude says."""
    sitepath.enable_site()
    from claude_wrap.errors import WrapError  # noqa: PLC0415
    from claude_wrap.judging import login  # noqa: PLC0415
    from claude_wrap.logfile.log import logger  # noqa: PLC0415
    from claude_wrap.refresh import refresher, renewal  # noqa: PLC0415

    log = logger(settings)
    try:
        window_ms = settings.refresh_window_ms
        _, verdict = refresher.assess(backends.open_storage(settings), window_ms)
        if verdict.state not in login.REFRESHABLE and verdict.state != login.State.OK:
            return
        if verdict.state != login.State.OK:
            log.info("guard: the credentials file changed and is {} ({}); repairing",
                     verdict.state, verdict.detail)
        # A usable login may still lack fields another tool dropped (subscriptionType): the
        # local repair puts them back; a login that lacks nothing is left alone.
        outcome = renewal.ensure_fresh(settings)
        if outcome.action == refresher.Action.NONE:
            return
    except WrapError as exc:
        log.warning("guard: repair failed: {}", exc)
        return
    except Exception as exc:  # noqa: BLE001 - a bug here must not end the session
        log.opt(exception=exc).error("guard: repair crashed")
        return
    log.info("guard: repair done: {}", outcome.action)


def await_lock(settings: Settings, stopped: Callable[[], bool]) -> str | None:
    """claude said another Claude Code process is refreshing the login: it holds the refresh lock,
    or left it when it exited mid-refresh (docs/protocol.md sections 3 and 6). Wait, up to the lock
    wait (CLAUDE_WRAP_LOCK_TIMEOUT), until no lock of the config folder is held by a holder that may
    be alive, by the rules `lock` applies (gone, stale, or its holder proven gone, which claude
    takes over itself). Nothing is taken, removed or sent: never a refresh over another process's
    lock. Returns None when the run may be retried, else one line saying why not."""
    import os  # noqa: PLC0415 - only after claude said the lock was busy (no `os` on the hot path)
    import time  # noqa: PLC0415

    from claude_wrap.locks import lock  # noqa: PLC0415

    cfg = settings.config_dir
    refresh_path, legacy_path = refresh_lock_dir(cfg), legacy_lock_dir(cfg)
    held = [
        lock.DirLock(refresh_path, owner=(cfg, legacy_path)),
        lock.DirLock(legacy_path),
    ]
    wait_s = settings.lock_wait
    deadline = time.monotonic() + wait_s
    while True:
        busy = [d.path for d in held if os.path.isdir(d.path) and not d.judge()]
        if not busy:
            return None
        if stopped():
            return "we were told to stop"
        if time.monotonic() >= deadline:
            return f"{busy[0]} was still held after {wait_s:g} s"
        time.sleep(lock.POLL_S)

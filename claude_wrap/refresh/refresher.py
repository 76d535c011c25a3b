"""ensure_fresh: judge the login, and when a refresh can fix it, refresh it under Claude Code's
locks and store the result straight back. The one place where reading, locking, HTTP and writing
meet; each of those lives in its own module."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from claude_wrap.config.settings import (
    Settings,
    StorageKind,
    legacy_lock_dir,
    refresh_lock_dir,
    write_lock_dir,
)
from claude_wrap.errors import (
    LOGIN_HINT,
    CredentialsError,
    Interrupted,
    RefreshOutcomeUnknownError,
    RefreshRejectedError,
    StorageUnavailableError,
)
from claude_wrap.judging import cause, login, loginend
from claude_wrap.locks import lock
from claude_wrap.logfile import deaths
from claude_wrap.logfile.log import Event, event, logger
from claude_wrap.refresh import binary, restore
from claude_wrap.storage import backends, fastpath, filestore, memory, store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from claude_wrap.locks.flock import FolderFlock
    from claude_wrap.storage.store import Storage



class Action:
    """What ensure_fresh did to the login (strings: see login.State; `refresh --json` says it)."""

    NONE = "none"
    REFRESHED = "refreshed"
    ADOPTED = "adopted"  # another process (Claude Code, another shim) had already refreshed it
    REPAIRED = "repaired"  # put back locally what another tool stripped; no request (restore.py)


# Refresh tokens this process must not send again, with the error that settled it: the endpoint
# rejected them (invalid_grant), or a request with them left and no answer came back (maybe
# spent). The shim can call ensure_fresh twice in one run (its pre-flight, then the output
# watcher's repair after claude fails): the second call gets the first one's error, and the
# token endpoint never sees a dead or possibly-spent token twice. Memory only, never on disk.
_failed_tokens: dict[str, RefreshRejectedError | RefreshOutcomeUnknownError] = {}

# How long to watch the credentials file for a successor after the API revoked the stored access
# token, before spending the stored refresh token (issue 26). The service revokes the previous
# access token at the moment it mints the next pair, so when claude met the revocation, whoever
# rotated the login (a lock-less tool on this machine) already had its answer on the way: one
# response's transit and a file write, well under a second even from far away, which is also all
# the time Claude Code's own refresh takes. The detection itself took claude's exit and our start,
# hundreds of ms. 3 s covers that answer on a slow link and a loaded machine several times over;
# when nothing comes (the copy is on another machine, or the login was ended), the run that
# already failed loses those 3 s once, and the evidence says "nothing appeared" with confidence.
SUCCESSOR_WAIT_S = 3.0
# A stat of the file every 50 ms: the new token is adopted within that of its write (the kernel's
# file events are in watch/, a layer above this one). A Keychain item costs a `security` call.
_SUCCESSOR_POLL_S = {StorageKind.FILE: 0.05}
_KEYCHAIN_POLL_S = 0.5


class _Replaced(Exception):  # noqa: N818 - control flow, never shown
    """Right before our request went out, the file held a usable login someone else made."""


class _Log:
    """The log, set up when first written to (see ensure_fresh)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(logger(self.settings), name)


def _note(settings: Settings, message: str, *args: object) -> None:
    """A line worth having only when debugging: waiting and adopting are not events."""
    if settings.debug:
        logger(settings).info(message, *args)


class FreshnessReport:
    """What ensure_fresh did (`action`), the login's verdicts before and after, the changes it
    made and what to warn of. Not process.RunEnd: that one is how a run of claude ended."""

    __slots__ = ("action", "after", "before", "changes", "warnings")

    def __init__(
        self,
        action: str,
        before: login.Verdict,
        after: login.Verdict,
        changes: list[str],
        warnings: list[str] | None = None,
    ) -> None:
        self.action = action
        self.before = before
        self.after = after
        self.changes = changes
        self.warnings = warnings or []  # one line each, for the user (never a token)


def now_ms() -> int:
    return int(time.time() * 1000)


def assess(
    source: str | Storage, window_ms: int, at_ms: int | None = None
) -> tuple[Any, login.Verdict]:
    """(snapshot or None, verdict) for the login as it is now (a file path, or a storage).
    Pure: it reads and judges, and writes nothing (`status` and `doctor` only look; see
    `remember` for the paths that run claude). Never raises for a bad file;
    StorageUnavailableError when the Keychain cannot be asked."""
    at_ms = now_ms() if at_ms is None else at_ms
    storage = filestore.FileStorage(source) if isinstance(source, str) else source
    try:
        snap = storage.read()
    except StorageUnavailableError:
        raise  # not a verdict on the login: nobody could read it
    except CredentialsError as exc:
        return None, login.Verdict(login.State.MALFORMED, exc.problem)
    if snap is None:
        what = "file" if storage.kind == StorageKind.FILE else "Keychain item"
        return None, login.Verdict(login.State.MISSING, f"there is no credentials {what}")
    return snap, login.judge(snap.doc, at_ms, window_ms)


def remember(  # noqa: PLR0917 - one settings, then what was judged
    settings: Settings,
    storage: Storage,
    snap: Any,
    verdict: login.Verdict,
    window_ms: int,
    at_ms: int | None = None,
) -> None:
    """Note a usable login for the runs to come: the memory of its scopes and fields (written
    only when they changed) and, for a file, the verdict cache the shim's healthy runs trust
    instead of parsing the file (fastpath.py). Only on the paths that run claude or renew the
    login (the shim, its watcher, a guest's pull, `refresh`, `keep`) and on `status --short`,
    which reads the cache like the shim; never on one that only looks (`status`, `doctor`).
    Off the hot path: a healthy shim run trusts the cache and never gets here."""
    if snap is None or verdict.state != login.State.OK:
        return
    at_ms = now_ms() if at_ms is None else at_ms
    memory.note(storage.where, snap.doc, settings)
    if storage.kind == StorageKind.FILE:
        # Which refresh token a run of claude starts with, should Claude Code's own refresh of
        # it die (recover.py): written only when it changed, so rarely more than a read.
        deaths.note_seen(settings, settings.config_dir, snap.ident, snap.doc)
        fastpath.remember(
            settings,
            storage.where, snap.ident, verdict.expires_at, window_ms, at_ms, verdict.login_ends_at
        )


def look(
    settings: Settings, source: str | Storage, window_ms: int, at_ms: int | None = None
) -> tuple[Any, login.Verdict]:
    """assess, then remember what it found: for the paths that run claude or read the verdict
    cache themselves (a guest's pull, `status --short` for prompts)."""
    at_ms = now_ms() if at_ms is None else at_ms
    storage = filestore.FileStorage(source) if isinstance(source, str) else source
    snap, verdict = assess(storage, window_ms, at_ms)
    remember(settings, storage, snap, verdict, window_ms, at_ms)
    return snap, verdict


def unfixable(path: str, verdict: login.Verdict) -> CredentialsError | None:
    """The error to report when no refresh can fix this state, else None."""
    if verdict.state in login.REFRESHABLE or verdict.state == login.State.OK:
        return None
    if verdict.state == login.State.MALFORMED:
        return CredentialsError(path, verdict.detail, "fix or remove it, then run `claude /login`")
    if verdict.state == login.State.MISSING:
        return CredentialsError(path, "does not exist: no login is stored", LOGIN_HINT)
    return CredentialsError(path, verdict.detail, LOGIN_HINT)


def _token_of(snap: Any) -> str:
    return login.refresh_token(snap.doc) if snap is not None else ""


def settled(settings: Settings, storage: Storage, window_ms: int) -> tuple[Any, login.Verdict]:
    """The login as it is now, once it has settled (store.settle: waited for a moment while it
    cannot be parsed and may be half-way through a rewrite), remembered when usable (see
    `remember`): the shim's judgement of a login it found due or not judged yet."""
    snap, verdict = _settle(storage, window_ms)
    remember(settings, storage, snap, verdict, window_ms)
    return snap, verdict


def _settle(storage: Storage, window_ms: int) -> tuple[Any, login.Verdict]:
    """assess (pure like it), waited out while the login may be half-way through a rewrite."""
    return store.settle(
        storage,
        lambda: assess(storage, window_ms),
        lambda got: got[1].state == login.State.MALFORMED,
    )


def _access(snap: Any) -> str:
    return login.access_token(snap.doc) if snap is not None else ""


@contextlib.contextmanager
def _handled(signums: tuple[int, ...], handler: Callable[[int, Any], None]) -> Iterator[None]:
    """`handler` for `signums` while inside, the previous handlers again after. Only the main
    thread can set handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, old in saved.items():
            signal.signal(s, old)


def _signals_raise() -> contextlib.AbstractContextManager[None]:
    """Inside the locked section, SIGTERM and SIGHUP unwind through `finally` (locks released,
    temp file removed) instead of killing us mid-way."""

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    return _handled((signal.SIGTERM, signal.SIGHUP), handler)


# The signals a user or a service manager stops us with; SIGKILL cannot be held.
_STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """From just before our refresh token may reach the server until its successor is stored,
    SIGINT, SIGTERM and SIGHUP wait, then the first of them is delivered as it would have been.

    The server spends the token the moment it reads it. Stopped in between, we would keep the
    spent token and lose its successor in flight: the next refresh gets invalid_grant and, with
    the real service, the whole login is revoked (a Ctrl-C or a `systemctl stop` during a
    refresh did exactly that, traced with TokenFamilies). Held, the stop comes at most the
    request's budget (CLAUDE_WRAP_REFRESH_TIMEOUT) and the write later, with the new login on
    disk. Main thread only (_handled)."""
    held: list[int] = []
    try:
        with _handled(_STOPPING, lambda signum, _frame: held.append(signum)):
            yield
    finally:
        if held:  # also when the refresh failed: the stop was asked for all the same
            # Through the handler now restored: KeyboardInterrupt for SIGINT, Interrupted inside
            # _signals_raise, the default action (death) where nobody handles it.
            signal.raise_signal(held[0])


def describe(before: Any, after: Any) -> list[str]:
    """What a refresh changed, in words; never a token."""
    old = login.oauth_section(before) or {}
    new = login.oauth_section(after) or {}
    changes = []
    if new.get("accessToken") != old.get("accessToken"):
        changes.append("new access token")
    if new.get("refreshToken") != old.get("refreshToken"):
        changes.append("refresh token rotated")
    if new.get("scopes") != old.get("scopes"):
        added = [s for s in new.get("scopes") or [] if s not in (old.get("scopes") or [])]
        changes.append("scopes written" + (f" (added {', '.join(added)})" if added else ""))
    if new.get("expiresAt") != old.get("expiresAt"):
        changes.append(f"expiresAt {old.get('expiresAt')} -> {new.get('expiresAt')}")
    return changes


def ensure_fresh(
    settings: Settings,
    *,
    force: bool = False,
    on_slow: Callable[[], None] | None = None,
    held: FolderFlock | None = None,
    revoked: str | None = None,
) -> FreshnessReport:
    """Make the stored login one Claude Code accepts, refreshing only when needed.

    `force` refreshes a login that looks fine (the server refused it), unless another process
    has replaced its access token meanwhile: then that token is adopted and nothing is spent.
    `revoked` (a cause.Refusal): the API refused the stored access token as revoked, as the
    shim's watch saw it: whoever rotated the login may be about to write the successor, so the
    file is watched for it first (SUCCESSOR_WAIT_S), and the stored token spent only after.
    `held`: our flock of the lock folder, when the caller holds it already (the shim).
    Raises a WrapError subclass when it cannot; the file is then exactly as it was.
    The owner's side only: a guest pulls instead (renewal.ensure_fresh picks).
    """
    if settings.guest_setting:  # a bug, never the user's doing: a guest must never refresh
        raise RuntimeError("refresher.ensure_fresh called for a guest; use renewal.ensure_fresh")
    storage = backends.open_storage(settings)
    path = storage.where
    cfg = storage.lock_dir
    window_ms = settings.refresh_window_ms
    snap, before = settled(settings, storage, window_ms)
    fixable_here = (login.State.OK, login.State.MISSING_SCOPES)
    if not force and snap is not None and before.state in fixable_here:
        local = _repair_locally(settings, storage, snap, before, window_ms)
        if local is not None:
            return local
    if before.state == login.State.OK and not force:
        return FreshnessReport(Action.NONE, before, before, [])
    error = unfixable(path, before)
    if error is not None:
        raise error
    _never_again(settings, snap)
    if revoked is not None and snap is not None:
        successor = _after_revocation(settings, storage, snap, before, revoked)
        if successor is not None:
            return successor

    url = settings.token_url  # checked once, there: https, or http to a loopback host
    # loguru on first use only: of a herd of shims on one expired login, all but one just wait and
    # adopt, and importing httpx and loguru before waiting made the herd CPU-bound (bench/run).
    log = _Log(settings)
    seen = _access(snap)
    _note(settings, "login is {} ({}); refreshing under the locks", before.state, before.detail)

    def changed_and_ok() -> bool:
        snap2, verdict = assess(storage, window_ms)
        return verdict.state == login.State.OK and _access(snap2) != seen

    try:
        with (
            _signals_raise(),
            lock.refresh_locks(
                cfg,
                refresh_path=refresh_lock_dir(cfg),
                legacy_path=legacy_lock_dir(cfg),
                wait_s=settings.lock_wait,
                on_wait=changed_and_ok,
                records=settings.lock_records,
                held=held,
            ) as taken_locks,
        ):
            for taken in taken_locks:
                if taken.taken_over:
                    _note(settings, "took over the {} lock folder {}", taken.taken_over, taken.path)
            snap, done = _done_meanwhile(
                settings, storage, before, seen, force=force, window_ms=window_ms
            )
            if done is not None:
                return done
            return _refresh(settings, storage, snap, before, url, log, on_slow, held)
    except lock.WaitEnded:
        snap, current = look(settings, storage, window_ms)
        _note(settings, "another process refreshed the login while we waited; adopted")
        _adopted(settings, before)
        return FreshnessReport(Action.ADOPTED, before, current, [])
    except _Replaced:
        snap, current = look(settings, storage, window_ms)
        _note(settings, "another process refreshed the login just before our request; adopted")
        _adopted(settings, before)
        return FreshnessReport(Action.ADOPTED, before, current, [])


def _done_meanwhile(
    settings: Settings,
    storage: Storage,
    before: login.Verdict,
    seen: str,
    *,
    force: bool,
    window_ms: int,
) -> tuple[Any, FreshnessReport | None]:
    """The login re-read under the locks, since whoever held them may have just refreshed it:
    (its snapshot, the outcome when no token need be sent: another process renewed it, or what
    was stripped is restored locally). Raises when no refresh can fix it."""
    snap, current = settled(settings, storage, window_ms)
    if current.state == login.State.OK and (not force or _access(snap) != seen):
        action = Action.ADOPTED if _access(snap) != seen else Action.NONE
        _note(settings, "login is usable after taking the lock: {}", action)
        if action == Action.ADOPTED:
            _adopted(settings, before)
        return snap, FreshnessReport(action, before, current, [])
    if not force and current.state == login.State.MISSING_SCOPES:
        local = _repair_locally(settings, storage, snap, current, window_ms)
        if local is not None:
            return snap, local
    error = unfixable(storage.where, current)
    if error is not None:
        raise error
    return snap, None


def _never_again(settings: Settings, snap: Any) -> None:
    """A refresh token the endpoint already refused with invalid_grant, in any process of ours
    (deaths.py), is dead for good: raise that refusal again, with why it died, and send nothing.
    _failed_tokens says so within one process; this, across them (a shim run after the watch of
    another met the refusal, while the file still holds an access token that looks good)."""
    token = _token_of(snap)
    death = deaths.died(settings, settings.config_dir, token) if token else None
    if death is None:
        return
    when = f" at {loginend.when(death.at)}" if death.at is not None else ""
    raise RefreshRejectedError(
        death.status or 400, "invalid_grant", f"{death.line}; refused{when}, not sent again"
    )


def _after_revocation(
    settings: Settings, storage: Storage, snap: Any, before: login.Verdict, revoked: str
) -> FreshnessReport | None:
    """The API revoked the stored access token: watch the file for the successor a lock-less
    rotator is about to write, and adopt it (nothing spent). None when none came within
    SUCCESSOR_WAIT_S; that is then noted as evidence of a copy elsewhere (deaths.note_refused).
    No wait for the whole login revoked: nobody will write a successor to it."""
    window_ms = settings.refresh_window_ms
    seen = _access(snap)
    waited = 0.0
    if revoked != cause.Refusal.LOGIN_REVOKED:
        started = time.monotonic()
        found = _await_successor(storage, seen, window_ms)
        waited = time.monotonic() - started
        if found is not None:
            _, current = look(settings, storage, window_ms)
            _note(settings, "a successor of the revoked access token appeared after {:.2f} s",
                  waited)
            event(Event.ADOPT, settings.config_dir, f"the API revoked the access token; another "
                  f"program wrote its successor {waited:.1f} s later; adopted, nothing spent",
                  settings)
            return FreshnessReport(Action.ADOPTED, before, current, [])
    deaths.note_refused(settings, settings.config_dir, seen, revoked, round(waited, 1))
    return None


def _await_successor(storage: Storage, seen: str, window_ms: int) -> Any:
    """The login, once it holds a usable access token other than `seen`; None when none came
    within SUCCESSOR_WAIT_S. Reads it only when its identity changed."""
    pause = _SUCCESSOR_POLL_S.get(storage.kind, _KEYCHAIN_POLL_S)
    deadline = time.monotonic() + SUCCESSOR_WAIT_S
    ident: object = None
    while True:
        now_ident = storage.identity()
        if now_ident != ident:
            ident = now_ident
            snap, verdict = assess(storage, window_ms)
            if verdict.state == login.State.OK and _access(snap) != seen:
                return snap
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(pause, left))


def _adopted(settings: Settings, before: login.Verdict) -> None:
    event(Event.ADOPT, settings.config_dir, f"login was {before.state}; another process had "
          "renewed it, nothing spent", settings)


def _repair_locally(
    settings: Settings, storage: Storage, snap: Any, before: login.Verdict, window_ms: int
) -> FreshnessReport | None:
    """Restore what was stripped when the access token is still good (restore.py); None when
    that is not the fix (no memory, a due token, the file changed meanwhile)."""
    restored = restore.repair(storage, snap, settings, now_ms(), window_ms)
    if restored is None:
        return None
    _, after = look(settings, storage, window_ms)
    event(Event.REPAIR, settings.config_dir, f"login was {before.state}; restored "
          f"{', '.join(restored)} locally, no token request", settings)
    restored_text = f"restored {', '.join(restored)} locally"
    return FreshnessReport(Action.REPAIRED, before, after, [restored_text])


def _refresh(  # noqa: PLR0917 - private, called once
    settings: Settings,
    storage: Storage,
    snap: Any,
    before: login.Verdict,
    url: str,
    log: Any,
    on_slow: Callable[[], None] | None,
    held: FolderFlock | None,
) -> FreshnessReport:
    window_ms = settings.refresh_window_ms
    path = storage.where
    log.info("login is {} ({}); refreshing", before.state, before.detail)
    oauth_doc = login.oauth_section(snap.doc) or {}
    refresh_token = _unfailed_token(oauth_doc, log)
    # Ask as the release in use asks: its User-Agent, and its scopes added to the stored ones
    # (never fewer than the login has: a refresh that asks for fewer narrows it).
    release = binary.in_use(settings)
    asked = binary.refresh_scopes(release, settings)
    log.info("the real claude is {}; sending its request's form", release or "of unknown version")

    remembered = memory.applicable(oauth_doc, memory.recall(storage.where, settings))
    remembered_scopes = remembered.scopes if remembered is not None else []
    request = _Request(storage, snap, window_ms, asked, remembered_scopes)

    storage.tidy()
    _check_storable(path, snap)
    mode = _mode(path) if storage.kind == StorageKind.FILE else 0o600
    # Reserve the new file's space before the token is spent: a full disk fails here, harmlessly.
    with storage.pending(reserve=len(snap.raw) + 65536) as pending, _signals_held():
        response = _send(settings, request, refresh_token, url, release, on_slow, held)
        snap = request.sent
        new_doc = _store_new(settings, storage, pending, request, response, remembered)
    # Ours, spent: an invalid_grant on it later is not someone else's doing (judging/cause.py).
    # After the new login is stored: nothing of this record may delay that.
    deaths.note_spent(settings, _token_of(snap))
    _, after = look(settings, storage, window_ms)
    if held is not None:
        # The new login is stored and in the verdict cache: let the shims of ours waiting on the
        # flock (flock.take_turn) go on now, while we log, remove our lock folders and start
        # claude, instead of after all that (bench/run contention). Safe: the refresh token is
        # spent and its successor stored, and whoever finds the login still due takes Claude
        # Code's lock folders next, which we hold until the end, then re-reads the file.
        held.release()
    changes = describe(snap.doc, new_doc)
    log.info("refreshed: {}", "; ".join(changes))
    # A repair: the login looked fine to us but was refused, or had lost its scopes.
    repaired = before.state in (login.State.MISSING_SCOPES, login.State.OK)
    kind = Event.REPAIR if repaired else Event.REFRESH
    event(kind, settings.config_dir, f"login was {before.state}: {'; '.join(changes)}", settings)
    warnings = []
    if mode & 0o077:
        warnings.append(f"{path} was readable by other users (mode {mode:04o}); it is now 0600")
    return FreshnessReport(Action.REFRESHED, before, after, changes, warnings)


def _unfailed_token(oauth_doc: dict[str, Any], log: Any) -> str:
    """The stored refresh token; raises the error it got when it already failed in this run."""
    refresh_token = oauth_doc.get("refreshToken")
    assert isinstance(refresh_token, str) and refresh_token  # unfixable() checked
    failed = _failed_tokens.get(refresh_token)
    if failed is not None:
        log.info("not sending the refresh token again: it already failed in this run ({})",
                 type(failed).__name__)
        raise failed
    return refresh_token


class _Request:
    """What one refresh sends: the snapshot its token comes from (`sent`: the one read before
    the locks, or a rotated one read at the last moment) and the scopes it asks for."""

    def __init__(
        self,
        storage: Storage,
        snap: Any,
        window_ms: int,
        asked: list[str],
        remembered_scopes: list[str],
    ) -> None:
        self.storage = storage
        self.snap = snap
        self.sent = snap
        self.window_ms = window_ms
        self.asked = asked
        self.remembered_scopes = remembered_scopes

    def scopes_of(self, doc: object) -> list[str]:
        return binary.union(login.request_scopes(doc, self.remembered_scopes), self.asked)

    def freshest(self) -> tuple[str, list[str]]:
        """The token to send, read from the file at the last moment (see oauth.refresh_tokens).

        Tools that take no lock (the old third-party refreshers) spend the token and rewrite the
        file whenever they like. Caught by the soak (issue 9): a shim read the file, built its
        HTTP client for a second on a loaded machine, and sent a token such a tool had spent
        meanwhile; the server took that for a replay and revoked the whole login.
        """
        storage = self.storage
        current, verdict = _settle(storage, self.window_ms)
        if verdict.state == login.State.MALFORMED:
            # It parsed under the lock, so someone is writing it now, most likely with the
            # token we hold already spent: sending it could revoke the login (the soak saw it).
            raise CredentialsError(
                storage.where,
                "was being rewritten by another program when the refresh was due (it did not parse,"
                f" and still did not after up to {store.SETTLE_LIMIT_S:g} s); nothing was sent",
                "run again in a moment",
            )
        if verdict.state == login.State.OK and _access(current) != _access(self.snap):
            raise _Replaced
        if verdict.state in login.REFRESHABLE and _token_of(current):
            self.sent = current  # rotated behind our back: send the new one, merge into its file
        token = _token_of(self.sent)
        failed_now = _failed_tokens.get(token)
        if failed_now is not None:
            raise failed_now
        return token, self.scopes_of(self.sent.doc)


def _check_storable(path: str, snap: Any) -> None:
    """Whatever we would write must be writable JSON before the token is spent."""
    try:
        store.serialise(snap.doc)
    except ValueError as exc:
        raise CredentialsError(
            path, f"holds a value JSON cannot store ({exc})", "fix or remove that value"
        ) from None


def _send(  # noqa: PLR0917 - private, called once
    settings: Settings,
    request: _Request,
    refresh_token: str,
    url: str,
    release: str | None,
    on_slow: Callable[[], None] | None,
    held: FolderFlock | None,
) -> dict[str, Any]:
    """The token request (`on_slow` called when no answer came within a second). A token the
    endpoint refused, or whose request got no answer, is not sent again (_failed_tokens)."""
    from claude_wrap.refresh import oauth  # noqa: PLC0415

    timer = threading.Timer(1.0, on_slow) if on_slow else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        response = oauth.refresh_tokens(
            refresh_token,
            request.scopes_of(request.snap.doc),
            url=url,
            client_id=settings.client_id,
            budget_s=settings.refresh_budget,
            latest=request.freshest,
            user_agent=binary.user_agent(release),
            # The request is out: our waiting shims may use the CPU now (flock.py).
            sent=held.open_gate if held is not None else None,
        )
    except RefreshRejectedError as exc:
        _failed_tokens[_token_of(request.sent)] = exc
        if exc.error == "invalid_grant":
            _died(settings, request.sent, exc)
        event(Event.FAILURE, settings.config_dir, str(exc), settings)
        raise
    except RefreshOutcomeUnknownError as exc:
        _failed_tokens[_token_of(request.sent)] = exc
        deaths.note_spent(settings, _token_of(request.sent))  # the server may have spent it
        event(Event.FAILURE, settings.config_dir, str(exc), settings)
        raise
    finally:
        if timer:
            timer.cancel()
    return response


def _died(settings: Settings, sent: Any, exc: RefreshRejectedError) -> None:
    """The endpoint refused the refresh token for good: weigh what claude-wrap saw of this login
    (judging/cause.py), record it for status and doctor, and say it in the error."""
    token = _token_of(sent)
    oauth = login.oauth_section(sent.doc) or {}
    refusal = deaths.refused(settings, settings.config_dir, _access(sent))
    evidence = cause.Evidence(
        now_ms(),
        ends_at=login.login_end(oauth),
        spent_by_us_at=deaths.spent_at(settings, token),
        refusal=refusal[0] if refusal else None,
        waited_s=refusal[1] if refusal else None,
    )
    found = cause.of_invalid_grant(evidence)
    deaths.note_death(settings, settings.config_dir, token, found, exc.status)
    exc.why = cause.sentence(*found)  # in the error, so in its `failure` event for `log` too


def _store_new(  # noqa: PLR0917 - private, called once
    settings: Settings,
    storage: Storage,
    pending: Any,
    request: _Request,
    response: dict[str, Any],
    remembered: memory.Remembered | None,
) -> dict[str, Any]:
    """The new tokens merged into the login and committed; the document written."""
    cfg = storage.lock_dir
    sent = request.sent
    with lock.write_lock(write_lock_dir(cfg), records=settings.lock_records):
        # Merge into the file as it is now: keep anything another writer changed meanwhile.
        try:
            latest = storage.read()
        except CredentialsError:
            latest = None
        base = latest.doc if latest is not None and isinstance(latest.doc, dict) else sent.doc
        asked = request.scopes_of(sent.doc)  # what the request asked for: granted, when it says not
        new_doc = login.merged(base, response, now_ms(), asked)
        # A stripped login gets its subscriptionType and the like back with its new token.
        section, _ = restore.fill(new_doc[login.OAUTH_KEY], remembered, restore_scopes=False)
        new_doc[login.OAUTH_KEY] = section
        pending.commit(new_doc, token_spent=True)
    return new_doc


def _mode(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0

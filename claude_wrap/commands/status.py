"""`claude-wrap status`: what Claude Code will make of the stored login, and why."""

from __future__ import annotations

import argparse
import datetime
import json
import time
from typing import TYPE_CHECKING, Any

from claude_wrap import console
from claude_wrap.config.settings import StorageKind
from claude_wrap.errors import EXIT_NOT_USABLE, EXIT_OK, StorageUnavailableError
from claude_wrap.findings import Finding, Level
from claude_wrap.judging import cause, login, loginend
from claude_wrap.logfile import deaths
from claude_wrap.refresh import refresher
from claude_wrap.storage import backends, filestore
from claude_wrap.system import configs

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings
    from claude_wrap.storage import store

ADVICE = {
    login.State.OK: "Claude Code accepts it",
    login.State.EXPIRING: "still accepted; `claude-wrap refresh` renews it now",
    login.State.EXPIRED: "run `claude-wrap refresh` (or any claude through the shim) to renew it",
    login.State.MISSING_SCOPES: (
        'Claude Code refuses a login without "user:inference"; run `claude-wrap refresh` to fix it'
    ),
    login.State.LOGGED_OUT: "run `claude /login` to log in again",
    login.State.NO_REFRESH_TOKEN: "it cannot be renewed; run `claude /login`",
    login.State.MISSING: "no login is stored; run `claude /login`",
    login.State.MALFORMED: "the file is not a login Claude Code can read; fix or remove it",
}

# Not a login.State: a login that looks usable on disk but that claude-wrap saw die (deaths.py).
DEAD = "dead"

# On a guest, what renews the login is a pull from its owner, never `/login` here.
GUEST_ADVICE = {
    login.State.OK: "Claude Code accepts it (borrowed from {owner})",
    login.State.NO_REFRESH_TOKEN: (
        "borrowed from {owner}: `claude-wrap refresh` pulls a fresh token"
    ),
    login.State.MISSING: "borrowed from {owner}: `claude-wrap refresh` pulls one",
    login.State.MISSING_SCOPES: "borrowed from {owner}: `claude-wrap refresh` pulls a whole one",
}


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show the state of the stored login")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument(
        "--short",
        action="store_true",
        help="a few characters for a shell prompt or status bar (ok, 2d, exp, login, ...)",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="every Claude config folder found (~/.claude, CLAUDE_CONFIG_DIR, ~/.claude-*)",
    )
    p.set_defaults(func=run)


def expiry_words(expires_at: int | None, now_ms: int) -> tuple[str, str]:
    if expires_at is None:
        return "unknown", "unknown"
    when = datetime.datetime.fromtimestamp(expires_at / 1000).astimezone()
    left_s = (expires_at - now_ms) // 1000
    sign = "" if left_s >= 0 else "-"
    left_s = abs(left_s)
    h, rest = divmod(left_s, 3600)
    m, s = divmod(rest, 60)
    left = f"{sign}{h}h{m:02d}m" if h else f"{sign}{m}m{s:02d}s"
    return when.strftime("%Y-%m-%d %H:%M:%S %Z"), left


def report(
    path: str, verdict: login.Verdict, now_ms: int, end_window_ms: int = 0
) -> dict[str, Any]:
    when, left = expiry_words(verdict.expires_at, now_ms)
    ends_at = verdict.login_ends_at
    return {
        "state": verdict.state,
        "usable": verdict.usable,
        "detail": verdict.detail,
        "advice": ADVICE[verdict.state],
        "file": path,
        "expires_at": verdict.expires_at,
        "expires": when,
        "time_left": left,
        "scopes": verdict.scopes,
        "subscription_type": verdict.subscription_type,
        "has_refresh_token": verdict.has_refresh_token,
        "access_token_tail": verdict.access_tail,
        "world_readable": filestore.world_readable(path),
        # refreshTokenExpiresAt: the login's hard end, which no refresh extends (null: unknown).
        "login_ends_at": ends_at,
        "login_ends": None if ends_at is None else loginend.when(ends_at),
        "login_ends_soon": loginend.within(ends_at, now_ms, end_window_ms),
        "login_end_notice": (
            loginend.sentence(ends_at, now_ms)
            if ends_at is not None and loginend.within(ends_at, now_ms, end_window_ms)
            else None
        ),
    }


def examine(settings: Settings, now: int) -> tuple[dict[str, Any], login.Verdict]:
    storage = backends.open_storage(settings)
    snap, verdict = refresher.assess(storage, settings.refresh_window_ms, now)
    data = report(storage.where, verdict, now, settings.login_end_window_ms)
    # Why it died, when it did and claude-wrap knows (judging/cause.py): its own line.
    death = _death(settings, snap, verdict, now)
    data["death"] = death.as_dict() if death is not None else None
    if death is not None:
        data["advice"] = death.advice  # not "refresh": the refresh token is dead
    if death is not None and verdict.usable:
        # It looks good on disk (an access token before its expiry), but the API refuses it and
        # the endpoint refused its refresh token: Claude Code cannot use it, whatever the file says.
        data.update(state=DEAD, usable=False, advice=death.advice,
                    detail="the server refuses this login's tokens")
    data["storage"] = storage.kind
    if storage.kind != StorageKind.FILE:
        data["world_readable"] = False
    # A guest holds no refresh token by design (guest.py): its renewal is a pull from the owner.
    # One that holds a refresh token has a login of its own (`claude /login` there), which the
    # guest steps aside for: this folder is an owner's then, and said to be.
    owner = settings.guest_setting
    own = bool(owner) and verdict.has_refresh_token
    data["guest_of"] = None if own else owner or None
    data["own_login_on_guest_of"] = owner if own else None
    if owner and not own and verdict.state in GUEST_ADVICE:
        data["advice"] = GUEST_ADVICE[verdict.state].format(owner=owner)
    return data, verdict


def run(ns: argparse.Namespace, settings: Settings) -> int:
    if ns.short:
        from claude_wrap.commands import shortstatus  # noqa: PLC0415

        return shortstatus.main(settings)
    now = int(time.time() * 1000)
    if ns.all:
        return run_all(ns, settings, now)
    data, _ = examine(settings, now)
    if ns.json:
        console.out(json.dumps(data, indent=2))
    else:
        console.out(render(data))
    return EXIT_OK if data["usable"] else EXIT_NOT_USABLE


def run_all(ns: argparse.Namespace, settings: Settings, now: int) -> int:
    """One block per config folder; exit 0 only when every folder's login is usable."""
    rows = []
    usable = True
    for found in configs.find(settings):
        data, _ = examine(found.settings, now)
        data["config_dir"] = found.path
        data["current"] = found.current
        rows.append(data)
        usable = usable and bool(data["usable"])
    if ns.json:
        console.out(json.dumps(rows, indent=2))
    else:
        blocks = []
        for data in rows:
            mark = " (current)" if data["current"] else ""
            body = "\n".join("  " + line for line in render(data).splitlines())
            blocks.append(f"{data['config_dir']}{mark}\n{body}")
        console.out("\n\n".join(blocks))
    return EXIT_OK if usable else EXIT_NOT_USABLE


def _death(
    settings: Settings, snap: Any, verdict: login.Verdict, now: int
) -> deaths.Death | None:
    if snap is None or (settings.guest_setting and not verdict.has_refresh_token):
        return None  # a guest's token dies with its owner's: the owner's status says why
    return deaths.explain(settings, settings.config_dir, snap.doc, verdict, now)


def render(data: dict[str, Any]) -> str:
    detail = f" ({data['detail']})" if data["detail"] else ""
    where = "file" if data.get("storage", "file") == "file" else "stored in"
    death = data.get("death")
    advice = "no refresh can renew it (see `died:`)" if death else data["advice"]
    lines = [f"login: {data['state']}{detail}: {advice}"]
    if death:
        lines.append(f"died: {death['words']} ({death['evidence']}): {death['advice']}")
    lines.append(f"{where}: {data['file']}")
    if data["state"] not in (login.State.MISSING, login.State.MALFORMED):
        lines.append(f"expires: {data['expires']} ({data['time_left']} left)")
        scopes = data["scopes"]
        lines.append(f"scopes: {' '.join(scopes) if scopes else '(none)'}")
        lines.append(f"subscription: {data['subscription_type'] or 'unknown'}")
        if data.get("guest_of"):
            lines.append(f"guest of: {data['guest_of']} (no refresh token is kept here)")
        elif data.get("own_login_on_guest_of"):
            lines.append(
                f"guest of: {data['own_login_on_guest_of']}, but this folder holds a login of "
                "its own (`claude /login`): it is used; `claude /logout` to borrow the owner's"
            )
        else:
            lines.append(f"refresh token: {'present' if data['has_refresh_token'] else 'absent'}")
        if data["access_token_tail"]:
            lines.append(f"access token: …{data['access_token_tail']}")
    if data.get("login_end_notice"):
        lines.append(data["login_end_notice"])
    if data["world_readable"]:
        lines.append("warning: the file is readable by other users; the next write makes it 0600")
    return "\n".join(lines)


# doctor's check ----------------------------------------------------------------------------


def check_login(settings: Settings, storage: store.Storage) -> list[Finding]:
    name = "login"
    try:
        snap, verdict = refresher.assess(storage, settings.refresh_window_ms)
    except StorageUnavailableError as exc:
        return [Finding(name, Level.FAIL, str(exc), exc.hint or None, where=storage.where)]
    detail = f" ({verdict.detail})" if verdict.detail else ""
    text = f"{verdict.state}{detail} in {storage.where}"
    ends = _login_end(settings, verdict)
    death = _death(settings, snap, verdict, int(time.time() * 1000))
    if verdict.state == login.State.OK and death is None:
        return [Finding(name, Level.OK, text, state=verdict.state, where=storage.where), *ends]
    if death is not None:
        if verdict.state == login.State.OK:
            text = f"{DEAD} (the server refuses this login's tokens) in {storage.where}"
        # The cause's own line and remedy: a copy elsewhere needs more than /login.
        said = f"{cause.WORDS[death.cause]} ({death.evidence})"
        return [
            Finding(name, Level.FAIL, text, "see `login death` below", state=verdict.state,
                    where=storage.where),
            Finding("login death", Level.FAIL, said, death.advice, cause=death.cause),
            *ends,
        ]
    level = Level.WARN if verdict.state in login.REFRESHABLE else Level.FAIL
    fix = ADVICE[verdict.state]
    return [Finding(name, level, text, fix, state=verdict.state, where=storage.where), *ends]


def _login_end(settings: Settings, verdict: login.Verdict) -> list[Finding]:
    """A warning when the login's hard end (refreshTokenExpiresAt) is within the window."""
    now = int(time.time() * 1000)
    ends_at = verdict.login_ends_at
    window_ms = settings.login_end_window_ms
    if ends_at is None or not loginend.within(ends_at, now, window_ms):
        return []
    said = loginend.sentence(ends_at, now)
    return [Finding("login end", Level.WARN, said, "run `claude /login`")]

"""`claude-wrap keep`: what the background keeper runs every few minutes.

Refresh the login when it needs it and repair missing scopes, for the current config folder or,
with --all, for every one found; then exit. Quiet when there is nothing to do, so a timer's log
holds only events. The exit status is `refresh`'s: that of the first failure.
"""

from __future__ import annotations

import argparse
from typing import Any

from claude_wrap import console
from claude_wrap.config.settings import Settings
from claude_wrap.errors import (
    EXIT_OK,
    EXIT_WRITE,
    RefreshRejectedError,
    SettingError,
    WrapError,
)
from claude_wrap.judging import login
from claude_wrap.keeper import notify
from claude_wrap.refresh import refresher, renewal
from claude_wrap.storage import backends
from claude_wrap.system import configs


def register(sub: Any) -> None:
    p = sub.add_parser(
        "keep", help="refresh or repair the login if it needs it, quietly (for timers)"
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="every Claude config folder found (~/.claude, CLAUDE_CONFIG_DIR, ~/.claude-*); "
        "folders with no login are skipped",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep running: repair each change to the credentials file at once (locally when "
        "the token is good) and refresh ahead of expiry; for a user service "
        "(`claude-wrap install --keeper`)",
    )
    p.set_defaults(func=run)


def run(ns: argparse.Namespace, settings: Settings) -> int:
    found = (
        configs.find(settings)
        if ns.all
        else [configs.ConfigDir(settings.config_dir, settings, current=True)]
    )
    if getattr(ns, "watch", False):
        from claude_wrap.keeper import watch  # noqa: PLC0415

        def one(folder: configs.ConfigDir) -> int:
            # A change to the owner's login (a refresh) goes to its shared folders at once.
            return keep_one(folder, skip_missing=ns.all) or publish_shared(settings)

        rescan = (lambda: configs.find(settings)) if ns.all else None
        owner = settings.guest_setting
        if owner:
            # A guest's keeper also holds the push from its owner (keeper/push.py): each new
            # token is stored the moment the owner has it, not when this one falls due.
            from claude_wrap.keeper import push  # noqa: PLC0415

            with push.guest_link(settings, owner):
                return watch.watch(settings, found, one, rescan)
        return watch.watch(settings, found, one, rescan)
    status = EXIT_OK
    for folder in found:
        result = keep_one(folder, skip_missing=ns.all)
        status = status or result
    return status or publish_shared(settings)


def publish_shared(settings: Settings) -> int:
    """The owner's shared folders (guest.py): rewrite their token-only files. Not on a guest."""
    if settings.guest_setting:
        return EXIT_OK
    from claude_wrap.guests import guest  # noqa: PLC0415 - the owner's shared folders

    status = EXIT_OK
    for problem in guest.publish(settings):
        console.say(problem)
        status = EXIT_WRITE
    return status


def keep_one(folder: configs.ConfigDir, *, skip_missing: bool = False) -> int:
    """Refresh or repair one folder's login if it needs it; say what was done (events only).
    `skip_missing`: a folder with no login is left alone (`claude /login` is the user's)."""
    try:
        if skip_missing and _no_login(folder.settings):
            return EXIT_OK
        outcome = renewal.ensure_fresh(folder.settings)
    except SettingError:
        raise  # ours, not the folder's: one line from the entry point, not one per folder
    except WrapError as exc:
        console.say(f"{folder.path}: {exc}")
        if isinstance(exc, RefreshRejectedError) and exc.error == "invalid_grant":
            notify.consider(folder.settings, folder.path, ends_at=None, dead=True)
        return exc.exit_code
    notify.consider(folder.settings, folder.path, ends_at=outcome.after.login_ends_at, dead=False)
    if outcome.action == refresher.Action.REFRESHED:
        console.out(f"{folder.path}: refreshed: {'; '.join(outcome.changes)}", flush=True)
    elif outcome.action == refresher.Action.REPAIRED:
        console.out(f"{folder.path}: repaired without a refresh: {'; '.join(outcome.changes)}",
                    flush=True)
    elif outcome.action == refresher.Action.ADOPTED:
        console.out(
            f"{folder.path}: another process had refreshed the login; "
            f"it is {outcome.after.state}",
            flush=True,
        )
    return EXIT_OK


def _no_login(settings: Settings) -> bool:
    _, verdict = refresher.assess(backends.open_storage(settings), settings.refresh_window_ms)
    return verdict.state == login.State.MISSING

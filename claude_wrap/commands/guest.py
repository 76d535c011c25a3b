"""`claude-wrap guest` (this machine borrows an owner's login) and `claude-wrap share` (the owner
keeps a token file in a folder its containers mount). See guests/guest.py and docs/guests.md."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from claude_wrap import console
from claude_wrap.config import fspath
from claude_wrap.errors import EXIT_OK, SettingError
from claude_wrap.guests import guest

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings


def register(sub: Any) -> None:
    g = sub.add_parser("guest", help="borrow an owner's login: --ssh HOST, --folder DIR, --off")
    how = g.add_mutually_exclusive_group()
    how.add_argument("--ssh", metavar="HOST", help="pull tokens with `ssh HOST claude-wrap token`")
    how.add_argument("--folder", metavar="DIR", help="read tokens the owner shares in DIR")
    how.add_argument("--off", action="store_true", help="stop being a guest")
    g.set_defaults(func=run_guest)
    s = sub.add_parser("share", help="keep a token file in DIR for containers (owner side)")
    s.add_argument("folder", metavar="DIR")
    s.add_argument("--group", action="store_true", help="mode 0640 instead of 0600")
    s.add_argument("--remove", action="store_true", help="stop sharing DIR")
    s.set_defaults(func=run_share)


def run_guest(ns: argparse.Namespace, settings: Settings) -> int:
    path = settings.guest_file
    if ns.ssh is None and ns.folder is None and not ns.off:
        current = settings.guest_setting
        if not current:
            console.out("not a guest: this machine holds its own login")
        elif guest.holds_own_login(settings):
            console.out(guest.own_login_line(settings, current))
        else:
            console.out(f"guest of {current}")
        return EXIT_OK
    if ns.off:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        _forget_verdict(settings)
        console.out("not a guest any more; `claude /login` to log in on this machine")
        return EXIT_OK
    if ns.folder is not None and not os.path.isabs(ns.folder):
        raise SettingError(
            "--folder", ns.folder, message=f"--folder {ns.folder}: give an absolute path"
        )
    value = f"ssh:{ns.ssh}" if ns.ssh is not None else f"folder:{ns.folder}"
    fspath.make_private_dirs(os.path.dirname(path))
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    os.replace(tmp, path)
    _forget_verdict(settings)
    if guest.holds_own_login(settings):
        # `claude /login` ran here: that login is the user's choice, never pulled over.
        console.out(guest.own_login_line(settings, value))
        return EXIT_OK
    outcome = guest.ensure_fresh(settings.without_guest(), value, force=True)
    for warning in outcome.warnings:
        console.say(f"warning: {warning}")
    console.out(f"guest of {value}: the login is {outcome.after.state}")
    return EXIT_OK


def _forget_verdict(settings: Settings) -> None:
    """The verdict cache keeps the guest file's line beside the verdict (fastpath.judged), so
    that a healthy run need not open the file: changed, the next run judges afresh."""
    try:
        os.unlink(settings.verdict_cache)
    except OSError:
        pass  # none, or not ours to remove: the next change to the login renews it anyway


def run_share(ns: argparse.Namespace, settings: Settings) -> int:
    folder = os.path.abspath(ns.folder)
    entries = [e for e in guest.shares(settings) if e[0] != folder]
    if ns.remove:
        guest.save_shares(settings, entries)
        try:
            os.unlink(os.path.join(folder, guest.SHARE_NAME))
        except FileNotFoundError:
            pass
        console.out(f"{folder}: no longer shared")
        return EXIT_OK
    if not os.path.isdir(folder):
        raise SettingError("DIR", folder, message=f"{folder} is not a folder")
    entries.append((folder, ns.group))
    guest.save_shares(settings, entries)
    problems = guest.publish(settings)
    for problem in problems:
        console.say(f"{problem}")
    if problems:
        return 7
    shared = os.path.join(folder, guest.SHARE_NAME)
    console.out(f"{shared}: written; `claude-wrap keep` keeps it fresh")
    return EXIT_OK

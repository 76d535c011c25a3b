"""`claude-wrap token` and `claude-wrap exec`: hand out the access token, keep the refresh token.

`token` prints an access token good for at least --min-valid seconds (refreshed under Claude
Code's locks when needed: one request however many ask at once), or with --json the ExecCredential
a kubectl exec credential plugin returns (guest.py). What it says of the token's life is true
under rotation: the real service revokes an access token when the login rotates, which happens at
the latest when the owner's refresh window opens, long before the token's own expiry. So the
expiry reported (`status.expirationTimestamp`, `claudeWrap.validUntil`) is that moment, and
--min-valid S means S seconds before it (`claudeWrap.expiresAt` stays the token's own, which a
guest stores for Claude Code).

`exec` runs a command with a private config folder whose credentials file holds an access token
and no refresh token, kept fresh by a minder it leaves behind (keeper/minder.py): the command's
claude rolls over at each rotation. `--env` puts one token in CLAUDE_CODE_OAUTH_TOKEN instead,
which dies at the owner's next rotation; with the login in the macOS Keychain, where the minder
cannot follow it, the token goes through an inherited pipe named by
CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR (read once, at start). Never in argv, never the refresh
token.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
from typing import Any

from claude_wrap import console
from claude_wrap.config.settings import TOKEN_ENV, TOKEN_FD_ENV, Settings, StorageKind
from claude_wrap.errors import EXIT_OK, EXIT_USAGE, OwnerUnreachableError, SettingError
from claude_wrap.guests import guest

FD_VAR = TOKEN_FD_ENV
ENV_VAR = TOKEN_ENV
MAX_MIN_VALID_S = 12 * 3600.0


def register(sub: Any) -> None:
    p = sub.add_parser("token", help="print an access token (never the refresh token)")
    _min_valid(p)
    p.add_argument(
        "--json", action="store_true", help="a kubectl ExecCredential, with expiry and scopes"
    )
    p.add_argument(
        "--for-guest",
        action="store_true",
        help="behind a guest's forced command: serve what the guest asked in "
        "SSH_ORIGINAL_COMMAND (--follow: push each new token; --min-valid S: one answer)",
    )
    p.set_defaults(func=run_token)
    e = sub.add_parser(
        "exec",
        help="run CMD with a private config folder whose access token is kept fresh: "
        "claude-wrap exec -- CMD ...",
    )
    _min_valid(e)
    e.add_argument(
        "--env",
        action="store_true",
        help=f"pass one token in {ENV_VAR} instead (a CMD that cannot use a config folder); "
        "it dies at the owner's next rotation and CMD cannot get another",
    )
    e.add_argument("cmd", nargs=argparse.REMAINDER)
    e.set_defaults(func=run_exec)


def _min_valid(p: Any) -> None:
    p.add_argument(
        "--min-valid",
        type=float,
        default=None,
        metavar="SECONDS",
        help="refresh first unless the token is good for this long before the owner's next "
        "rotation revokes it (default: the refresh window plus 5 minutes)",
    )


def _seconds(settings: Settings, value: float | None) -> float:
    if value is None:
        return settings.refresh_window + guest.MARGIN_S
    if not 0 <= value <= MAX_MIN_VALID_S:
        raise SettingError(
            "--min-valid",
            f"{value:g}",
            message=f"--min-valid {value:g} is not between 0 and {MAX_MIN_VALID_S:g} s",
        )
    return value


def _credential(settings: Settings, value: float | None) -> dict[str, Any]:
    return _truthful(_handed(settings, value), settings.refresh_window)


def _handed(settings: Settings, value: float | None) -> dict[str, Any]:
    owner = settings.guest_setting
    if owner:
        # A guest hands on what its owner gave it (pulled when due): a guest of a guest.
        guest.ensure_fresh(settings, owner)
        from claude_wrap.judging import login  # noqa: PLC0415
        from claude_wrap.refresh import refresher  # noqa: PLC0415
        from claude_wrap.storage import filestore  # noqa: PLC0415

        storage = filestore.FileStorage(settings.credentials_file)
        snap, verdict = refresher.assess(storage, 0)
        oauth = login.oauth_section(snap.doc) if snap is not None else None
        if not oauth or not verdict.usable:
            raise OwnerUnreachableError(owner, "no usable token was pulled")
        return guest.make_credential(
            login.access_token(snap.doc), verdict.expires_at, verdict.scopes or [], oauth
        )
    # Good for S seconds before the rotation: the window is added, the rotation being due then.
    return guest.credential(settings, _seconds(settings, value) + settings.refresh_window)


def _truthful(cred: dict[str, Any], window_s: float) -> dict[str, Any]:
    """`cred` with the expiry a handed-out token really has: the owner's next rotation revokes
    it, at the latest when the login's refresh window opens (expiresAt minus the window)."""
    extra = cred.get(guest.EXTRA_KEY, {})
    expires = extra.get("expiresAt")
    if isinstance(expires, int) and not isinstance(expires, bool):
        dies = expires - int(window_s * 1000)
        when = datetime.datetime.fromtimestamp(dies / 1000, datetime.timezone.utc)
        cred["status"]["expirationTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        extra["validUntil"] = dies
    return cred


def run_token(ns: argparse.Namespace, settings: Settings) -> int:
    if ns.for_guest:
        from claude_wrap.keeper import push  # noqa: PLC0415 - the owner's side of the push

        asked = None if ns.min_valid is None else _seconds(settings, ns.min_valid)
        return push.serve(settings, asked)
    cred = _credential(settings, ns.min_valid)
    out = json.dumps(cred, indent=2) if ns.json else cred["status"]["token"]
    console.out(out, flush=True)
    return EXIT_OK


def run_exec(ns: argparse.Namespace, settings: Settings) -> int:
    cmd = list(ns.cmd)
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if not cmd:
        console.say("exec needs a command: claude-wrap exec -- CMD ...")
        return EXIT_USAGE
    program = shutil.which(cmd[0], path=settings.search_path) or cmd[0]
    cred = _credential(settings, ns.min_valid)
    token = cred["status"]["token"]
    if ns.env:
        child = settings.with_access_token(token=token).child_env()
    elif settings.storage_kind == StorageKind.KEYCHAIN and not settings.guest_setting:
        child = _through_pipe(settings, token)
    else:
        child = _minded(settings)
    console.flush()
    try:
        os.execvpe(program, cmd, child)  # noqa: S606 - the user's command, by design
    except OSError as exc:
        console.say(f"cannot run {cmd[0]}: {exc.strerror}")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return EXIT_OK  # not reached


def _minded(settings: Settings) -> dict[str, str]:
    """The environment of a CMD whose claude uses a private config folder, kept fresh by a
    minder left behind (keeper/minder.py). CLAUDE_WRAP_ACTIVE=1: a shim in CMD steps aside
    (the folder holds no refresh token for it to judge; the minder renews)."""
    from claude_wrap.keeper import minder  # noqa: PLC0415

    cred = minder.current(settings)
    if cred is None:
        raise OwnerUnreachableError(settings.guest_setting or "this machine", "no usable token")
    private = minder.make_private(settings, cred)
    try:
        minder.start(settings, private)
    except BaseException:
        minder.remove(private)
        raise
    return settings.with_private_folder(private).unnested().child_env()


def _through_pipe(settings: Settings, token: str) -> dict[str, str]:
    """The environment of a CMD that reads one token from an inherited pipe: the token is
    written, the write end closed (far below the pipe buffer, so the write never blocks), and
    the reader sees the token, then end of file."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, token.encode())
    finally:
        os.close(write_end)
    os.set_inheritable(read_end, True)
    return settings.with_access_token(fd=read_end).child_env()

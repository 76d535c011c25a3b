"""`claude-wrap token` and `claude-wrap exec`: hand out the access token, keep the refresh token.

`token` prints an access token good for at least --min-valid seconds (refreshed under Claude
Code's locks when needed: one request however many ask at once), or with --json the ExecCredential
a kubectl exec credential plugin returns (guest.py). `exec` runs a command with one, passed
through an inherited pipe named by CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR (read once at start by
2.1.87, 2.1.197 and 2.1.332, from /proc/self/fd/N), or with --env in CLAUDE_CODE_OAUTH_TOKEN for
versions without it. Never in argv, never the refresh token.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from typing import Any

from claude_wrap import console
from claude_wrap.config.settings import TOKEN_ENV, TOKEN_FD_ENV, Settings
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
    e = sub.add_parser("exec", help="run CMD with an access token: claude-wrap exec -- CMD ...")
    _min_valid(e)
    e.add_argument(
        "--env",
        action="store_true",
        help=f"pass it in {ENV_VAR} instead of a pipe named by {FD_VAR} (Claude Code older "
        "than 2.1.87, or a CMD that starts claude more than once)",
    )
    e.add_argument("cmd", nargs=argparse.REMAINDER)
    e.set_defaults(func=run_exec)


def _min_valid(p: Any) -> None:
    p.add_argument(
        "--min-valid",
        type=float,
        default=None,
        metavar="SECONDS",
        help="refresh first unless the token is good for this long (default: the refresh "
        "window plus 5 minutes)",
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
    return guest.credential(settings, _seconds(settings, value))


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
    token = _credential(settings, ns.min_valid)["status"]["token"]
    if ns.env:
        child = settings.with_access_token(token=token).child_env()
    else:
        # A pipe holds the token (far below the pipe buffer, so the write never blocks); the
        # write end is closed before exec, so the reader sees the token, then end of file.
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, token.encode())
        finally:
            os.close(write_end)
        os.set_inheritable(read_end, True)
        child = settings.with_access_token(fd=read_end).child_env()
    console.flush()
    try:
        os.execvpe(program, cmd, child)  # noqa: S606 - the user's command, by design
    except OSError as exc:
        console.say(f"cannot run {cmd[0]}: {exc.strerror}")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return EXIT_OK  # not reached

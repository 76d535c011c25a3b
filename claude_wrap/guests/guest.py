"""Guests: machines and containers that borrow an owner's login, and the owner's side of it.

Refresh tokens are single-use and of one family: two machines holding copies of one login kill
each other's at the first refresh. So only the owner ever holds (and spends) the refresh token;
a guest keeps a credentials file with an access token and the scopes, and no refresh token at
all, pulled from the owner before it is due:

- over OpenSSH: `ssh HOST claude-wrap token --json` (a forced command in the owner's
  authorized_keys makes that key good for nothing else);
- from a folder the owner's keeper keeps a token file in (`claude-wrap share DIR`), mounted into
  containers on the owner's machine.

Claude Code 2.1.87, 2.1.197 and 2.1.332 accept a stored login without a refresh token, and a
running Claude Code re-reads a changed file (docs/protocol.md section 5), so a long session
rolls over to each new token by itself. A guest never refreshes: when the owner cannot be
reached it says so in one line, and the token it has keeps working until the owner next rotates
(the service revokes it then: docs/protocol.md section 10). So the owner also pushes each new
token to the guests' keepers as it is made (push.py).

The credential travels in the shape of a kubectl exec credential plugin's answer, with our own
top-level `claudeWrap` object for what Kubernetes has no field for (the scopes): fields added
inside `status` could collide with ones Kubernetes defines later, a key of our own cannot.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
from typing import TYPE_CHECKING, Any

from claude_wrap.config import fspath
from claude_wrap.config.settings import KEEPER_PERIOD_S, Settings, write_lock_dir
from claude_wrap.errors import (
    CredentialsError,
    OwnerUnreachableError,
    WrapError,
)
from claude_wrap.judging import login
from claude_wrap.locks import lock
from claude_wrap.refresh import refresher
from claude_wrap.storage import backends, filestore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from claude_wrap.locks.flock import FolderFlock

API_VERSION = "client.authentication.k8s.io/v1"
KIND = "ExecCredential"
EXTRA_KEY = "claudeWrap"
SHARE_NAME = "claude-wrap-token.json"
# What a guest asks for beyond its own window: the owner refreshes when less than this is left,
# so that what the guest gets is good for longer than the guest's next pull is away.
MARGIN_S = 300.0
# Fields of the owner's login a guest may copy: never refreshToken.
COPIED = ("subscriptionType", "rateLimitTier")


# The owner's side --------------------------------------------------------------------------


def credential(settings: Settings, min_valid_s: float) -> dict[str, Any]:
    """An access token good for at least `min_valid_s`, refreshed under Claude Code's locks when
    needed (refresher.ensure_fresh: one request however many ask at once), as an ExecCredential.
    Never holds the refresh token."""
    refresher.ensure_fresh(settings.with_refresh_window(min_valid_s))
    storage = backends.open_storage(settings)
    snap, verdict = refresher.assess(storage, int(min_valid_s * 1000))
    if not verdict.usable or verdict.state != login.State.OK:
        # ensure_fresh returned, so nothing a refresh can do: say what the login is.
        raise CredentialsError(
            storage.where, verdict.detail or f"the login is {verdict.state}", login_hint()
        )
    oauth = login.oauth_section(snap.doc) or {}
    return make_credential(
        login.access_token(snap.doc), verdict.expires_at, verdict.scopes or [], oauth
    )


def login_hint() -> str:
    from claude_wrap.errors import LOGIN_HINT  # noqa: PLC0415

    return LOGIN_HINT


def make_credential(
    token: str, expires_at: int | None, scopes: list[str], oauth: Mapping[str, Any]
) -> dict[str, Any]:
    status: dict[str, Any] = {"token": token}
    if expires_at is not None:
        when = datetime.datetime.fromtimestamp(expires_at / 1000, datetime.timezone.utc)
        status["expirationTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    extra: dict[str, Any] = {"scopes": list(scopes), "expiresAt": expires_at}
    for key in COPIED:
        if isinstance(oauth.get(key), str):
            extra[key] = oauth[key]
    return {"apiVersion": API_VERSION, "kind": KIND, "status": status, EXTRA_KEY: extra}


def write_share(folder: str, cred: dict[str, Any], *, group: bool = False) -> str:
    """The token-only file in a shared folder, atomically (temp file, fsync, rename): a guest
    reading it sees the old token or the new one, never half of either. 0600, or 0640 with
    `group` (a container running as another user of the folder's group)."""
    path = os.path.join(folder, SHARE_NAME)
    mode = 0o640 if group else 0o600
    tmp = os.path.join(folder, f".{SHARE_NAME}.tmp.{os.getpid()}")
    data = (json.dumps(cred, indent=2) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widened past `mode`
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def shares(settings: Settings) -> list[tuple[str, bool]]:
    """[(folder, group)] the owner's keeper keeps a token in (`claude-wrap share`)."""
    try:
        with open(settings.shares_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        flag, _, folder = line.partition(" ")
        if folder:
            out.append((folder, flag == "group"))
    return out


def save_shares(settings: Settings, entries: list[tuple[str, bool]]) -> None:
    path = settings.shares_file
    fspath.make_private_dirs(os.path.dirname(path))
    text = "".join(f"{'group' if g else 'user'} {d}\n" for d, g in entries)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def publish(settings: Settings) -> list[str]:
    """Refresh each shared folder's token file (the owner's keeper runs this): problems, one
    line each. The token written is good for two keeper periods past a guest's window."""
    entries = shares(settings)
    if not entries:
        return []
    min_valid = settings.refresh_window + 2 * KEEPER_PERIOD_S
    from claude_wrap.errors import SettingError  # noqa: PLC0415 - beside WrapError's catch

    try:
        cred = credential(settings, min_valid)
    except SettingError:
        raise  # a setting of ours, not a problem of the shared folders: the entry point says it
    except WrapError as exc:
        return [f"shared folders not updated: {exc}"]
    problems = []
    for folder, group in entries:
        try:
            write_share(folder, cred, group=group)
        except OSError as exc:
            problems.append(f"{folder}: cannot write {SHARE_NAME}: {exc.strerror or exc}")
    return problems


# The guest's side --------------------------------------------------------------------------


def fetch(settings: Settings, owner: str, min_valid_s: float) -> dict[str, Any]:
    """The owner's ExecCredential, parsed and checked. Raises OwnerUnreachableError."""
    kind, _, target = owner.partition(":")
    if kind == "folder":
        path = os.path.join(target, SHARE_NAME)
        try:
            with open(path, "rb") as f:
                raw = f.read(filestore.MAX_BYTES)
        except FileNotFoundError:
            raise OwnerUnreachableError(
                owner, f"{path} does not exist (has the owner run `claude-wrap share {target}`?)"
            ) from None
        except OSError as exc:
            raise OwnerUnreachableError(owner, f"cannot read {path}: {exc.strerror}") from None
    else:
        raw = _ssh(settings, owner, target, min_valid_s)
    return parse_credential(owner, raw)


def _ssh(settings: Settings, owner: str, host: str, min_valid_s: float) -> bytes:
    timeout = settings.guest_timeout
    remote = f"{settings.guest_remote_command} --min-valid {int(min_valid_s)}"
    argv = [
        *shlex.split(settings.guest_ssh_command),
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={max(1, int(timeout / 2))}",
        "-T", "--", host, remote,
    ]  # fmt: skip
    try:
        result = subprocess.run(  # ssh, with the user's own settings
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False,
            env=settings.child_env(),
        )
    except FileNotFoundError:
        raise OwnerUnreachableError(owner, f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise OwnerUnreachableError(owner, f"ssh gave no answer in {timeout:g} s") from None
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"exit status {result.returncode}"
        if result.returncode == 255:  # ssh's own failure status
            raise OwnerUnreachableError(owner, f"ssh failed: {last}")
        raise OwnerUnreachableError(owner, f"the owner said: {last.removeprefix('claude-wrap: ')}")
    return result.stdout


def parse_credential(owner: str, raw: bytes) -> dict[str, Any]:
    """{"token", "expiresAt", "scopes", ...copied fields} from an ExecCredential; never echoes
    what it was given (it may hold a token)."""
    from claude_wrap.config import protocol  # noqa: PLC0415 - Claude Code's default scopes

    try:
        doc = json.loads(raw)
    except ValueError:
        raise OwnerUnreachableError(owner, "the answer is not JSON") from None
    status = doc.get("status") if isinstance(doc, dict) else None
    token = status.get("token") if isinstance(status, dict) else None
    if not isinstance(doc, dict) or not isinstance(status, dict) or doc.get("kind") != KIND:
        raise OwnerUnreachableError(owner, f"the answer is not an {KIND}")
    if not isinstance(token, str) or not token:
        raise OwnerUnreachableError(owner, f"the answer is not an {KIND} with a token")
    found = doc.get(EXTRA_KEY)
    extra: dict[str, Any] = found if isinstance(found, dict) else {}
    expires = extra.get("expiresAt")
    if not isinstance(expires, int) or isinstance(expires, bool):
        expires = _rfc3339_ms(status.get("expirationTimestamp"))
    scopes = extra.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        scopes = list(protocol.DEFAULT_SCOPES)
    out: dict[str, Any] = {"accessToken": token, "expiresAt": expires, "scopes": scopes}
    for key in COPIED:
        if isinstance(extra.get(key), str):
            out[key] = extra[key]
    return out


def _rfc3339_ms(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return int(when.timestamp() * 1000)


def store_pulled(settings: Settings, pulled: dict[str, Any]) -> tuple[bool, bool]:
    """Write the pulled token into the guest's credentials file, under Claude Code's write lock,
    atomically, every other field kept. (changed, own_login).

    A refresh token found in a guest's file is never one the owner handed out (it hands out
    none): it is a login of this machine's own (`claude /login` here), and the file is left as
    it is (own_login), never stripped (issue 26: a user's own login was once destroyed here)."""
    path = settings.credentials_file
    cfg = os.path.dirname(path)
    fspath.make_private_dirs(cfg)
    with lock.write_lock(write_lock_dir(cfg), records=settings.lock_records):
        snap = filestore.read(path)  # a malformed file raises: reported, left as it is
        found = snap.doc if snap is not None else None
        doc: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
        old = doc.get(login.OAUTH_KEY)
        oauth = dict(old) if isinstance(old, dict) else {}
        if oauth.get("refreshToken"):
            return False, True
        oauth.pop("refreshToken", None)  # an empty one (a login Claude Code blanked)
        removed = False
        fields = {k: v for k, v in pulled.items() if v is not None}
        if pulled.get("expiresAt") is None:
            oauth.pop("expiresAt", None)
        new = {**oauth, **fields}
        if new == old:
            return False, False
        doc[login.OAUTH_KEY] = new
        with filestore.PendingWrite(path) as pending:
            pending.commit(doc, token_spent=False)
    return True, removed


def ensure_fresh(
    settings: Settings,
    owner: str,
    *,
    force: bool = False,
    held: FolderFlock | None = None,
    revoked: str | None = None,
) -> refresher.FreshnessReport:
    """The guest's ensure_fresh: pull from the owner when the token is due (or `force`: Claude
    Code refused it). Never refreshes. Raises OwnerUnreachableError, carrying the expiry of the
    token the guest still has."""
    path = settings.credentials_file
    storage = filestore.FileStorage(path)
    window_s = settings.refresh_window
    window_ms = settings.refresh_window_ms
    _, before = refresher.look(settings, storage, window_ms)
    if before.has_refresh_token:
        return own_login(settings, owner, force=force, held=held, revoked=revoked)
    if before.state == login.State.OK and not force:
        return refresher.FreshnessReport(refresher.Action.NONE, before, before, [])
    try:
        pulled = fetch(settings, owner, window_s + MARGIN_S)
    except OwnerUnreachableError as exc:
        exc.expires_at = before.expires_at if before.usable else None
        raise
    changed, own = store_pulled(settings, pulled)
    if own:  # `claude /login` ran while we pulled
        return own_login(settings, owner, force=force, held=held, revoked=revoked)
    _told_own_login(settings, told=False)
    _, after = refresher.look(settings, storage, window_ms)
    warnings: list[str] = []
    if not after.usable:
        raise OwnerUnreachableError(owner, "the owner's token is expired or lacks scopes")
    changes = ["new access token from the owner"] if changed else []
    return refresher.FreshnessReport(
        refresher.Action.ADOPTED if changed else refresher.Action.NONE,
        before,
        after,
        changes,
        warnings,
    )



# A login of the guest's own (`claude /login` on the guest) --------------------------------


def holds_own_login(settings: Settings) -> bool:
    """The guest's credentials file holds a refresh token: a login of this machine's own."""
    try:
        snap = filestore.read(settings.credentials_file)
    except WrapError:
        return False
    return bool(snap is not None and login.refresh_token(snap.doc))


def own_login_line(settings: Settings, owner: str) -> str:
    folder, home = settings.config_dir, settings.home.rstrip("/")
    if home and folder.startswith(home + "/"):
        folder = "~" + folder[len(home) :]
    return (
        f"guest of {owner}, but {folder} holds a login of its own (`claude /login`): this "
        "folder uses it; `claude /logout` to borrow the owner's again"
    )


def own_login(
    settings: Settings,
    owner: str,
    *,
    force: bool = False,
    held: FolderFlock | None = None,
    revoked: str | None = None,
) -> refresher.FreshnessReport:
    """The guest steps aside for a folder that holds a login of its own: no pull, nothing
    stripped; the folder is an owner now, kept fresh as any owner's (under Claude Code's
    locks). The line saying so is a warning the first time only (noted in the state folder
    until the folder borrows again)."""
    report = refresher.ensure_fresh(settings.as_owner(), force=force, held=held, revoked=revoked)
    if not _told_own_login(settings, told=True):
        report.warnings.insert(0, own_login_line(settings, owner))
    return report


def _told_own_login(settings: Settings, *, told: bool) -> bool:
    """Note (told) or forget (not told) that this folder's own login was announced; whether it
    had been."""
    from claude_wrap.storage import privatefile  # noqa: PLC0415

    path = os.path.join(settings.state_dir, "own-logins")
    folder = settings.config_dir
    try:
        with open(path, encoding="utf-8") as f:
            folders = f.read().splitlines()
    except OSError:
        folders = []
    had = folder in folders
    if had != told:
        kept = [f for f in folders if f != folder] + ([folder] if told else [])
        privatefile.replace(path, "".join(f"{f}\n" for f in kept).encode())
    return had

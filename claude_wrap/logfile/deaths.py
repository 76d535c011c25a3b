"""claude-wrap's own record of what it did to each login and what it saw of its death: the
evidence judging/cause.py weighs, kept where `status` and `doctor` (later, other processes)
can read it.

Three kinds of entry, in one small file of the state folder (settings.login_history, 0600):
- `spent`: the refresh tokens claude-wrap sent (answered, or sent with no answer back), each as
  a hash and a time. A 64-bit prefix of a SHA-256 of a token with hundreds of random bits says
  nothing usable of it; it only lets a later invalid_grant ask "was this one ours?". The newest
  SPENT_KEPT are kept: a login rotates a few times a day, so that is weeks of them.
- `refused`: per config folder, the access token (hashed) the API refused as revoked when the
  shim's watch saw it, what it said, and how long claude-wrap then waited for a successor.
- `dead`: per config folder, the cause of the last death claude-wrap met, the evidence, and the
  refresh token (hashed) that died with it, so that a later `/login` is never blamed on it.
- `seen`: per config folder, the login claude-wrap last judged usable (its refresh token hashed,
  the file's identity then): when Claude Code's own refresh of it meets invalid_grant under a
  run of the shim and blanks the file, this names the token that died.

Never worth failing for: a record that cannot be read or written is skipped, and the cause is
then said with less evidence. Read-modify-write runs under an flock of a file beside it
(`.flock`), so that two shims recording at once lose neither entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from typing import TYPE_CHECKING, Any

from claude_wrap.config import fspath
from claude_wrap.judging import cause, login
from claude_wrap.storage import privatefile

if TYPE_CHECKING:
    from collections.abc import Iterator

    from claude_wrap.config.settings import Settings

SPENT_KEPT = 200


def fingerprint(token: str) -> str:
    """A token's name in this record: never the token, not reversible, stable across processes."""
    return hashlib.sha256(b"claude-wrap login history\0" + token.encode()).hexdigest()[:16]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _changing(settings: Settings) -> Iterator[dict[str, Any]]:
    """The record, to change in place; written back whole at the end, under the flock."""
    path = settings.login_history
    try:
        fspath.make_private_dirs(os.path.dirname(path))
        fd = os.open(path + ".flock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        yield {}  # no state folder: nothing is recorded, nothing fails
        return
    try:
        with contextlib.suppress(OSError):  # no flock to be had (NFS): a lost entry at worst
            fcntl.flock(fd, fcntl.LOCK_EX)
        data = _load(path)
        yield data
        privatefile.replace(path, json.dumps(data, indent=1, sort_keys=True).encode())
    finally:
        os.close(fd)  # drops the flock


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    part = data.get(name)
    if not isinstance(part, dict):
        part = data[name] = {}
    return part


def note_spent(settings: Settings, token: str) -> None:
    """claude-wrap sent this refresh token (its answer came, or may have been lost)."""
    if not token:
        return
    with _changing(settings) as data:
        spent = _section(data, "spent")
        spent[fingerprint(token)] = _now_ms()
        if len(spent) > SPENT_KEPT:
            newest = sorted(spent.items(), key=lambda kv: kv[1] if isinstance(kv[1], int) else 0)
            data["spent"] = dict(newest[-SPENT_KEPT:])


def spent_at(settings: Settings, token: str) -> int | None:
    """When claude-wrap sent this refresh token, None when it never did (as far as it kept)."""
    return _spent_at(settings, fingerprint(token))


def _spent_at(settings: Settings, fp: str) -> int | None:
    when = _section(_load(settings.login_history), "spent").get(fp)
    return when if isinstance(when, int) else None


def note_seen(settings: Settings, config_dir: str, ident: tuple[int, ...], doc: object) -> None:
    """The login claude-wrap last judged usable in this folder, with the stored login's identity
    then: when Claude Code's own refresh of it is refused later (the file blanked under a run of
    the shim), this says which refresh token died. Written only when it changed."""
    try:
        oauth = login.oauth_section(doc) or {}
    except ValueError:
        return
    token = login.refresh_token(doc)
    if not token:
        return
    rec = {"ident": list(ident), "refresh": fingerprint(token), "ends_at": login.login_end(oauth)}
    if _section(_load(settings.login_history), "seen").get(config_dir) == rec:
        return
    with _changing(settings) as data:
        _section(data, "seen")[config_dir] = rec


def blanked_under_run(
    settings: Settings, config_dir: str, launched: tuple[int, ...] | None, doc: object,
    message: str,
) -> cause.Evidence | None:
    """A run of claude was launched with the login claude-wrap last saw (`launched` is its
    identity), and left it blanked, as Claude Code leaves a login after its own refresh met
    invalid_grant: that refresh token died, and this is the evidence (None when the file is not
    so, or claude-wrap does not know which login claude ran with)."""
    try:
        oauth = login.oauth_section(doc)
    except ValueError:
        return None
    if oauth is None or launched is None or oauth.get("loginEnded") is not None:
        return None
    if login.access_token(doc) or login.refresh_token(doc):
        return None
    rec = _section(_load(settings.login_history), "seen").get(config_dir)
    if not isinstance(rec, dict) or rec.get("ident") != list(launched):
        return None
    fp = str(rec.get("refresh") or "")
    ends_at = rec.get("ends_at")
    return cause.Evidence(
        _now_ms(),
        ends_at=ends_at if isinstance(ends_at, int) else None,
        spent_by_us_at=_spent_at(settings, fp),
        refusal=cause.refusal(message),
    )


def note_refused(
    settings: Settings, config_dir: str, access: str, refusal: str, waited_s: float
) -> None:
    """The API refused this access token as revoked (refusal: cause.Refusal), and no successor
    appeared on disk within waited_s."""
    with _changing(settings) as data:
        _section(data, "refused")[config_dir] = {
            "access": fingerprint(access),
            "refusal": refusal,
            "waited_s": waited_s,
            "at": _now_ms(),
        }


def refused(settings: Settings, config_dir: str, access: str) -> tuple[str, float] | None:
    """(refusal, seconds waited) when the watch saw this very access token refused."""
    rec = _section(_load(settings.login_history), "refused").get(config_dir)
    if not isinstance(rec, dict) or rec.get("access") != fingerprint(access):
        return None
    waited = rec.get("waited_s")
    return str(rec.get("refusal")), float(waited) if isinstance(waited, (int, float)) else 0.0


def note_death(
    settings: Settings,
    config_dir: str,
    refresh_token: str,
    found: tuple[str, str],
    status: int | None = None,
) -> None:
    """The login of this folder died with this refresh token; found: (cause, evidence);
    status: the endpoint's HTTP status for the refusal."""
    _note_death(settings, config_dir, fingerprint(refresh_token), found, status)


def note_blanked_death(settings: Settings, config_dir: str, found: tuple[str, str]) -> None:
    """The login of this folder died and Claude Code blanked it: no token names it any more."""
    _note_death(settings, config_dir, "", found)


def _note_death(
    settings: Settings, config_dir: str, fp: str, found: tuple[str, str], status: int | None = None
) -> None:
    with _changing(settings) as data:
        _section(data, "dead")[config_dir] = {
            "cause": found[0],
            "evidence": found[1],
            "refresh": fp,
            "at": _now_ms(),
            "status": status,
        }


class Death:
    """Why the login of one folder is dead, for status, doctor and the keeper."""

    __slots__ = ("at", "cause", "evidence", "status")

    def __init__(
        self, cause_: str, evidence: str, at: int | None = None, status: int | None = None
    ) -> None:
        self.cause = cause_
        self.evidence = evidence
        self.at = at
        self.status = status  # the endpoint's HTTP status for the refusal, when one of ours

    @property
    def line(self) -> str:
        return cause.sentence(self.cause, self.evidence)

    @property
    def advice(self) -> str:
        return cause.ADVICE[self.cause]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "words": cause.WORDS[self.cause],
            "evidence": self.evidence,
            "advice": self.advice,
            "at": self.at,
        }


def died(settings: Settings, config_dir: str, refresh_token: str) -> Death | None:
    """The recorded death of this very refresh token (the endpoint refused it with
    invalid_grant, in any process of ours), None when none is recorded."""
    rec = _section(_load(settings.login_history), "dead").get(config_dir)
    if not isinstance(rec, dict) or rec.get("cause") not in cause.WORDS:
        return None
    if not refresh_token or rec.get("refresh") != fingerprint(refresh_token):
        return None
    at, status = rec.get("at"), rec.get("status")
    return Death(str(rec["cause"]), str(rec.get("evidence") or ""),
                 at if isinstance(at, int) else None, status if isinstance(status, int) else None)


def last(settings: Settings, config_dir: str) -> Death | None:
    """The last death claude-wrap recorded for this folder, whatever the file holds now: for a
    notice right after the refusal (keeper/notify.py), not for judging the stored login."""
    rec = _section(_load(settings.login_history), "dead").get(config_dir)
    if not isinstance(rec, dict) or rec.get("cause") not in cause.WORDS:
        return None
    at = rec.get("at")
    return Death(str(rec["cause"]), str(rec.get("evidence") or ""),
                 at if isinstance(at, int) else None)


def explain(
    settings: Settings, config_dir: str, doc: object, verdict: login.Verdict, now_ms: int
) -> Death | None:
    """Why this folder's stored login (doc, as judged) is dead, None when it is not, or nothing
    claude-wrap saw says why. The file's own word first (the time limit); then claude-wrap's
    record, but only for the very login that died: its refresh token is the one recorded, or
    the file holds no token at all (Claude Code blanks a login after its own invalid_grant). A
    login stored since (`/login`) has another token, and is never blamed on the old death."""
    try:
        oauth = login.oauth_section(doc) if doc is not None else None
    except ValueError:
        return None
    if oauth is None:
        return None
    found = cause.of_file(
        oauth.get("loginEnded"), verdict.login_ends_at, now_ms,
        ok=verdict.state == login.State.OK,
    )
    if found is not None:
        return Death(*found)
    # Not only for a login judged unusable: after a rotation elsewhere the file still holds an
    # access token that looks good until its expiry, and that the API already refuses.
    rec = _section(_load(settings.login_history), "dead").get(config_dir)
    if not isinstance(rec, dict) or rec.get("cause") not in cause.WORDS:
        return None
    token = login.refresh_token(doc)
    if token and rec.get("refresh") != fingerprint(token):
        return None
    at = rec.get("at")
    evidence = str(rec.get("evidence") or "")
    return Death(str(rec["cause"]), evidence, at if isinstance(at, int) else None)

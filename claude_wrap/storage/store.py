"""The storage layer: where the login lives, as every other module sees it.

A login is stored in a file (filestore.py: Linux, Windows) or in the macOS Keychain
(keychain.py); backends.py picks one. This module is what both have in common and what their
callers rely on: the Storage interface, the Snapshot (the login as read once) and its identity
(what tells a changed login from the same one), parsing and serialising the JSON the way Claude
Code reads and writes it, and waiting out a login caught half-way through a rewrite. Both
backends import this module; it imports neither.

Light on purpose: nothing heavier than `os` at module level (json only when a login is parsed).
"""

from __future__ import annotations

import time

from claude_wrap.config.fspath import file_identity, identity

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol, TypeVar

    T = TypeVar("T")

    class Write(Protocol):
        """A write being prepared: `commit` stores the document atomically; leaving the
        `with` block without a commit leaves the stored login exactly as it was.

        `unless_changed`: the login's identity as the caller read it; when the stored login
        is no longer that one at the last moment (a writer that takes no lock rewrote it),
        nothing is written and False comes back."""

        def commit(
            self, doc: Any, *, token_spent: bool, unless_changed: Ident | None = None
        ) -> bool: ...
        def __enter__(self) -> Write: ...
        def __exit__(self, *exc: object) -> None: ...

    class Storage(Protocol):
        """Where the login lives: the file (filestore.FileStorage) or the macOS Keychain
        (keychain.KeychainStorage)."""

        kind: str
        where: str  # names it in messages: a path, or the Keychain item
        lock_dir: str  # the folder whose lock directories guard a refresh
        atomic: bool  # never seen half-written (the Keychain); a file rewritten in place is

        def read(self) -> Snapshot | None:
            """The login now; None when none is stored; CredentialsError when it is unusable,
            StorageUnavailableError when it cannot be asked."""

        def identity(self) -> Ident | None:
            """The login's identity now, parsed or not, without raising; None when none."""

        def watched_files(self) -> list[str]:
            """The files whose change the kernel can report (none: poll identity())."""

        def writer_busy(self) -> bool | None:
            """Whether another process may be writing it now; None when that cannot be known."""

        def pending(self, reserve: int) -> Write:
            """A write, prepared (space reserved) before anything irreversible happens."""

        def tidy(self) -> None:
            """Remove what killed writes of ours left behind."""


MAX_BYTES = 1 << 20  # a real login is under 4 KiB; anything past 1 MiB is not Claude Code's


class Snapshot:
    """The login as read once: its bytes, its parsed JSON, and its identity for change checks."""

    __slots__ = ("doc", "ident", "path", "raw")

    def __init__(self, path: str, raw: bytes, doc: Any, ident: Ident) -> None:
        self.path = path
        self.raw = raw
        self.doc = doc
        self.ident = ident


__all__ = [
    "MAX_BYTES",
    "SETTLE_LIMIT_S",
    "Ident",
    "Snapshot",
    "content_identity",
    "file_identity",
    "identity",
    "parse",
    "serialise",
    "settle",
]
# A stored login's identity: equal identities, the same stored login; any write, by anyone, gives
# another. A file's is config/fspath.py's (identity, file_identity: the healthy hot path needs it
# without this module); a login without a file (the Keychain) is known by its content.
Ident = tuple[int, ...]


def content_identity(raw: bytes) -> Ident:
    """The identity of a login that has no file (the Keychain): its length and a hash of it."""
    import hashlib  # noqa: PLC0415 - off the hot path: the file's identity needs no hash

    digest = hashlib.sha256(raw).digest()
    return (len(raw), int.from_bytes(digest[:8], "big"))


def parse(where: str, raw: bytes) -> Any:
    """The login's JSON, judged as Claude Code's JSON.parse reads it. CredentialsError (naming
    `where` and the problem) when it does not parse."""
    import json  # noqa: PLC0415 - only when a login is read: the hot path never parses

    from claude_wrap.errors import CredentialsError  # noqa: PLC0415

    if not raw.strip():
        raise CredentialsError(where, "is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CredentialsError(where, f"is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise CredentialsError(
            where, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise CredentialsError(where, "is not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise CredentialsError(where, f"is not valid JSON ({exc})") from None


def _not_json(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON.parse, and so Claude Code, refuses them. Judge
    # the file as Claude Code reads it, and never write such a literal back.
    raise ValueError(f"{name} is not a JSON value")


def serialise(doc: Any) -> bytes:
    """Compact, key order kept, non-ASCII as is: the way Claude Code writes it (JSON.stringify).

    ValueError for a number JSON cannot hold (1e400 reads as infinity): callers check this
    before a refresh token is spent. A lone surrogate (valid in a JSON string escape, not in
    UTF-8) falls back to ASCII escapes, which JSON.parse reads back to the same string.
    """
    import json  # noqa: PLC0415

    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("ascii")


SETTLE_LIMIT_S = 2.0
SETTLE_PAUSE_S = 0.02
SETTLE_QUIET_S = 0.5  # without /proc: a file unchanged this long is not being written


def settle(storage: Storage, attempt: Callable[[], T], broken: Callable[[T], bool]) -> T:
    """`attempt()` (a read of the login), tried again for a moment while `broken` says it did
    not parse and the login may be half-way through a rewrite: tools that rewrite the file in
    place (truncate, then write) leave it so, and on a loaded machine for a second or more (the
    soak, issue 9, saw keepers and refreshes fail on such a moment). It stops waiting as soon as
    the read is whole, or when the login is plainly done with: unchanged and open in no other
    process (or, where that cannot be known, unchanged for SETTLE_QUIET_S); SETTLE_LIMIT_S at
    most. A login that really is broken costs ~20 ms; one that is never seen half-written (the
    Keychain) costs nothing more."""
    result = attempt()
    if not broken(result) or storage.atomic:
        return result
    start = last_change = time.monotonic()
    last = storage.identity()
    while time.monotonic() - start < SETTLE_LIMIT_S:
        time.sleep(SETTLE_PAUSE_S)
        result = attempt()
        if not broken(result):
            return result
        now, ident = time.monotonic(), storage.identity()
        if ident != last:
            last, last_change = ident, now
            continue
        writing = storage.writer_busy()
        if writing is False or (writing is None and now - last_change >= SETTLE_QUIET_S):
            # Read once more: a writer that finished between our read and that look left the
            # file whole, and one that is done is done: what we read now is final.
            return attempt()
    return result

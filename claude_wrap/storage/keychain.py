"""The login in the macOS Keychain, read and written through the `security` tool.

On macOS Claude Code keeps its login not in a file but in a generic password of the login
Keychain (docs/protocol.md section 1): service `Claude Code-credentials` (plus a per-folder
suffix, see Settings.keychain_service), account $USER, the secret being the same JSON as the file.

Two rules shape this module:
- The account is always given: an MCP-only item can share the service name with account
  `unknown`, and a search by service alone could return it.
- No secret ever goes on a command line, where any user's `ps` can read it. A write sends the
  `add-generic-password` command on the standard input of `security -i`, the JSON in hex (-X).

The Keychain has no rename, so "atomic" is the Keychain's own: `-U` replaces the item's data in
one call. Every write is read back and compared, so a write that did not land is an error, never
a silent loss. The lock directories in the config folder are taken exactly as for the file.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

from claude_wrap.config.settings import Settings, StorageKind
from claude_wrap.errors import CredentialsError, StorageUnavailableError, WriteError
from claude_wrap.storage import store

if TYPE_CHECKING:
    from claude_wrap.storage.store import Ident

ITEM_NOT_FOUND = 44  # `security`'s exit status for errSecItemNotFound
# `security -i` reads its commands into a 4096-byte line buffer, newline and NUL included; a
# longer line is cut and the rest parsed as a command of its own (anthropics/claude-code#30337).
# The hex doubles the login, so the limit is about 2000 bytes of JSON.
LINE_MAX = 4095
# How much a refresh may grow the login: new tokens of another length, scopes written.
GROWTH = 512
TIMEOUT_S = 30.0  # a locked Keychain shows an unlock prompt; give the user time to answer it
# Characters the `security -i` command line cannot carry safely inside double quotes.
_UNSAFE = frozenset('"\\\n\r\0')


class KeychainStorage:
    """The login's Keychain item, as a store.Storage."""

    kind = StorageKind.KEYCHAIN
    atomic = True  # `-U` replaces the data in one call: never seen half-written

    def __init__(
        self, service: str, account: str, lock_dir: str, settings: Settings
    ) -> None:
        self.service = service
        self.account = account
        self.lock_dir = lock_dir
        self.env = settings.child_env()  # for `security`: PATH may hold a fake (tests)
        self.where = f'the macOS Keychain item "{service}" (account {account})'

    @classmethod
    def for_settings(cls, settings: Settings) -> KeychainStorage:
        return cls(
            settings.keychain_service, settings.keychain_account, settings.config_dir, settings
        )

    def _security(
        self, args: list[str], stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                # From PATH, as Claude Code runs it (/usr/bin/security); tests put a fake first.
                ["security", *args],  # noqa: S607
                input=stdin,
                capture_output=True,
                env=self.env,
                timeout=TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise StorageUnavailableError(
                self.where,
                "cannot be reached: the `security` tool is not on PATH",
                "set CLAUDE_WRAP_STORAGE=file if your login is in a file",
            ) from None
        except subprocess.TimeoutExpired:
            raise StorageUnavailableError(
                self.where,
                f"cannot be reached: `security` gave no answer within {TIMEOUT_S:.0f} s",
                "unlock the login Keychain and try again",
            ) from None

    def _raw(self) -> bytes | None:
        result = self._security(
            ["find-generic-password", "-a", self.account, "-s", self.service, "-w"]
        )
        if result.returncode == ITEM_NOT_FOUND:
            return None
        if result.returncode != 0:
            raise StorageUnavailableError(
                self.where,
                f"cannot be read: {_first_line(result.stderr)}",
                "unlock the login Keychain (or allow access when asked) and try again",
            )
        return _secret(result.stdout)

    def read(self) -> store.Snapshot | None:
        raw = self._raw()
        if raw is None:
            return None
        doc = store.parse(self.where, raw)
        return store.Snapshot(self.where, raw, doc, store.content_identity(raw))

    def identity(self) -> Ident | None:
        """The item's identity now (its data's length and hash, parsed or not); None when there
        is no item, or the Keychain cannot be asked (locked): one `security` call."""
        try:
            raw = self._raw()
        except StorageUnavailableError:
            return None
        return None if raw is None else store.content_identity(raw)

    def watched_files(self) -> list[str]:
        """No file to watch: the guard polls the item's identity instead."""
        return []

    def writer_busy(self) -> bool:
        return False  # never half-written (see atomic)

    def command(self, data: bytes) -> bytes:
        return (
            f'add-generic-password -U -a "{self.account}" -s "{self.service}" -X "{data.hex()}"\n'
        ).encode()

    def pending(self, reserve: int) -> KeychainWrite:  # noqa: ARG002 - no disk space involved
        """Checked before the refresh token is spent: the login must fit in one `security -i`
        line once refreshed, since it will never go on a command line instead."""
        self.check_names(token_spent=False)
        current = self.read()
        size = len(current.raw) if current is not None else 0
        expected = len(self.command(b"\0" * (size + GROWTH)))
        if expected > LINE_MAX:
            raise WriteError(self.where, _too_large(size), token_spent=False)
        return KeychainWrite(self)

    def tidy(self) -> None:
        """Nothing to tidy: a Keychain write leaves no temp file behind."""

    def check_names(self, *, token_spent: bool) -> None:
        for name, value in (("account", self.account), ("service", self.service)):
            if _UNSAFE.intersection(value):
                raise WriteError(
                    self.where,
                    f"the {name} name holds a quote, backslash or line break",
                    token_spent=token_spent,
                )

    def write(self, doc: Any, *, token_spent: bool) -> None:
        self.check_names(token_spent=token_spent)
        data = store.serialise(doc)
        command = self.command(data)
        if len(command) > LINE_MAX:
            raise WriteError(self.where, _too_large(len(data)), token_spent=token_spent)
        result = self._security(["-i"], stdin=command)
        if result.returncode != 0:
            # Never its stderr: on a failed line `security` echoes what it could not parse,
            # which is the hex of the login.
            raise WriteError(
                self.where, f"`security -i` exited {result.returncode}", token_spent=token_spent
            )
        # `security -i` can report success for a command that failed: check it really landed.
        try:
            back = self.read()
        except CredentialsError as exc:
            raise WriteError(self.where, exc.problem, token_spent=token_spent) from None
        if back is None or back.raw != data:
            raise WriteError(
                self.where, "the item does not hold what was written", token_spent=token_spent
            )


class KeychainWrite:
    def __init__(self, storage: KeychainStorage) -> None:
        self.storage = storage

    def commit(
        self, doc: Any, *, token_spent: bool, unless_changed: Ident | None = None
    ) -> bool:
        """Store `doc`; False, with nothing written, when `unless_changed` is given and the
        item is no longer that one (another writer rewrote it meanwhile). The Keychain has no
        rename to check at the last moment: this check is one `security` call before the write."""
        if unless_changed is not None and self.storage.identity() != unless_changed:
            return False
        self.storage.write(doc, token_spent=token_spent)
        return True

    def __enter__(self) -> KeychainWrite:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _secret(out: bytes) -> bytes:
    """The item's data from `find-generic-password -w`: the text itself, or, when the data is not
    printable, the hex dump `security` prints instead."""
    text = out[:-1] if out.endswith(b"\n") else out
    stripped = text.strip()
    if stripped and len(stripped) % 2 == 0 and not stripped.startswith(b"{"):
        try:
            return bytes.fromhex(stripped.decode("ascii"))
        except ValueError:
            pass
    return text


def _too_large(size: int) -> str:
    return (
        f"the login ({size} bytes) is too large to write through `security -i`, and claude-wrap "
        "never puts it on a command line. Remove MCP logins you no longer use (`claude mcp`), "
        "or let claude refresh it itself"
    )


def _first_line(err: bytes) -> str:
    """`security`'s first line of complaint, any long run of hex (a secret) withheld."""
    import re  # noqa: PLC0415

    lines = err.decode("utf-8", "replace").strip().splitlines()
    line = lines[0] if lines else "no message"
    return re.sub(r"[0-9A-Fa-f]{16,}", "<withheld>", line)[:200]

"""Every error claude-wrap reports to a user: each carries its data, a one-line message that says
what to do next, and the exit status `claude-wrap` returns for it (docs/reference.md)."""

from __future__ import annotations

# Exit statuses of `claude-wrap` commands (not of the shim, which returns claude's own status).
EXIT_OK = 0
EXIT_NOT_USABLE = 1  # status: Claude Code would not accept the login now
EXIT_USAGE = 2
EXIT_CREDENTIALS = 3  # no login, malformed, logged out, no refresh token: /login or a fix
EXIT_REJECTED = 4  # the token endpoint refused the refresh token
EXIT_UNAVAILABLE = 5  # the token endpoint could not be reached or failed; try again later
EXIT_UNKNOWN_OUTCOME = 6  # the request went out and no usable answer came back
EXIT_WRITE = 7  # a new login could not be saved
EXIT_LOCKED = 8  # another process held the refresh lock for too long
EXIT_OWNER_UNREACHABLE = 9  # a guest could not get a token from its owner (guest.py)

LOGIN_HINT = "run `claude /login` to log in again"


class WrapError(Exception):
    exit_code = EXIT_CREDENTIALS

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class SettingError(WrapError, ValueError):
    """A setting we refuse to use: an environment variable of ours (settings.py), a line of our own
    settings files, or a command's argument. Carries the setting's name and the value given; the
    message says what was expected, or `message` says it all when the standard form does not fit.
    `claude-wrap` exits EXIT_USAGE for it; the shim says it and runs claude anyway."""

    exit_code = EXIT_USAGE

    def __init__(self, name: str, value: str, expected: str = "", *, message: str = "") -> None:
        super().__init__(name, value, expected)
        self.name = name
        self.value = value
        self.expected = expected
        self.message = message

    def __str__(self) -> str:
        if self.message:
            return self.message
        return f"{self.name}={self.value!r} is not {self.expected}; unset it or fix its value"


class CredentialsError(WrapError):
    """The credentials file cannot be used as it is; nothing was changed."""

    def __init__(self, path: str, problem: str, hint: str = "") -> None:
        super().__init__(path, problem, hint)
        self.path = path
        self.problem = problem
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.path}: {self.problem}"
        return f"{text}; {self.hint}" if self.hint else text


class StorageUnavailableError(CredentialsError, OSError):
    """The place the login lives (the macOS Keychain) could not be asked at all: a problem of
    access, not of content, so no "fix or remove it" advice applies."""


class RefreshError(WrapError):
    """A refresh at the token endpoint failed. The credentials file was left exactly as it was."""


class RefreshRejectedError(RefreshError):
    exit_code = EXIT_REJECTED

    def __init__(self, status: int, error: str) -> None:
        super().__init__(status, error)
        self.status = status
        self.error = error

    def __str__(self) -> str:
        return (
            f"the token endpoint rejected the stored refresh token (HTTP {self.status}, "
            f"{self.error}); the file was left as it was; {LOGIN_HINT}"
        )


class RefreshUnavailableError(RefreshError, ConnectionError):
    exit_code = EXIT_UNAVAILABLE

    def __init__(self, reason: str, attempts: int, retry_after: float | None = None) -> None:
        super().__init__(reason, attempts, retry_after)
        self.reason = reason
        self.attempts = attempts
        self.retry_after = retry_after

    def __str__(self) -> str:
        when = f"try again in {self.retry_after:.0f} s" if self.retry_after else "try again later"
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"the token endpoint is unavailable ({self.reason}, {tries}); {when}"


class RefreshOutcomeUnknownError(RefreshError, ConnectionError):
    """The request went out but no usable answer came back: the refresh token may be spent."""

    exit_code = EXIT_UNKNOWN_OUTCOME

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"the token endpoint gave no usable answer ({self.reason}); the refresh token was "
            "not sent again, as it may already be spent; the file was left as it was; "
            f"if claude then says you are logged out, {LOGIN_HINT}"
        )


class WriteError(WrapError, OSError):
    exit_code = EXIT_WRITE

    def __init__(self, path: str, reason: str, *, token_spent: bool) -> None:
        super().__init__(path, reason, token_spent)
        self.path = path
        self.reason = reason
        self.token_spent = token_spent

    def __str__(self) -> str:
        text = f"could not save the login to {self.path}: {self.reason}; the old file is intact"
        if self.token_spent:
            text += f"; the new refresh token could not be saved, so {LOGIN_HINT}"
        return text


class LockTimeoutError(WrapError, TimeoutError):
    exit_code = EXIT_LOCKED

    def __init__(self, path: str, waited: float) -> None:
        super().__init__(path, waited)
        self.path = path
        self.waited = waited

    def __str__(self) -> str:
        return (
            f"another process held {self.path} for {self.waited:.0f} s; if no claude is "
            "refreshing, remove that folder (`claude-wrap doctor --fix`) and try again"
        )


class FlockTimeoutError(LockTimeoutError):
    """Another process of ours held the flock of a config folder (locks/flock.py) past our wait:
    most likely refreshing this login. The kernel drops an flock when its holder ends, even by
    SIGKILL, so there is nothing to remove by hand: only waiting helps."""

    def __init__(self, folder: str, waited: float) -> None:
        super().__init__(f"the claude-wrap refresh flock of {folder}", waited)
        self.folder = folder

    def __str__(self) -> str:
        return (
            f"another process held {self.path} for {self.waited:.0f} s (another claude-wrap, most "
            "likely refreshing this login); the lock goes when that process ends: wait a moment "
            "and try again"
        )


class LockUnavailableError(WrapError, OSError):
    """A lock folder cannot be created at all (read-only or full folder): nobody holds it."""

    exit_code = EXIT_LOCKED

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"cannot create the lock folder {self.path}: {self.reason}; nothing was refreshed "
            "and the file was left as it was"
        )


class ClaudeNotFoundError(WrapError, FileNotFoundError):
    """No real claude behind the shim: not on PATH (the shim's own folder aside) nor in the
    usual install places (config/locate.py). The shim says `claude: command not found` for it, as a
    shell would, and exits 127."""

    def __init__(self) -> None:
        super().__init__()

    def __str__(self) -> str:
        return (
            "no real claude found on PATH or in the usual places; install Claude Code, or set "
            "CLAUDE_WRAP_REAL_CLAUDE to its executable"
        )


class ClaudeStartError(WrapError, OSError):
    """The real claude was found but could not be started (watch/relay.py): `status` is the
    shell's for it (127 gone, 126 not executable), `reason` the system's word."""

    def __init__(self, real: str, reason: str, status: int) -> None:
        super().__init__(real, reason, status)
        self.real = real
        self.reason = reason
        self.status = status

    def __str__(self) -> str:
        return f"cannot run {self.real}: {self.reason}"


class InstallError(WrapError, RuntimeError):
    """`claude-wrap install` or `uninstall` could not do its work (commands/install.py): the
    message names the file or folder and what to do about it. Not an OSError: install.py turns
    the OSErrors of its file operations into this one, and must not catch its own."""


class OwnerUnreachableError(WrapError, ConnectionError):
    """A guest could not get a token from its owner (guests/guest.py): the owner could not be
    asked (ssh failed, no share file) or gave no usable answer. `expires_at` (ms) is the end of
    the last token the guest still holds, if any."""

    exit_code = EXIT_OWNER_UNREACHABLE

    def __init__(self, owner: str, reason: str, expires_at: int | None = None) -> None:
        super().__init__(owner, reason, expires_at)
        self.owner = owner
        self.reason = reason
        self.expires_at = expires_at

    def __str__(self) -> str:
        import datetime  # noqa: PLC0415 - only to say when the last token ends
        import time  # noqa: PLC0415

        text = f"cannot get a token from the owner of this login ({self.owner}): {self.reason}"
        if self.expires_at is not None and self.expires_at > int(time.time() * 1000):
            when = datetime.datetime.fromtimestamp(self.expires_at / 1000, datetime.timezone.utc)
            # A rotation on the owner revokes it at once (docs/protocol.md section 10).
            return (
                f"{text}; the last token still works until the owner next rotates, "
                f"{when:%Y-%m-%d %H:%M} UTC at the latest"
            )
        return f"{text}; there is no token left that works: reach the owner, then run again"


class Interrupted(BaseException):
    """A terminating signal arrived inside a critical section; raised so `finally` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

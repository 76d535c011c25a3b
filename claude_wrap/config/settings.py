"""Settings: the one place that reads the environment, parsed once per process into `Settings`.

Each entry point (the shim, `claude-wrap`, `python -m` helpers) builds one Settings from its
environment (`Settings.from_process()`, or `Settings(env)` in tests) and hands it down; no other
module reads `os.environ`, so what a function does depends on the Settings it is given and on
nothing else (issue 27: a refresh run for HOME=a once wrote under the process's HOME=b). A value
we cannot use raises errors.SettingError naming the variable, when it is first asked for: each
value is computed once, on first use, and kept (a healthy run pays only for what it reads).
Derived settings (another config folder, another refresh window, a child's environment) are
methods returning a new Settings. Claude Code's own names and values (file and lock names, the
token endpoint) are protocol.py's.

This module is on the hot path of every `claude` run: it imports nothing beyond `posix`, `sys`,
protocol.py and fspath.py, not even `os` (fspath.py says why), nor `dataclasses` or `typing`.
"""

from __future__ import annotations

import posix
import sys

from claude_wrap.config import fspath, protocol

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds here
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from functools import cached_property as once

    from claude_wrap import errors
else:

    class once:  # noqa: N801 - functools.cached_property without importing functools
        """A value computed on first use, then kept in the instance (a plain attribute from
        then on: no call at all)."""

        def __init__(self, compute: Callable[[Settings], object]) -> None:
            self.compute = compute
            self.name = compute.__name__
            self.__doc__ = compute.__doc__

        def __get__(self, obj: Settings | None, owner: object = None) -> object:
            if obj is None:
                return self
            value = self.compute(obj)
            obj.__dict__[self.name] = value
            return value


# Claude Code refreshes on its own 5 minutes before expiry; refreshing earlier than that means we,
# not it, spend the refresh token, under the same locks. Ten minutes leaves room for a long run.
DEFAULT_REFRESH_WINDOW_S = 600.0
DEFAULT_REFRESH_BUDGET_S = 30.0
DEFAULT_LOCK_WAIT_S = 15.0
# The login's hard end (refreshTokenExpiresAt) is shown and warned of from this long before it.
DEFAULT_LOGIN_END_WINDOW_S = 3 * 86400.0
# The keeper timer runs `keep --all` this often; a shared folder's token outlives two of its runs
# (guests/guest.py), and `keep --watch --all` looks for new config folders as often.
KEEPER_PERIOD_S = 300
DEFAULT_RESCAN_S = float(KEEPER_PERIOD_S)
# The shim, the relay and the interactive session
DEFAULT_REPLAY_LIMIT = 64 << 20  # bytes of stdin kept for a replay; past it, no retry
DEFAULT_KILL_GRACE_S = 5.0  # after SIGTERM/SIGHUP, how long claude gets before its tree is killed
# A consumer that keeps stdin open may wait for our output before it writes more; the output
# we hold waits for the child's next line. Past this much quiet, release it: no deadlock.
DEFAULT_HOLD_QUIET_S = 2.0
DEFAULT_GUARD_PERIOD_S = 0.5

WATCH_KINDS = ("auto", "inotify", "kqueue", "poll")
class StorageKind:
    """Where a login lives (CLAUDE_WRAP_STORAGE): the credentials file, or the macOS Keychain."""

    FILE = "file"
    KEYCHAIN = "keychain"


STORAGE_KINDS = (StorageKind.FILE, StorageKind.KEYCHAIN)
ACTIVE_ENV = "CLAUDE_WRAP_ACTIVE"  # set by the shim for the claude it runs
GUEST_ENV = "CLAUDE_WRAP_GUEST"
TOKEN_URL_ENV = "CLAUDE_WRAP_TOKEN_URL"  # noqa: S105 - a variable's name
DESKTOP_ENV = ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS")
# Settings a systemd or launchd job does not inherit from the shell that installed it, but that
# change what the keeper does. Never a token: CLAUDE_CODE_OAUTH_TOKEN and the like stay out.
SERVICE_CARRIED = ("CLAUDE_CONFIG_DIR", "CLAUDE_SECURESTORAGE_CONFIG_DIR")
SERVICE_NOT_CARRIED = (ACTIVE_ENV, "CLAUDE_WRAP_DISABLE", "CLAUDE_WRAP_DEBUG")
# Variables that pick one config folder (configs.py finds every folder and selects each).
FOLDER_SELECTORS = ("CLAUDE_CONFIG_DIR", "CLAUDE_SECURESTORAGE_CONFIG_DIR")
# Claude Code's variables for a token handed to it (commands/token.py sets them; read by 2.1.87,
# 2.1.197 and 2.1.332 at start): the token itself, or a file descriptor to read it from.
TOKEN_ENV = "CLAUDE_CODE_OAUTH_TOKEN"  # noqa: S105 - a variable's name
TOKEN_FD_ENV = "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR"  # noqa: S105 - a variable's name


def __getattr__(name: str) -> type[errors.SettingError]:
    # errors.py owns SettingError; `settings.SettingError` stays a name for it, without importing
    # errors.py on the hot path: only a bad setting (or an `except settings.SettingError` that
    # meets an exception) loads it. Inside this module, raise with _bad(): a bare SettingError
    # here is an undefined name (ruff and mypy say so).
    if name == "SettingError":
        from claude_wrap.errors import SettingError  # noqa: PLC0415

        return SettingError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _bad(name: str, value: str, expected: str) -> errors.SettingError:
    from claude_wrap.errors import SettingError  # noqa: PLC0415 - only for a bad setting

    return SettingError(name, value, expected)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, raw, "a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise _bad(name, raw, "a number of seconds") from None
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw not in ("0", "false", "no", "off")


def process_environ() -> dict[str, str]:
    """The process's environment as os.environ has it, without importing os (fspath.py): the
    bytes of posix.environ decoded as os.py decodes them, the filesystem encoding with
    surrogateescape. execve encodes them back the same way, so claude gets the very bytes we
    were given, undecodable ones included."""
    encoding = sys.getfilesystemencoding()
    return {
        key.decode(encoding, "surrogateescape"): value.decode(encoding, "surrogateescape")
        for key, value in posix.environ.items()
    }


class Settings:
    """What one environment says, each value parsed on first use and kept (see the module).
    `env` is a private copy: changing the mapping it was made from changes nothing here."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env: dict[str, str] = dict(env)

    @classmethod
    def from_process(cls) -> Settings:
        """The process's own environment: for entry points only (the shim, `claude-wrap`)."""
        return cls(process_environ())

    def __repr__(self) -> str:
        return f"Settings(<{len(self.env)} variables>)"  # never the values: tokens among them

    # Folders and files ---------------------------------------------------------------------

    @once
    def home(self) -> str:
        """HOME, or the password database when an editor started us without one."""
        value = self.env.get("HOME")
        if value:
            return value
        import pwd  # noqa: PLC0415 - rare path; editors launching with no HOME

        return pwd.getpwuid(posix.getuid()).pw_dir

    @once
    def config_dir(self) -> str:
        value = self.env.get("CLAUDE_CONFIG_DIR")
        path = value if value else fspath.join(self.home, ".claude")
        if not path.isascii():
            # Claude Code NFC-normalises the folder name; so must we, or we judge another file.
            import unicodedata  # noqa: PLC0415

            path = unicodedata.normalize("NFC", path)
        return path

    @once
    def credentials_file(self) -> str:
        folder = self.env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR") or self.config_dir
        return fspath.join(folder, protocol.CREDENTIALS_NAME)

    @once
    def state_dir(self) -> str:
        base = self.env.get("XDG_STATE_HOME") or fspath.join(self.home, ".local", "state")
        return fspath.join(base, "claude-wrap")

    @once
    def log_file(self) -> str:
        return self.env.get("CLAUDE_WRAP_LOG_FILE") or fspath.join(
            self.state_dir, "claude-wrap.log"
        )

    @once
    def lock_records(self) -> str:
        """Where we note the lock folders we hold (lock.py): abandoned ones are taken over at
        once."""
        return fspath.join(self.state_dir, "locks")

    @once
    def verdict_cache(self) -> str:
        return fspath.join(self.state_dir, "verdict")

    @once
    def notified_state(self) -> str:
        """What the keeper told the user about each login's end (notify.py): no secret in it."""
        return fspath.join(self.state_dir, "notified.json")

    @once
    def shim_notice_stamp(self) -> str:
        """Its mtime is when a shim last printed the login-end line (at most once an hour)."""
        return fspath.join(self.state_dir, "login-end-notice")

    @once
    def config_home(self) -> str:
        """$XDG_CONFIG_HOME, else ~/.config: systemd's user units and our own settings live
        there."""
        return self.env.get("XDG_CONFIG_HOME") or fspath.join(self.home, ".config")

    @once
    def runtime_dir(self) -> str:
        """$XDG_RUNTIME_DIR ("" when unset: no systemd user session to talk to)."""
        return self.env.get("XDG_RUNTIME_DIR") or ""

    @once
    def wrap_config_dir(self) -> str:
        """claude-wrap's own settings (not Claude Code's folder): $XDG_CONFIG_HOME/claude-wrap."""
        return fspath.join(self.config_home, "claude-wrap")

    @once
    def guest_file(self) -> str:
        """Where `claude-wrap guest --ssh/--folder` stores this machine's owner (one line)."""
        return fspath.join(self.wrap_config_dir, "guest")

    @once
    def shares_file(self) -> str:
        """Where `claude-wrap share DIR` lists the folders the owner's keeper keeps a token in."""
        return fspath.join(self.wrap_config_dir, "shares")

    @once
    def temp_dir(self) -> str:
        """Where the relay keeps its replay copy of stdin when the system has no memory file
        (memfd): TMPDIR, else /tmp. The file is unlinked as soon as it is made."""
        return self.env.get("TMPDIR") or "/tmp"  # noqa: S108 - unlinked at once, opened O_EXCL

    # Times ---------------------------------------------------------------------------------

    @once
    def refresh_window(self) -> float:
        return _seconds(self.env, "CLAUDE_WRAP_REFRESH_WINDOW", DEFAULT_REFRESH_WINDOW_S)

    @once
    def refresh_window_ms(self) -> int:
        """refresh_window in milliseconds, as the login's judgement counts."""
        return int(self.refresh_window * 1000)

    @once
    def refresh_budget(self) -> float:
        return _seconds(self.env, "CLAUDE_WRAP_REFRESH_TIMEOUT", DEFAULT_REFRESH_BUDGET_S)

    @once
    def lock_wait(self) -> float:
        return _seconds(self.env, "CLAUDE_WRAP_LOCK_TIMEOUT", DEFAULT_LOCK_WAIT_S)

    @once
    def login_end_window(self) -> float:
        return _seconds(self.env, "CLAUDE_WRAP_LOGIN_END_WINDOW", DEFAULT_LOGIN_END_WINDOW_S)

    @once
    def login_end_window_ms(self) -> int:
        return int(self.login_end_window * 1000)

    @once
    def rescan_period(self) -> float:
        """CLAUDE_WRAP_RESCAN: how often `keep --watch --all` looks for config folders made
        since it started (keeper/watch.py: watch); 0: never."""
        return _seconds(self.env, "CLAUDE_WRAP_RESCAN", DEFAULT_RESCAN_S)

    @once
    def guest_timeout(self) -> float:
        return _seconds(self.env, "CLAUDE_WRAP_GUEST_TIMEOUT", 20.0)

    @once
    def guest_period(self) -> float:
        """How often a session on a guest looks whether its token is due (rollover.py)."""
        return _seconds(self.env, "CLAUDE_WRAP_GUEST_PERIOD", 30.0)

    @once
    def push_period(self) -> float:
        """CLAUDE_WRAP_PUSH_PERIOD: how often an owner's push session to a guest looks at the
        login besides what the kernel tells of the credentials file (keeper/push.py)."""
        return _seconds(self.env, "CLAUDE_WRAP_PUSH_PERIOD", 60.0)

    @once
    def kill_grace(self) -> float:
        """CLAUDE_WRAP_KILL_GRACE: after SIGTERM/SIGHUP, seconds before claude's tree is
        killed."""
        return _seconds(self.env, "CLAUDE_WRAP_KILL_GRACE", DEFAULT_KILL_GRACE_S)

    @once
    def hold_quiet(self) -> float:
        """CLAUDE_WRAP_HOLD_QUIET: seconds of quiet after which held-back output is released."""
        return _seconds(self.env, "CLAUDE_WRAP_HOLD_QUIET", DEFAULT_HOLD_QUIET_S)

    @once
    def guard_period(self) -> float:
        """CLAUDE_WRAP_GUARD_PERIOD: the guard's poll period in long sessions (guard.py); 0:
        off."""
        return _seconds(self.env, "CLAUDE_WRAP_GUARD_PERIOD", DEFAULT_GUARD_PERIOD_S)

    # Choices and switches ------------------------------------------------------------------

    @once
    def watch_kind(self) -> str:
        """How long sessions and `keep --watch` learn of a change to the credentials file
        (filewatch.py): auto (inotify on Linux, kqueue on macOS), or one of them, or poll."""
        raw = self.env.get("CLAUDE_WRAP_NOTIFY", "") or "auto"
        if raw not in WATCH_KINDS:
            raise _bad("CLAUDE_WRAP_NOTIFY", raw, "one of " + ", ".join(WATCH_KINDS))
        return raw

    @once
    def storage_kind(self) -> str:
        """Where the login lives: the file, or (macOS) the login Keychain."""
        raw = self.env.get("CLAUDE_WRAP_STORAGE", "")
        if raw in ("", "auto"):
            return StorageKind.KEYCHAIN if sys.platform == "darwin" else StorageKind.FILE
        if raw not in STORAGE_KINDS:
            raise _bad("CLAUDE_WRAP_STORAGE", raw, "one of auto, file, keychain")
        return raw

    @once
    def debug(self) -> bool:
        return self.env.get("CLAUDE_WRAP_DEBUG", "") not in ("", "0")

    @once
    def disabled(self) -> bool:
        """CLAUDE_WRAP_DISABLE: the shim only execs claude."""
        return _flag(self.env, "CLAUDE_WRAP_DISABLE", default=False)

    @once
    def watching(self) -> bool:
        """CLAUDE_WRAP_WATCH (default on): run claude as our child and watch it for a login
        failure; off, the shim execs it after the pre-flight."""
        return _flag(self.env, "CLAUDE_WRAP_WATCH", default=True)

    @once
    def splicing(self) -> bool:
        """CLAUDE_WRAP_SPLICE (default on): `0` makes the relay read and write the pipes it
        would splice (pipes.py), as it does where the system has no splice(2) (macOS). A
        debugging switch: the tests take that path on Linux through it."""
        return _flag(self.env, "CLAUDE_WRAP_SPLICE", default=True)

    @once
    def replay_limit(self) -> int:
        """CLAUDE_WRAP_REPLAY_LIMIT: bytes of stdin kept to replay on a retry; past it, no
        retry."""
        raw = self.env.get("CLAUDE_WRAP_REPLAY_LIMIT")
        if not raw:
            return DEFAULT_REPLAY_LIMIT
        try:
            value = int(raw)
        except ValueError:
            raise _bad("CLAUDE_WRAP_REPLAY_LIMIT", raw, "a number of bytes") from None
        if value < 0:
            raise _bad("CLAUDE_WRAP_REPLAY_LIMIT", raw, "a number of bytes")
        return value

    @once
    def nested(self) -> bool:
        """Inside a claude the shim started (CLAUDE_WRAP_ACTIVE=1): shims started here skip
        their pre-flight."""
        return self.env.get(ACTIVE_ENV) == "1"

    @once
    def login_given_otherwise(self) -> bool:
        """Whether claude will not use the stored login: an API key, a token in the environment
        or on a descriptor (`claude-wrap exec`), or CLAUDE_CODE_SIMPLE=1 (no OAuth at all)."""
        env = self.env
        return bool(
            env.get("ANTHROPIC_API_KEY")
            or env.get(TOKEN_ENV)
            or env.get(TOKEN_FD_ENV)
            or env.get("CLAUDE_CODE_SIMPLE") == "1"
        )

    # The token endpoint and the Keychain ---------------------------------------------------

    @once
    def token_url(self) -> str:
        """Where refresh tokens go: CLAUDE_WRAP_TOKEN_URL (checked: see _checked_token_url),
        else Claude Code's own endpoint."""
        raw = self.env.get(TOKEN_URL_ENV)
        return _checked_token_url(raw) if raw else protocol.TOKEN_URL

    @once
    def client_id(self) -> str:
        return self.env.get("CLAUDE_CODE_OAUTH_CLIENT_ID") or protocol.CLIENT_ID

    @once
    def claude_oauth_customised(self) -> bool:
        """Claude Code's own OAuth settings changed (CLAUDE_CODE_CUSTOM_OAUTH_URL or
        CLAUDE_CODE_OAUTH_CLIENT_ID): its refresh then leaves out the plugins scope
        (binary.py)."""
        env = self.env
        return bool(
            env.get("CLAUDE_CODE_CUSTOM_OAUTH_URL") or env.get("CLAUDE_CODE_OAUTH_CLIENT_ID")
        )

    @once
    def keychain_service(self) -> str:
        """Claude Code's Keychain service name: a per-folder suffix only when a folder was
        chosen (CLAUDE_SECURESTORAGE_CONFIG_DIR when set, else CLAUDE_CONFIG_DIR), so that the
        default login of every user keeps the plain name."""
        secure = self.env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR")
        if secure is not None:
            folder = secure
        elif self.env.get("CLAUDE_CONFIG_DIR"):
            folder = self.config_dir
        else:
            folder = ""
        if not folder:
            return protocol.KEYCHAIN_SERVICE
        import hashlib  # noqa: PLC0415 - keychain path only

        digest = hashlib.sha256(folder.encode()).hexdigest()[:8]
        return f"{protocol.KEYCHAIN_SERVICE}-{digest}"

    @once
    def keychain_account(self) -> str:
        """$USER, else the password database (editors may start us without USER)."""
        value = self.env.get("USER")
        if value:
            return value
        import pwd  # noqa: PLC0415

        return pwd.getpwuid(posix.getuid()).pw_name

    # Programs, services and sessions (locate, binary, keeper, notify, configs, doctor) -----

    @once
    def search_path(self) -> str | None:
        """PATH as given, for shutil.which (None when unset: it then searches the default
        path)."""
        return self.env.get("PATH")

    @once
    def path_folders(self) -> list[str]:
        """PATH's folders in order, empty entries dropped."""
        return [f for f in self.env.get("PATH", "").split(fspath.PATHSEP) if f]

    @once
    def npm_prefixes(self) -> list[str]:
        """npm's global prefix when set for it (npm reads either spelling): claude may be in
        bin/."""
        env = self.env
        return [p for p in (env.get("NPM_CONFIG_PREFIX"), env.get("npm_config_prefix")) if p]

    @once
    def real_claude_override(self) -> str:
        """CLAUDE_WRAP_REAL_CLAUDE: the real claude's path when the user names it, else ""."""
        return self.env.get("CLAUDE_WRAP_REAL_CLAUDE") or ""

    @once
    def desktop_session(self) -> bool:
        """A desktop session is reachable (X11, Wayland or a session bus): notifications can
        show."""
        return any(self.env.get(k) for k in DESKTOP_ENV)

    @once
    def under_journal(self) -> bool:
        """systemd runs us with stderr going to the journal (JOURNAL_STREAM is set)."""
        return bool(self.env.get("JOURNAL_STREAM"))

    @once
    def service_settings(self) -> dict[str, str]:
        """The variables the keeper's service file sets: the folder selectors, then every
        non-empty CLAUDE_WRAP_ setting but those that belong to one shell (service.py)."""
        env = self.env
        out = {k: env[k] for k in SERVICE_CARRIED if env.get(k)}
        for key in sorted(env):
            if key.startswith("CLAUDE_WRAP_") and key not in SERVICE_NOT_CARRIED and env[key]:
                out[key] = env[key]
        return out

    # Guests (guest.py): a machine or container that borrows an owner's login --------------

    @once
    def stored_guest(self) -> str:
        """The line `claude-wrap guest` stored ("" when none), unchecked (guest_setting checks
        it). The one open of the guest file; a healthy run learns it from the verdict cache
        instead (fastpath.judged), which keeps it beside the verdict."""
        try:
            with open(self.guest_file, encoding="utf-8") as f:
                return f.read(4096).strip()
        except OSError:
            return ""

    def learn_stored_guest(self, line: str) -> None:
        """The guest file's line, as the verdict cache kept it (fastpath.judged): no open."""
        self.__dict__.setdefault("stored_guest", line)

    @once
    def guest_setting(self) -> str:
        """"ssh:HOST", "folder:/path" or "" (not a guest): CLAUDE_WRAP_GUEST, which wins
        (containers set it in their image or `docker run -e`), else the line `claude-wrap
        guest` stored (stored_guest)."""
        raw = self.env.get(GUEST_ENV)
        if raw is None:
            raw, where = self.stored_guest, self.guest_file
        else:
            raw, where = raw.strip(), GUEST_ENV
        if raw in ("", "off"):
            return ""
        kind, _, target = raw.partition(":")
        if kind not in ("ssh", "folder") or not target:
            raise _bad(where, raw, "ssh:HOST, folder:/path or off")
        if kind == "folder" and not fspath.isabs(target):
            raise _bad(where, raw, "folder: with an absolute path")
        return raw

    @once
    def guest_ssh_command(self) -> str:
        """The ssh a guest runs (words split like a shell's): CLAUDE_WRAP_GUEST_SSH, default
        `ssh`. Options such as `-F config` or `-i key` go here; the host comes from the guest
        setting."""
        return self.env.get("CLAUDE_WRAP_GUEST_SSH") or "ssh"

    @once
    def guest_remote_command(self) -> str:
        """What the guest asks the owner to run; a forced command in authorized_keys overrides
        it."""
        return self.env.get("CLAUDE_WRAP_GUEST_REMOTE") or "claude-wrap token --json"

    @once
    def ssh_original_command(self) -> str | None:
        """SSH_ORIGINAL_COMMAND (sshd's, not ours): what a guest asked for when sshd runs the
        forced command `token --for-guest` in its place (guests/push.py parses it); None
        outside a forced command."""
        return self.env.get("SSH_ORIGINAL_COMMAND")

    # Derived settings and children's environments ------------------------------------------

    def _with(self, env: dict[str, str]) -> Settings:
        return Settings(env)

    def child_env(self) -> dict[str, str]:
        """The environment for a child (claude, a keeper's job, a helper): these settings' own,
        as a new dict the caller may change."""
        return dict(self.env)

    def selecting(self, folder: str | None) -> Settings:
        """The settings that select `folder` as Claude Code's config folder, its login beside
        it: the selectors unset, then CLAUDE_CONFIG_DIR set unless `folder` is None (~/.claude,
        the default, selected by no variable, which also keeps its Keychain service name
        unsuffixed)."""
        out = {k: v for k, v in self.env.items() if k not in FOLDER_SELECTORS}
        if folder is not None:
            out["CLAUDE_CONFIG_DIR"] = folder
        return self._with(out)

    def with_home(self, fallback: str) -> Settings:
        """These settings with HOME set to `fallback` when they have none (another process's
        environment)."""
        return self._with({**self.env, "HOME": self.env.get("HOME") or fallback})

    def with_refresh_window(self, seconds: float) -> Settings:
        """These settings with another refresh window: a refresh that leaves the token good for
        at least `seconds` (guest.credential hands out tokens with a lifetime asked for)."""
        return self._with({**self.env, "CLAUDE_WRAP_REFRESH_WINDOW": repr(float(seconds))})

    def without_guest(self) -> Settings:
        """These settings without CLAUDE_WRAP_GUEST: the guest file alone says whose guest we
        are."""
        return self._with({k: v for k, v in self.env.items() if k != GUEST_ENV})

    def with_access_token(self, *, token: str | None = None, fd: int | None = None) -> Settings:
        """The settings of a command that gets an access token: in TOKEN_ENV (`token`), or
        through an inherited descriptor named by TOKEN_FD_ENV (`fd`); any token these settings
        carried is dropped."""
        out = {k: v for k, v in self.env.items() if k not in (TOKEN_ENV, TOKEN_FD_ENV)}
        if fd is not None:
            out[TOKEN_FD_ENV] = str(fd)
        elif token is not None:
            out[TOKEN_ENV] = token
        return self._with(out)

    def unnested(self) -> Settings:
        """The settings of a claude we run only to ask it something (`--version`), or that the
        shim runs: marked as nested, so that a shim among them does no pre-flight."""
        out = self._with({**self.env, ACTIVE_ENV: "1"})
        # Only `nested` reads CLAUDE_WRAP_ACTIVE: what these settings have worked out already
        # (the guest a cache hit told, say) holds for the child's as well, and is not redone.
        out.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("env", "nested")})
        return out


# Helpers that need no environment ---------------------------------------------------------


def refresh_lock_dir(cfg: str) -> str:
    return fspath.join(cfg, protocol.REFRESH_LOCK_NAME)


def legacy_lock_dir(cfg: str) -> str:
    import os  # noqa: PLC0415 - realpath: only under the locks, off the hot path

    return os.path.realpath(cfg) + protocol.LEGACY_LOCK_SUFFIX


def write_lock_dir(cfg: str) -> str:
    return fspath.join(cfg, protocol.WRITE_LOCK_NAME)


def python_for_shim() -> str:
    """The interpreter an installed shim runs: this package's own."""
    return sys.executable


def _checked_token_url(url: str) -> str:
    """`url` when a refresh token may be sent to it: https anywhere, plain http only to a
    loopback host (the tests' servers). Else SettingError, naming CLAUDE_WRAP_TOKEN_URL. The one
    check of a token URL: Settings.token_url makes it, once per Settings."""
    import ipaddress  # noqa: PLC0415 - only when refreshing
    import urllib.parse  # noqa: PLC0415

    from claude_wrap.errors import SettingError  # noqa: PLC0415

    name = TOKEN_URL_ENV
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if parts.scheme == "http" and loopback:
        return url
    if parts.scheme == "http":
        raise SettingError(
            name,
            url,
            message=f"refusing to send a refresh token over plain http to {host or url!r}: "
            f"{name} must be https (http only for a loopback address)",
        )
    raise SettingError(name, url, message=f"{name}={url!r} is not an https URL")

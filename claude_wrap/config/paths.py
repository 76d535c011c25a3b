"""The one place that turns environment variables into paths and settings.

Every function takes the environment as an argument (default: the process's, see `environ`),
which is the seam tests use. A value we cannot use raises errors.SettingError naming the variable.
Claude Code's own names and values (file and lock names, the token endpoint) are protocol.py's.
This module is on the hot path of every `claude` run: it imports nothing beyond `posix`, `sys`,
protocol.py and fspath.py, not even `os` (fspath.py says why); the shim hands each function its
environment, decoded from `posix.environ` (shim.process_environ).
"""

from __future__ import annotations

import posix
import sys

from claude_wrap.config import fspath, protocol

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds here
if TYPE_CHECKING:
    from collections.abc import Mapping

    from claude_wrap import errors

# Claude Code refreshes on its own 5 minutes before expiry; refreshing earlier than that means we,
# not it, spend the refresh token, under the same locks. Ten minutes leaves room for a long run.
DEFAULT_REFRESH_WINDOW_S = 600.0
DEFAULT_REFRESH_BUDGET_S = 30.0
DEFAULT_LOCK_WAIT_S = 15.0
# The login's hard end (refreshTokenExpiresAt) is shown and warned of from this long before it.
DEFAULT_LOGIN_END_WINDOW_S = 3 * 86400.0


def __getattr__(name: str) -> type[errors.SettingError]:
    # errors.py owns SettingError; `paths.SettingError` stays a name for it, without importing
    # errors.py on the hot path: only a bad setting (or an `except paths.SettingError` that meets
    # an exception) loads it. Inside this module, raise with _bad(): a bare SettingError here is
    # an undefined name (ruff and mypy say so).
    if name == "SettingError":
        from claude_wrap.errors import SettingError  # noqa: PLC0415

        return SettingError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    """`env` as given, else the process's: os.environ, looked up at each call (tests change it)
    and imported only then, so that importing this module does not import `os`."""
    if env is not None:
        return env
    import os  # noqa: PLC0415 - only for callers that pass no environment: off the hot path

    return os.environ


def _bad(name: str, value: str, expected: str) -> errors.SettingError:
    from claude_wrap.errors import SettingError  # noqa: PLC0415 - only for a bad setting

    return SettingError(name, value, expected)


def home(env: Mapping[str, str] | None = None) -> str:
    """HOME, or the password database when an editor started us without one."""
    env = environ(env)
    value = env.get("HOME")
    if value:
        return value
    import pwd  # noqa: PLC0415 - rare path; editors launching with no HOME

    return pwd.getpwuid(posix.getuid()).pw_dir


def config_dir(env: Mapping[str, str] | None = None) -> str:
    env = environ(env)
    value = env.get("CLAUDE_CONFIG_DIR")
    path = value if value else fspath.join(home(env), ".claude")
    if not path.isascii():
        # Claude Code NFC-normalises the folder name; so must we, or we judge another file.
        import unicodedata  # noqa: PLC0415

        path = unicodedata.normalize("NFC", path)
    return path


def credentials_file(env: Mapping[str, str] | None = None) -> str:
    env = environ(env)
    folder = env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR") or config_dir(env)
    return fspath.join(folder, protocol.CREDENTIALS_NAME)


def refresh_lock(cfg: str) -> str:
    return fspath.join(cfg, protocol.REFRESH_LOCK_NAME)


def legacy_lock(cfg: str) -> str:
    import os  # noqa: PLC0415 - realpath: only under the locks, off the hot path

    return os.path.realpath(cfg) + protocol.LEGACY_LOCK_SUFFIX


def write_lock(cfg: str) -> str:
    return fspath.join(cfg, protocol.WRITE_LOCK_NAME)


def state_dir(env: Mapping[str, str] | None = None) -> str:
    env = environ(env)
    base = env.get("XDG_STATE_HOME") or fspath.join(home(env), ".local", "state")
    return fspath.join(base, "claude-wrap")


def log_file(env: Mapping[str, str] | None = None) -> str:
    env = environ(env)
    return env.get("CLAUDE_WRAP_LOG_FILE") or fspath.join(state_dir(env), "claude-wrap.log")


def make_private_dirs(path: str) -> None:
    """os.makedirs, but every folder it creates is 0700, not only the last one (os.makedirs
    gives the ones above it 0777 minus the umask: world-writable under umask 000)."""
    if not path or fspath.isdir(path):
        return
    parent = fspath.dirname(path)
    if parent != path:
        make_private_dirs(parent)
    try:
        posix.mkdir(path, 0o700)
    except FileExistsError:
        pass


def lock_records(env: Mapping[str, str] | None = None) -> str:
    """Where we note the lock folders we hold (lock.py): abandoned ones are taken over at once."""
    return fspath.join(state_dir(env), "locks")


def verdict_cache(env: Mapping[str, str] | None = None) -> str:
    return fspath.join(state_dir(env), "verdict")


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


def refresh_window(env: Mapping[str, str] | None = None) -> float:
    env = environ(env)
    return _seconds(env, "CLAUDE_WRAP_REFRESH_WINDOW", DEFAULT_REFRESH_WINDOW_S)


def refresh_budget(env: Mapping[str, str] | None = None) -> float:
    env = environ(env)
    return _seconds(env, "CLAUDE_WRAP_REFRESH_TIMEOUT", DEFAULT_REFRESH_BUDGET_S)


def lock_wait(env: Mapping[str, str] | None = None) -> float:
    env = environ(env)
    return _seconds(env, "CLAUDE_WRAP_LOCK_TIMEOUT", DEFAULT_LOCK_WAIT_S)


def login_end_window(env: Mapping[str, str] | None = None) -> float:
    env = environ(env)
    return _seconds(env, "CLAUDE_WRAP_LOGIN_END_WINDOW", DEFAULT_LOGIN_END_WINDOW_S)


def notified_state(env: Mapping[str, str] | None = None) -> str:
    """What the keeper told the user about each login's end (notify.py): no secret in it."""
    return fspath.join(state_dir(env), "notified.json")


def shim_notice_stamp(env: Mapping[str, str] | None = None) -> str:
    """Its mtime is when a shim last printed the login-end line (at most once an hour)."""
    return fspath.join(state_dir(env), "login-end-notice")


WATCH_KINDS = ("auto", "inotify", "kqueue", "poll")


def watch_kind(env: Mapping[str, str] | None = None) -> str:
    """How long sessions and `keep --watch` learn of a change to the credentials file
    (filewatch.py): auto (inotify on Linux, kqueue on macOS), or one of them, or poll."""
    env = environ(env)
    raw = env.get("CLAUDE_WRAP_NOTIFY", "") or "auto"
    if raw not in WATCH_KINDS:
        raise _bad("CLAUDE_WRAP_NOTIFY", raw, "one of " + ", ".join(WATCH_KINDS))
    return raw


def token_url(env: Mapping[str, str] | None = None) -> str:
    """Where refresh tokens go: CLAUDE_WRAP_TOKEN_URL (checked: see checked_token_url), else
    Claude Code's own endpoint."""
    env = environ(env)
    raw = env.get("CLAUDE_WRAP_TOKEN_URL")
    return checked_token_url(raw) if raw else protocol.TOKEN_URL


def checked_token_url(url: str) -> str:
    """`url` when a refresh token may be sent to it: https anywhere, plain http only to a
    loopback host (the tests' servers). Else SettingError, naming CLAUDE_WRAP_TOKEN_URL."""
    import ipaddress  # noqa: PLC0415 - only when refreshing
    import urllib.parse  # noqa: PLC0415

    from claude_wrap.errors import SettingError  # noqa: PLC0415

    name = "CLAUDE_WRAP_TOKEN_URL"
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


def client_id(env: Mapping[str, str] | None = None) -> str:
    env = environ(env)
    return env.get("CLAUDE_CODE_OAUTH_CLIENT_ID") or protocol.CLIENT_ID


def debug(env: Mapping[str, str] | None = None) -> bool:
    env = environ(env)
    return env.get("CLAUDE_WRAP_DEBUG", "") not in ("", "0")


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw not in ("0", "false", "no", "off")


STORAGE_KINDS = ("file", "keychain")


def storage_kind(env: Mapping[str, str] | None = None) -> str:
    """Where the login lives: the file, or (macOS) the Keychain (docs/protocol.md section 1)."""
    env = environ(env)
    raw = env.get("CLAUDE_WRAP_STORAGE", "")
    if raw in ("", "auto"):
        return "keychain" if sys.platform == "darwin" else "file"
    if raw not in STORAGE_KINDS:
        raise _bad("CLAUDE_WRAP_STORAGE", raw, "one of auto, file, keychain")
    return raw


def keychain_service(env: Mapping[str, str] | None = None) -> str:
    """Claude Code's Keychain service name: a per-folder suffix only when a folder was chosen
    (CLAUDE_SECURESTORAGE_CONFIG_DIR when set, else CLAUDE_CONFIG_DIR), so that the default login
    of every user keeps the plain name."""
    env = environ(env)
    secure = env.get("CLAUDE_SECURESTORAGE_CONFIG_DIR")
    if secure is not None:
        folder = secure
    elif env.get("CLAUDE_CONFIG_DIR"):
        folder = config_dir(env)
    else:
        folder = ""
    if not folder:
        return protocol.KEYCHAIN_SERVICE
    import hashlib  # noqa: PLC0415 - keychain path only

    return f"{protocol.KEYCHAIN_SERVICE}-{hashlib.sha256(folder.encode()).hexdigest()[:8]}"


def keychain_account(env: Mapping[str, str] | None = None) -> str:
    """$USER, else the password database (editors may start us without USER)."""
    env = environ(env)
    value = env.get("USER")
    if value:
        return value
    import pwd  # noqa: PLC0415

    return pwd.getpwuid(posix.getuid()).pw_name


def python_for_shim() -> str:
    """The interpreter an installed shim runs: this package's own."""
    return sys.executable


# Programs, services and sessions (locate, binary, keeper, notify, configs, doctor) -------------


def with_home(env: Mapping[str, str], fallback: str) -> dict[str, str]:
    """`env` with HOME set to `fallback` when it has none (another process's environment)."""
    return {**env, "HOME": env.get("HOME") or fallback}


def search_path(env: Mapping[str, str] | None = None) -> str | None:
    """PATH as given, for shutil.which (None when unset: it then searches the default path)."""
    env = environ(env)
    return env.get("PATH")


def path_folders(env: Mapping[str, str] | None = None) -> list[str]:
    """PATH's folders in order, empty entries dropped."""
    env = environ(env)
    return [f for f in env.get("PATH", "").split(fspath.PATHSEP) if f]


def npm_prefixes(env: Mapping[str, str] | None = None) -> list[str]:
    """npm's global prefix when set for it (npm reads either spelling): claude may be in bin/."""
    env = environ(env)
    return [p for p in (env.get("NPM_CONFIG_PREFIX"), env.get("npm_config_prefix")) if p]


def real_claude_override(env: Mapping[str, str] | None = None) -> str:
    """CLAUDE_WRAP_REAL_CLAUDE: the real claude's path when the user names it, else ""."""
    env = environ(env)
    return env.get("CLAUDE_WRAP_REAL_CLAUDE") or ""


ACTIVE_ENV = "CLAUDE_WRAP_ACTIVE"  # set by the shim for the claude it runs


def nested(env: Mapping[str, str] | None = None) -> bool:
    """Inside a claude the shim started (CLAUDE_WRAP_ACTIVE=1): shims started here skip their
    pre-flight."""
    env = environ(env)
    return env.get(ACTIVE_ENV) == "1"


def unnested(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a claude we run only to ask it something (`--version`): marked as
    nested, so that a shim among them does no pre-flight."""
    env = environ(env)
    return {**env, ACTIVE_ENV: "1"}


def claude_oauth_customised(env: Mapping[str, str] | None = None) -> bool:
    """Claude Code's own OAuth settings changed (CLAUDE_CODE_CUSTOM_OAUTH_URL or
    CLAUDE_CODE_OAUTH_CLIENT_ID): its refresh then leaves out the plugins scope (binary.py)."""
    env = environ(env)
    return bool(env.get("CLAUDE_CODE_CUSTOM_OAUTH_URL") or env.get("CLAUDE_CODE_OAUTH_CLIENT_ID"))


def config_home(env: Mapping[str, str] | None = None) -> str:
    """$XDG_CONFIG_HOME, else ~/.config: systemd's user units and our own settings live there."""
    env = environ(env)
    return env.get("XDG_CONFIG_HOME") or fspath.join(home(env), ".config")


def runtime_dir(env: Mapping[str, str] | None = None) -> str:
    """$XDG_RUNTIME_DIR ("" when unset: no systemd user session to talk to)."""
    env = environ(env)
    return env.get("XDG_RUNTIME_DIR") or ""


DESKTOP_ENV = ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS")


def desktop_session(env: Mapping[str, str] | None = None) -> bool:
    """A desktop session is reachable (X11, Wayland or a session bus): notifications can show."""
    env = environ(env)
    return any(env.get(k) for k in DESKTOP_ENV)


def under_journal(env: Mapping[str, str] | None = None) -> bool:
    """systemd runs us with stderr going to the journal (JOURNAL_STREAM is set)."""
    env = environ(env)
    return bool(env.get("JOURNAL_STREAM"))


# Settings a systemd or launchd job does not inherit from the shell that installed it, but that
# change what the keeper does. Never a token: CLAUDE_CODE_OAUTH_TOKEN and the like stay out.
SERVICE_CARRIED = ("CLAUDE_CONFIG_DIR", "CLAUDE_SECURESTORAGE_CONFIG_DIR")
SERVICE_NOT_CARRIED = (ACTIVE_ENV, "CLAUDE_WRAP_DISABLE", "CLAUDE_WRAP_DEBUG")


def service_settings(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables the keeper's service file sets: the folder selectors, then every non-empty
    CLAUDE_WRAP_ setting but those that belong to one shell (keeper.py)."""
    env = environ(env)
    out = {k: env[k] for k in SERVICE_CARRIED if env.get(k)}
    for key in sorted(env):
        if key.startswith("CLAUDE_WRAP_") and key not in SERVICE_NOT_CARRIED and env[key]:
            out[key] = env[key]
    return out


# Variables that pick one config folder (configs.py finds every folder and selects each).
FOLDER_SELECTORS = ("CLAUDE_CONFIG_DIR", "CLAUDE_SECURESTORAGE_CONFIG_DIR")


def selecting(env: Mapping[str, str], folder: str | None) -> dict[str, str]:
    """The environment that selects `folder` as Claude Code's config folder, its login beside
    it: the selectors unset, then CLAUDE_CONFIG_DIR set unless `folder` is None (~/.claude, the
    default, selected by no variable, which also keeps its Keychain service name unsuffixed)."""
    out = {k: v for k, v in env.items() if k not in FOLDER_SELECTORS}
    if folder is not None:
        out["CLAUDE_CONFIG_DIR"] = folder
    return out


def with_refresh_window(env: Mapping[str, str], seconds: float) -> dict[str, str]:
    """`env` with CLAUDE_WRAP_REFRESH_WINDOW set: a refresh that leaves the token good for at
    least `seconds` (guest.credential hands out tokens with a lifetime asked for)."""
    return {**env, "CLAUDE_WRAP_REFRESH_WINDOW": repr(float(seconds))}


def without_guest(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without CLAUDE_WRAP_GUEST: the guest file alone says whose guest we are."""
    return {k: v for k, v in env.items() if k != GUEST_ENV}


# Claude Code's variables for a token handed to it (commands/token.py sets them; read by 2.1.87,
# 2.1.197 and 2.1.332 at start): the token itself, or a file descriptor to read it from.
TOKEN_ENV = "CLAUDE_CODE_OAUTH_TOKEN"  # noqa: S105 - a variable's name
TOKEN_FD_ENV = "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR"  # noqa: S105 - a variable's name


def with_access_token(
    env: Mapping[str, str], *, token: str | None = None, fd: int | None = None
) -> dict[str, str]:
    """`env` for a command that gets an access token: in TOKEN_ENV (`token`), or through an
    inherited descriptor named by TOKEN_FD_ENV (`fd`); any token `env` carried is dropped."""
    out = {k: v for k, v in env.items() if k not in (TOKEN_ENV, TOKEN_FD_ENV)}
    if fd is not None:
        out[TOKEN_FD_ENV] = str(fd)
    elif token is not None:
        out[TOKEN_ENV] = token
    return out


# Guests (guest.py): a machine or container that borrows an owner's login ----------------------

GUEST_ENV = "CLAUDE_WRAP_GUEST"


def wrap_config_dir(env: Mapping[str, str] | None = None) -> str:
    """claude-wrap's own settings (not Claude Code's folder): $XDG_CONFIG_HOME/claude-wrap."""
    return fspath.join(config_home(env), "claude-wrap")


def guest_file(env: Mapping[str, str] | None = None) -> str:
    """Where `claude-wrap guest --ssh/--folder` stores this machine's owner (one line)."""
    return fspath.join(wrap_config_dir(env), "guest")


def shares_file(env: Mapping[str, str] | None = None) -> str:
    """Where `claude-wrap share DIR` lists the folders the owner's keeper keeps a token in."""
    return fspath.join(wrap_config_dir(env), "shares")


def guest_setting(env: Mapping[str, str] | None = None) -> str:
    """"ssh:HOST", "folder:/path" or "" (not a guest): CLAUDE_WRAP_GUEST, which wins (containers
    set it in their image or `docker run -e`), else the line `claude-wrap guest` stored. Only
    read once the verdict cache has missed: never on the hot path of a healthy run."""
    env = environ(env)
    raw = env.get(GUEST_ENV)
    if raw is None:
        try:
            with open(guest_file(env), encoding="utf-8") as f:
                raw = f.read(4096).strip()
        except OSError:
            return ""
        where = guest_file(env)
    else:
        raw = raw.strip()
        where = GUEST_ENV
    if raw in ("", "off"):
        return ""
    kind, _, target = raw.partition(":")
    if kind not in ("ssh", "folder") or not target:
        raise _bad(where, raw, "ssh:HOST, folder:/path or off")
    if kind == "folder" and not fspath.isabs(target):
        raise _bad(where, raw, "folder: with an absolute path")
    return raw


def guest_ssh_command(env: Mapping[str, str] | None = None) -> str:
    """The ssh a guest runs (words split like a shell's): CLAUDE_WRAP_GUEST_SSH, default `ssh`.
    Options such as `-F config` or `-i key` go here; the host comes from the guest setting."""
    env = environ(env)
    return env.get("CLAUDE_WRAP_GUEST_SSH") or "ssh"


def guest_remote_command(env: Mapping[str, str] | None = None) -> str:
    """What the guest asks the owner to run; a forced command in authorized_keys overrides it."""
    env = environ(env)
    return env.get("CLAUDE_WRAP_GUEST_REMOTE") or "claude-wrap token --json"


DEFAULT_RESCAN_S = 300.0  # as often as the keeper timer runs


def rescan_period(env: Mapping[str, str] | None = None) -> float:
    """CLAUDE_WRAP_RESCAN: how often `keep --watch --all` looks for config folders made since it
    started (keepwatch.watch); 0: never."""
    env = environ(env)
    return _seconds(env, "CLAUDE_WRAP_RESCAN", DEFAULT_RESCAN_S)


def guest_timeout(env: Mapping[str, str] | None = None) -> float:
    env = environ(env)
    return _seconds(env, "CLAUDE_WRAP_GUEST_TIMEOUT", 20.0)


def guest_period(env: Mapping[str, str] | None = None) -> float:
    """How often a session on a guest looks whether its token is due (guest.Rollover)."""
    env = environ(env)
    return _seconds(env, "CLAUDE_WRAP_GUEST_PERIOD", 30.0)


# The shim, the relay and the interactive session

DEFAULT_REPLAY_LIMIT = 64 << 20  # bytes of stdin kept for a replay; past it, no retry
DEFAULT_KILL_GRACE_S = 5.0  # after SIGTERM/SIGHUP, how long claude gets before its tree is killed
# A consumer that keeps stdin open may wait for our output before it writes more; the output
# we hold waits for the child's next line. Past this much quiet, release it: no deadlock.
DEFAULT_HOLD_QUIET_S = 2.0
DEFAULT_GUARD_PERIOD_S = 0.5


def login_given_otherwise(env: Mapping[str, str] | None = None) -> bool:
    """Whether claude will not use the stored login: an API key, a token in the environment or
    on a descriptor (`claude-wrap exec`), or CLAUDE_CODE_SIMPLE=1 (no OAuth at all)."""
    env = environ(env)
    return bool(
        env.get("ANTHROPIC_API_KEY")
        or env.get("CLAUDE_CODE_OAUTH_TOKEN")
        or env.get("CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR")
        or env.get("CLAUDE_CODE_SIMPLE") == "1"
    )


def disabled(env: Mapping[str, str] | None = None) -> bool:
    """CLAUDE_WRAP_DISABLE: the shim only execs claude."""
    env = environ(env)
    return flag(env, "CLAUDE_WRAP_DISABLE", default=False)


def watching(env: Mapping[str, str] | None = None) -> bool:
    """CLAUDE_WRAP_WATCH (default on): run claude as our child and watch it for a login failure;
    off, the shim execs it after the pre-flight."""
    env = environ(env)
    return flag(env, "CLAUDE_WRAP_WATCH", default=True)


def replay_limit(env: Mapping[str, str] | None = None) -> int:
    """CLAUDE_WRAP_REPLAY_LIMIT: bytes of stdin kept to replay on a retry; past it, no retry."""
    env = environ(env)
    raw = env.get("CLAUDE_WRAP_REPLAY_LIMIT")
    if not raw:
        return DEFAULT_REPLAY_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise _bad("CLAUDE_WRAP_REPLAY_LIMIT", raw, "a number of bytes") from None
    if value < 0:
        raise _bad("CLAUDE_WRAP_REPLAY_LIMIT", raw, "a number of bytes")
    return value


def kill_grace(env: Mapping[str, str] | None = None) -> float:
    """CLAUDE_WRAP_KILL_GRACE: after SIGTERM/SIGHUP, seconds before claude's tree is killed."""
    env = environ(env)
    return _seconds(env, "CLAUDE_WRAP_KILL_GRACE", DEFAULT_KILL_GRACE_S)


def hold_quiet(env: Mapping[str, str] | None = None) -> float:
    """CLAUDE_WRAP_HOLD_QUIET: seconds of quiet after which held-back output is released."""
    env = environ(env)
    return _seconds(env, "CLAUDE_WRAP_HOLD_QUIET", DEFAULT_HOLD_QUIET_S)


def guard_period(env: Mapping[str, str] | None = None) -> float:
    """CLAUDE_WRAP_GUARD_PERIOD: the guard's poll period in long sessions (guard.py); 0: off."""
    env = environ(env)
    return _seconds(env, "CLAUDE_WRAP_GUARD_PERIOD", DEFAULT_GUARD_PERIOD_S)


def splicing(env: Mapping[str, str] | None = None) -> bool:
    """CLAUDE_WRAP_SPLICE (default on): `0` makes the relay read and write the pipes it would
    splice (pipes.py), as it does where the system has no splice(2) (macOS). A debugging switch:
    the tests take that path on Linux through it."""
    env = environ(env)
    return flag(env, "CLAUDE_WRAP_SPLICE", default=True)


def temp_dir(env: Mapping[str, str] | None = None) -> str:
    """Where the relay keeps its replay copy of stdin when the system has no memory file
    (memfd): TMPDIR, else /tmp. The file is unlinked as soon as it is made."""
    env = environ(env)
    return env.get("TMPDIR") or "/tmp"  # noqa: S108 - unlinked at once, opened O_EXCL

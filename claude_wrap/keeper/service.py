"""The background keeper's service files, in one of two modes:

- watch (the default): a long-running user service, `claude-wrap keep --all --watch` (a systemd
  user service with Restart=on-failure, a launchd agent with KeepAlive). It repairs each change
  to a credentials file within milliseconds and refreshes ahead of expiry, and blocks in the
  kernel while idle (keeper/watch.py).
- timer: for those who want no daemon, a systemd user timer or a launchd StartInterval job that
  runs `claude-wrap keep --all` every few minutes.

Editors and other programs may start Claude Code's own binary, never passing through the shim;
the keeper keeps their login fresh and its scopes whole all the same. This module only renders
the files and writes them idempotently; commands/install.py decides when, and starts them.
"""

from __future__ import annotations

import os
import plistlib
import sys
from typing import TYPE_CHECKING

from claude_wrap.config.settings import KEEPER_PERIOD_S
from claude_wrap.findings import Finding, Level

if TYPE_CHECKING:
    from claude_wrap.config.settings import Settings


class Manager:
    """The service managers the keeper can be installed with (strings: see login.State)."""

    SYSTEMD = "systemd"
    LAUNCHD = "launchd"


class Mode:
    """How the keeper runs: watch, a long-running service; timer, a run every INTERVAL_S."""

    WATCH = "watch"
    TIMER = "timer"


MANAGERS = (Manager.SYSTEMD, Manager.LAUNCHD)
NAME = "claude-wrap-keeper"
LABEL = "io.github.claude-wrap.keeper"
WATCH_NAME = "claude-wrap-keeper-watch"
WATCH_LABEL = "io.github.claude-wrap.keeper-watch"
MODES = (Mode.WATCH, Mode.TIMER)
DEFAULT_MODE = Mode.WATCH
MARKER = "claude-wrap-keeper"
INTERVAL_S = KEEPER_PERIOD_S


def default_manager() -> str:
    return Manager.LAUNCHD if sys.platform == "darwin" else Manager.SYSTEMD


def command(mode: str = Mode.TIMER) -> list[str]:
    """What the keeper runs: this very interpreter, which has claude-wrap installed."""
    watch = ["--watch"] if mode == Mode.WATCH else []
    return [sys.executable, "-m", "claude_wrap", "keep", "--all", *watch]


# systemd -----------------------------------------------------------------------------------


def systemd_dir(settings: Settings) -> str:
    return os.path.join(settings.config_home, "systemd", "user")


def _sd_quote(word: str, *, command: bool = True) -> str:
    """One quoted word for ExecStart= (or, command=False, for Environment=): `\\` and `"`
    escaped, `%` doubled (specifiers); `$` doubled on command lines only, where systemd expands
    variables (in Environment= it is literal)."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (escaped.replace("$", "$$") if command else escaped) + '"'


def systemd_units(settings: Settings, mode: str = Mode.TIMER) -> dict[str, str]:
    """{file name: text}: the .service and the .timer, or (watch) the long-running .service."""
    carried = settings.service_settings
    environment = "".join(
        f"Environment={_sd_quote(f'{k}={v}', command=False)}\n" for k, v in carried.items()
    )
    if mode == Mode.WATCH:
        watch = (
            f"# {MARKER}: written by `claude-wrap install --keeper`; "
            "`claude-wrap uninstall --keeper` removes it.\n"
            "[Unit]\n"
            "Description=claude-wrap keeper: repair the Claude Code login on change, "
            "refresh it ahead of expiry\n"
            "\n"
            "[Service]\n"
            "Type=simple\n"
            f"{environment}"
            f"ExecStart={' '.join(_sd_quote(w) for w in command(Mode.WATCH))}\n"
            "Restart=on-failure\n"
            "RestartSec=5\n"
            "\n"
            "[Install]\n"
            "WantedBy=default.target\n"
        )
        return {f"{WATCH_NAME}.service": watch}
    service = (
        f"# {MARKER}: written by `claude-wrap install --keeper`; "
        "`claude-wrap uninstall --keeper` removes it.\n"
        "[Unit]\n"
        "Description=claude-wrap keeper: keep the Claude Code login fresh\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"{environment}"
        f"ExecStart={' '.join(_sd_quote(w) for w in command())}\n"
    )
    timer = (
        f"# {MARKER}: written by `claude-wrap install --keeper`; "
        "`claude-wrap uninstall --keeper` removes it.\n"
        "[Unit]\n"
        f"Description=Run the claude-wrap keeper every {INTERVAL_S // 60} minutes\n"
        "\n"
        "[Timer]\n"
        "OnBootSec=1min\n"
        f"OnUnitActiveSec={INTERVAL_S // 60}min\n"
        f"Unit={NAME}.service\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {f"{NAME}.service": service, f"{NAME}.timer": timer}


# launchd -----------------------------------------------------------------------------------


def launchd_dir(settings: Settings) -> str:
    return os.path.join(settings.home, "Library", "LaunchAgents")


def launchd_plist(settings: Settings, mode: str = Mode.TIMER) -> dict[str, str]:
    label = WATCH_LABEL if mode == Mode.WATCH else LABEL
    job: dict[str, object] = {
        "Label": label,
        "Comment": f"{MARKER}: written by `claude-wrap install --keeper`",
        "ProgramArguments": command(mode),
        # watch: launchd starts it again whenever it exits; timer: every INTERVAL_S.
        **({"KeepAlive": True} if mode == Mode.WATCH else {"StartInterval": INTERVAL_S}),
        "RunAtLoad": True,
        "ProcessType": "Background",
        # launchd keeps no journal: what `keep` says goes to files beside the log.
        "StandardOutPath": os.path.join(settings.state_dir, "keeper.out"),
        "StandardErrorPath": os.path.join(settings.state_dir, "keeper.err"),
    }
    carried = settings.service_settings
    if carried:
        job["EnvironmentVariables"] = carried
    return {f"{label}.plist": plistlib.dumps(job, sort_keys=False).decode()}


# both --------------------------------------------------------------------------------------


def files(
    manager: str, settings: Settings, mode: str = Mode.TIMER
) -> tuple[str, dict[str, str]]:
    """(folder, {file name: text}) of the keeper for this service manager and mode."""
    if manager == Manager.SYSTEMD:
        return systemd_dir(settings), systemd_units(settings, mode)
    return launchd_dir(settings), launchd_plist(settings, mode)


def write(folder: str, texts: dict[str, str]) -> list[tuple[str, bool]]:
    """Write each file unless it already holds exactly that text: [(path, changed)]."""
    out = []
    os.makedirs(folder, exist_ok=True)
    for name, text in texts.items():
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                if f.read() == text:
                    out.append((path, False))
                    continue
        except FileNotFoundError:
            pass
        if os.path.lexists(path) and not ours(path):
            raise FileExistsError(path)
        tmp = f"{path}.tmp.{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        out.append((path, True))
    return out


def ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return MARKER in f.read(4096)
    except OSError:
        return False


def installed(
    manager: str, settings: Settings, mode: str | None = None
) -> list[str]:
    """Our keeper files found for this manager: of `mode`, or of both modes."""
    out = []
    for m in (Mode.TIMER, Mode.WATCH) if mode is None else (mode,):
        folder, texts = files(manager, settings, m)
        out += [p for p in (os.path.join(folder, n) for n in texts) if ours(p)]
    return out


def installed_mode(manager: str, settings: Settings) -> str | None:
    for mode in MODES:
        if installed(manager, settings, mode):
            return mode
    return None


# starting and stopping ---------------------------------------------------------------------


def reachable(manager: str, settings: Settings) -> bool:
    """Whether this session can talk to the service manager (not so in containers, over plain
    ssh without lingering, or in tests)."""
    import shutil  # noqa: PLC0415

    if manager == Manager.SYSTEMD:
        runtime = settings.runtime_dir
        return bool(
            runtime
            and os.path.exists(os.path.join(runtime, "systemd", "private"))
            and shutil.which("systemctl", path=settings.search_path)
        )
    return sys.platform == "darwin" and bool(
        shutil.which("launchctl", path=settings.search_path)
    )


def start_commands(
    manager: str, settings: Settings, mode: str = Mode.TIMER
) -> list[list[str]]:
    if manager == Manager.SYSTEMD:
        unit = f"{WATCH_NAME}.service" if mode == Mode.WATCH else f"{NAME}.timer"
        return [
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", unit],
        ]
    label = WATCH_LABEL if mode == Mode.WATCH else LABEL
    plist = os.path.join(launchd_dir(settings), f"{label}.plist")
    # bootout first so that a changed plist is loaded afresh (it fails harmlessly when not loaded).
    return [
        *stop_commands(manager, settings, mode),
        ["launchctl", "bootstrap", f"gui/{os.getuid()}", plist],
    ]


def stop_commands(
    manager: str,
    settings: Settings,  # noqa: ARG001
    mode: str = Mode.TIMER,
) -> list[list[str]]:
    if manager == Manager.SYSTEMD:
        unit = f"{WATCH_NAME}.service" if mode == Mode.WATCH else f"{NAME}.timer"
        return [["systemctl", "--user", "disable", "--now", unit]]
    label = WATCH_LABEL if mode == Mode.WATCH else LABEL
    return [["launchctl", "bootout", f"gui/{os.getuid()}/{label}"]]


def run(
    commands: list[list[str]], settings: Settings, *, tolerate_first: bool = False
) -> str | None:
    """Run the commands in order; the first failure's message, or None."""
    import subprocess  # noqa: PLC0415

    for i, argv in enumerate(commands):
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, check=False,
                env=settings.child_env(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(argv)}: {exc}"
        if result.returncode != 0 and not (tolerate_first and i == 0):
            lines = result.stderr.strip().splitlines()
            why = lines[-1] if lines else f"exit status {result.returncode}"
            return f"{' '.join(argv)}: {why}"
    return None


def check_keeper(settings: Settings) -> Finding:
    """Informational: the keeper is optional, needed only for launches that bypass the shim."""
    manager = default_manager()
    found = installed(manager, settings)
    if found:
        mode = installed_mode(manager, settings)
        detail = f"installed ({manager}, {mode}): {', '.join(found)}"
        running = None
        if mode == Mode.WATCH:
            from claude_wrap.keeper import watch  # noqa: PLC0415

            running = watch.running(settings)
            detail += f"; running (pid {running})" if running else "; not running now"
        return Finding("keeper", Level.OK, detail, files=found, mode=mode, running=running)
    return Finding(
        "keeper",
        Level.OK,
        "not installed; editors that start their own claude (VS Code without the wrapper "
        "setting, Zed) need it: `claude-wrap install --keeper`",
        files=[],
    )

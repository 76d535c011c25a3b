"""`claude-wrap`: parse argv, dispatch to one command, turn known errors into one line.

This is the only place that turns exceptions into output: a known error prints one clean line to
stderr and returns its exit status; anything else is logged with its traceback and reported in
one line that says where the log is.
"""

from __future__ import annotations

import sys

from claude_wrap import console

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def _parser() -> argparse.ArgumentParser:
    import argparse  # noqa: PLC0415

    from claude_wrap import __version__  # noqa: PLC0415
    from claude_wrap.commands import (  # noqa: PLC0415
        doctor,
        guest,
        install,
        keep,
        log,
        refresh,
        status,
        token,
    )

    parser = argparse.ArgumentParser(
        prog="claude-wrap",
        description="Keeps Claude Code's OAuth login alive. See README.md.",
    )
    parser.add_argument("--version", action="version", version=f"claude-wrap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status.register(sub)
    refresh.register(sub)
    install.register(sub)
    keep.register(sub)
    doctor.register(sub)
    log.register(sub)
    token.register(sub)
    guest.register(sub)
    run = sub.add_parser("run", help="run claude through the shim: claude-wrap run -- ARGS")
    run.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from claude_wrap.config.settings import Settings  # noqa: PLC0415 - light, as the shim's

    # The one reading of the environment for everything this command does (settings.py).
    settings = Settings.from_process()
    if argv[:1] == ["run"]:
        # The alias path (alias claude='claude-wrap run --') is a hot path: no argparse.
        from claude_wrap import shim  # noqa: PLC0415

        args = argv[1:]
        if args[:1] == ["--"]:
            args = args[1:]
        shim.run(args, None, settings)
    if argv == ["status", "--short"]:
        # Run by shell prompts before every command line: no argparse, no JSON (shortstatus.py).
        from claude_wrap.commands import shortstatus  # noqa: PLC0415

        return shortstatus.main(settings)

    from claude_wrap.errors import Interrupted, WrapError  # noqa: PLC0415

    parser = _parser()
    ns = parser.parse_args(argv)
    from claude_wrap.logfile import log  # noqa: PLC0415

    log.set_role({"keep": "keeper"}.get(ns.command, ns.command))
    try:
        return int(ns.func(ns, settings))
    except WrapError as exc:  # a bad setting too (errors.SettingError: EXIT_USAGE)
        console.say(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Interrupted as exc:
        return 128 + exc.signum
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        from claude_wrap.logfile.log import logger  # noqa: PLC0415

        try:
            logger(settings).opt(exception=exc).error("claude-wrap {} failed", ns.command)
        except Exception:  # noqa: BLE001, S110 - the report below matters more than the log
            pass
        console.say(f"internal error ({type(exc).__name__}); details are in {settings.log_file}")
        return 70

#!/usr/bin/env python3
"""A fake `claude` executable that behaves like the real one where it matters to claude-wrap.

It reads the credentials file the way Claude Code does (shared/protocol.md section 2) and, when it
would refuse the login, prints the real error strings (section 6) on stdout with exit 1. Otherwise
it "answers": it echoes its argv, the CLAUDE_WRAP_ACTIVE marker and what it read on stdin.

Scripted through environment variables (all optional):
  FAKE_CLAUDE_RECORD       append one JSON line per run: argv, marker, cwd, pid, ppid, stdin size,
                           the access token it saw (tests check secrets never reach argv or env)
  FAKE_CLAUDE_FAIL_FIRST   fail the first N runs with "Not logged in" whatever the file says
  FAKE_CLAUDE_COUNTER      the file that counts runs for FAIL_FIRST (default: next to RECORD)
  FAKE_CLAUDE_EXIT         exit with this status after answering
  FAKE_CLAUDE_SIGNAL       kill itself with this signal after answering
  FAKE_CLAUDE_SLEEP        sleep this many seconds before answering
  FAKE_CLAUDE_QUOTE        answer with a text that quotes "Not logged in · Please run /login"
  FAKE_CLAUDE_LINES        in --print, write this many lines, FAKE_CLAUDE_LINE_DELAY s apart
  FAKE_CLAUDE_GRANDCHILD   spawn a `sleep` grandchild and write its pid to this file
  FAKE_CLAUDE_BYTES        in --print, write this many bytes of output (throughput benchmarks)
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

NOT_LOGGED_IN = "Not logged in · Please run /login"
VERSION = "2.1.197 (Claude Code)"


def credentials_path() -> str:
    cfg = os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".claude")
    return os.path.join(cfg, ".credentials.json")


def stored_login() -> dict[str, object] | None:
    try:
        with open(credentials_path(), encoding="utf-8") as f:
            doc = json.load(f)
        oauth = doc.get("claudeAiOauth")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return oauth if isinstance(oauth, dict) else None


def refusal() -> str | None:
    """The error Claude Code would print for this login, or None when it accepts it."""
    if os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("CLAUDE_CODE_OAUTH_TOKEN"):
        return None
    oauth = stored_login()
    if oauth is None:
        return NOT_LOGGED_IN
    scopes = oauth.get("scopes")
    if not (isinstance(scopes, list) and "user:inference" in scopes) or not oauth.get(
        "accessToken"
    ):
        return NOT_LOGGED_IN
    expires = oauth.get("expiresAt")
    if isinstance(expires, (int, float)) and expires <= time.time() * 1000:
        return (
            "Failed to authenticate. API Error: 401 "
            '{"type":"error","error":{"type":"authentication_error","message":"OAuth token has '
            'expired. Please obtain a new token or refresh your existing token."}}'
        )
    return None


def cmdline() -> list[str]:
    with open("/proc/self/cmdline", "rb") as f:
        return f.read().decode().split("\0")[:-1]


def bump_counter() -> int:
    path = os.environ.get("FAKE_CLAUDE_COUNTER")
    if not path:
        record = os.environ.get("FAKE_CLAUDE_RECORD", "")
        path = record + ".count" if record else ""
    if not path:
        return 1
    try:
        with open(path, encoding="utf-8") as f:
            n = int(f.read() or 0)
    except (OSError, ValueError):
        n = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(str(n + 1))
    return n + 1


def option(args: list[str], name: str, default: str) -> str:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def fail(fmt: str, message: str, session: str) -> int:
    if fmt == "json":
        emit(
            json.dumps(
                {
                    "type": "result",
                    "subtype": "success",
                    "is_error": True,
                    "duration_ms": 3,
                    "num_turns": 1,
                    "result": message,
                    "session_id": session,
                    "total_cost_usd": 0,
                }
            )
            + "\n"
        )
    elif fmt == "stream-json":
        emit(
            json.dumps(
                {
                    "type": "system",
                    "subtype": "init",
                    "cwd": os.getcwd(),
                    "session_id": session,
                    "model": "claude-sonnet-4-5",
                }
            )
            + "\n"
        )
        emit(
            json.dumps(
                {
                    "type": "assistant",
                    "message": {
                        "id": str(uuid.uuid4()),
                        "model": "<synthetic>",
                        "role": "assistant",
                        "type": "message",
                        "content": [{"type": "text", "text": message}],
                    },
                    "parent_tool_use_id": None,
                    "session_id": session,
                    "error": "authentication_failed",
                }
            )
            + "\n"
        )
        emit(
            json.dumps(
                {
                    "type": "result",
                    "subtype": "success",
                    "is_error": True,
                    "result": message,
                    "session_id": session,
                }
            )
            + "\n"
        )
    else:
        emit(message + "\n")
    return 1


def answer(fmt: str, text: str, session: str) -> None:
    if fmt == "json":
        emit(
            json.dumps(
                {
                    "type": "result",
                    "subtype": "success",
                    "is_error": False,
                    "result": text,
                    "session_id": session,
                }
            )
            + "\n"
        )
    elif fmt == "stream-json":
        emit(
            json.dumps(
                {
                    "type": "system",
                    "subtype": "init",
                    "session_id": session,
                    "model": "claude-sonnet-4-5",
                }
            )
            + "\n"
        )
        emit(
            json.dumps(
                {
                    "type": "assistant",
                    "message": {
                        "model": "claude-sonnet-4-5",
                        "role": "assistant",
                        "content": [{"type": "text", "text": text}],
                    },
                    "session_id": session,
                }
            )
            + "\n"
        )
        emit(
            json.dumps(
                {
                    "type": "result",
                    "subtype": "success",
                    "is_error": False,
                    "result": text,
                    "session_id": session,
                }
            )
            + "\n"
        )
    else:
        emit(text + "\n")


def main() -> int:
    args = sys.argv[1:]
    env = os.environ
    if "--version" in args or "-v" in args:
        emit(VERSION + "\n")
        return 0
    run_no = bump_counter()
    print_mode = "-p" in args or "--print" in args
    stdin = b""
    if print_mode and not sys.stdin.isatty():
        stdin = sys.stdin.buffer.read()
    oauth = stored_login() or {}
    record = env.get("FAKE_CLAUDE_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as f:
            f.write(
                json.dumps(
                    {
                        "argv": sys.argv,
                        # As the kernel ran us: [python, the path that was executed, args...].
                        "cmdline": cmdline(),
                        "active": env.get("CLAUDE_WRAP_ACTIVE"),
                        "cwd": os.getcwd(),
                        "pid": os.getpid(),
                        "ppid": os.getppid(),
                        "run": run_no,
                        "stdin_len": len(stdin),
                        "stdin_sha": hashlib.sha256(stdin).hexdigest(),
                        "access_token": oauth.get("accessToken"),
                    }
                )
                + "\n"
            )
    if env.get("FAKE_CLAUDE_GRANDCHILD"):
        child = subprocess.Popen(["sleep", "300"])
        with open(env["FAKE_CLAUDE_GRANDCHILD"], "w", encoding="utf-8") as f:
            f.write(str(child.pid))
    if env.get("FAKE_CLAUDE_SLEEP"):
        time.sleep(float(env["FAKE_CLAUDE_SLEEP"]))

    fmt = option(args, "--output-format", "text")
    session = str(uuid.uuid4())
    if args[:2] == ["auth", "status"]:
        problem = refusal()
        if problem is not None:
            emit(
                json.dumps(
                    {"loggedIn": False, "authMethod": "none", "apiProvider": "firstParty"}, indent=2
                )
                + "\n"
            )
            return 1
        emit(
            json.dumps(
                {
                    "loggedIn": True,
                    "authMethod": "claude.ai",
                    "apiProvider": "firstParty",
                    "subscriptionType": oauth.get("subscriptionType"),
                },
                indent=2,
            )
            + "\n"
        )
        return 0

    problem = refusal()
    if run_no <= int(env.get("FAKE_CLAUDE_FAIL_FIRST") or 0):
        problem = NOT_LOGGED_IN
    if problem is not None and print_mode:
        return fail(fmt, problem, session)

    if print_mode:
        if env.get("FAKE_CLAUDE_BYTES"):
            remaining = int(env["FAKE_CLAUDE_BYTES"])
            block = b"y" * 65535 + b"\n"
            out = sys.stdout.buffer
            while remaining > 0:
                chunk = block[: min(remaining, len(block))]
                out.write(chunk)
                remaining -= len(chunk)
            out.flush()
            return 0
        lines = int(env.get("FAKE_CLAUDE_LINES") or 0)
        for i in range(lines):
            emit(f"line {i} {time.time():.6f}\n")
            time.sleep(float(env.get("FAKE_CLAUDE_LINE_DELAY") or 0))
        text = (
            f"fake answer: quoting '{NOT_LOGGED_IN}' from the docs"
            if env.get("FAKE_CLAUDE_QUOTE")
            else f"fake answer: argv={json.dumps(args)} active={env.get('CLAUDE_WRAP_ACTIVE')} "
            f"stdin={len(stdin)}:{hashlib.sha256(stdin).hexdigest()[:16]}"
        )
        answer(fmt, text, session)
    else:
        emit(f"fake claude: argv={json.dumps(args)} active={env.get('CLAUDE_WRAP_ACTIVE')}\n")
    if env.get("FAKE_CLAUDE_SIGNAL"):
        os.kill(os.getpid(), int(env["FAKE_CLAUDE_SIGNAL"]))
    if env.get("FAKE_CLAUDE_EXIT"):
        return int(env["FAKE_CLAUDE_EXIT"])
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())

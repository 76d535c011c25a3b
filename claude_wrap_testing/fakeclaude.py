#!/usr/bin/env python3
"""A fake `claude` executable that behaves like the real one where it matters to claude-wrap.

It reads the credentials file the way Claude Code does (docs/protocol.md section 2) and, when it
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
  FAKE_CLAUDE_FAIL_MESSAGE the failure FAIL_FIRST prints (default: "Not logged in ..."); several
                           lines: one per run, the last repeated
  FAKE_CLAUDE_ACK_DIR      streaming handshake: after answer line i (text or stream-json, see
                           LINES), wait until the file ACK_DIR/i exists; proves lines arrive at
                           once, with no timing in the test
  FAKE_CLAUDE_IGNORE_TERM  ignore SIGTERM and SIGHUP (a child that outlives its grace period)
  FAKE_CLAUDE_TUI          without --print: a tiny line-based TUI (see tui())
  FAKE_CLAUDE_STDERR       in --print, write this to stderr first
  FAKE_CLAUDE_VERSION      answer --version with this version instead of VERSION's
  FAKE_CLAUDE_KEYCHAIN     read the login from this Keychain service through `security` (macOS)
  FAKE_CLAUDE_TOKEN_CHECK  a loopback URL (TokenServer.check_url) to ask, as the real binary's
                           API call would find out, whether the access token was revoked; a
                           revoked one is refused with the real binary's words, after one re-read
                           of the file whose token, if different, is used instead (docs/protocol.md
                           sections 5 and 10). tests/conftest.py's Sandbox sets it.
With `--input-format stream-json` it answers each stdin line as it arrives (an editor's session).
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
# How the real binary prints a revoked access token (docs/protocol.md section 10).
REVOKED_PRINT = (
    "Failed to authenticate: OAuth token revoked. Please log in again or contact your "
    "administrator."
)
REVOKED_TUI = "OAuth token revoked · Please run /login"
VERSION = "2.1.197 (Claude Code)"


def credentials_path() -> str:
    cfg = os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".claude")
    return os.path.join(cfg, ".credentials.json")


def stored_raw() -> bytes | None:
    """The stored login's bytes: the file, or with FAKE_CLAUDE_KEYCHAIN (a service name) the
    Keychain item, read through `security` as Claude Code does on macOS (the fake on PATH)."""
    service = os.environ.get("FAKE_CLAUDE_KEYCHAIN")
    if service:
        found = subprocess.run(
            ["security", "find-generic-password", "-a", os.environ.get("USER", ""), "-s",
             service, "-w"],
            capture_output=True,
            check=False,
        )
        if found.returncode != 0:
            return None
        out = found.stdout.rstrip(b"\n")
        return out if out.startswith(b"{") else bytes.fromhex(out.decode())
    try:
        with open(credentials_path(), "rb") as f:
            return f.read()
    except OSError:
        return None


def stored_login() -> dict[str, object] | None:
    try:
        doc = json.loads(stored_raw() or b"")
        oauth = doc.get("claudeAiOauth")
    except (ValueError, AttributeError, RecursionError):
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


def api_refuses(token: str) -> bool:
    """Whether the API would refuse `token` as revoked: asked of FAKE_CLAUDE_TOKEN_CHECK (GET,
    the token in a header, never the URL). No URL, or nobody answering: accepted."""
    url = os.environ.get("FAKE_CLAUDE_TOKEN_CHECK")
    if not url or not token:
        return False
    import urllib.request  # only here: most runs never ask

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read()).get("problem") is not None
    except (OSError, ValueError):
        return False


def usable_token(token: str) -> str | None:
    """The token a call ends up made with, as Claude Code handles a 401: `token` if the API takes
    it, else the file's token if it differs and the API takes that; None when refused."""
    if not api_refuses(token):
        return token
    again = str((stored_login() or {}).get("accessToken") or "")
    if again and again != token and not api_refuses(again):
        return again
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


def wait_ack(i: int) -> None:
    folder = os.environ.get("FAKE_CLAUDE_ACK_DIR")
    if not folder:
        return
    while not os.path.exists(os.path.join(folder, str(i))):
        time.sleep(0.005)


def stream_line(obj: dict[str, object]) -> None:
    emit(json.dumps(obj) + "\n")


# How the real TUI draws its status line: each word at an absolute column, no spaces.
TUI_NOT_LOGGED_IN = "Not\x1b[97Glogged\x1b[104Gin\x1b[107G\xb7\x1b[109GRun\x1b[113G/login"


def tui(run_no: int) -> int:
    """A line-based stand-in for the interactive TUI, enough to test the wrapper around it.

    Prints its window size (again on SIGWINCH), a status line (the real one's escapes when the
    login is refused, and, like the real one, still after it was repaired), then answers each
    line typed: the access token it would use, or the 401 error. Ctrl-C prints "interrupted";
    `quit` exits with FAKE_CLAUDE_EXIT.
    """
    import shutil

    def size(*_: object) -> None:
        cols, rows = shutil.get_terminal_size((0, 0))
        # os.write, not sys.stdout: a handler may run in the middle of a buffered write.
        os.write(1, f"size: {rows}x{cols}\r\n".encode())

    signal.signal(signal.SIGWINCH, size)
    signal.signal(signal.SIGINT, lambda *_: os.write(1, b"interrupted\r\n"))
    size()
    fail_first = run_no <= int(os.environ.get("FAKE_CLAUDE_FAIL_FIRST") or 0)

    def stamp() -> object:
        if os.environ.get("FAKE_CLAUDE_KEYCHAIN"):
            return stored_raw()  # no mtime to look at: the item's data itself
        try:
            return os.stat(credentials_path()).st_mtime_ns
        except OSError:
            return 0

    seen = stamp()
    refused = fail_first or refusal() is not None
    token = str((stored_login() or {}).get("accessToken", ""))
    shown = refused
    emit(("\x1b[2K" + TUI_NOT_LOGGED_IN if refused else "status: ready") + "\r\n")
    while True:
        try:
            line = sys.stdin.readline()
        except InterruptedError:
            continue
        if not line or line.strip() == "quit":
            break
        if stamp() != seen:  # re-read a changed file, as Claude Code does (docs/protocol.md 5)
            seen = stamp()
            refused = refusal() is not None
            token = str((stored_login() or {}).get("accessToken", ""))
        usable = None if refused else usable_token(token)
        if refused:
            emit("Please run /login \xb7 API Error: 401 OAuth token has expired.\r\n")
        elif usable is None:
            emit(REVOKED_TUI + "\r\n")
        else:
            token = usable
            emit(f"answer: {line.strip()} with {token[-9:]}\r\n")
        emit(("\x1b[2K" + TUI_NOT_LOGGED_IN if shown else "status: ready") + "\r\n")
    if os.environ.get("FAKE_CLAUDE_EXIT"):
        return int(os.environ["FAKE_CLAUDE_EXIT"])
    return 0


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


def _record_run(record: str, run_no: int, stdin: bytes, oauth: dict[str, object]) -> None:
    """One line for the test to read: how we were run, and with which login."""
    env = os.environ
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


def _auth_status(oauth: dict[str, object]) -> int:
    """`claude auth status`: logged in unless the stored login would be refused."""
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


def _echo_stream(session: str) -> int:
    """--input-format stream-json: an answer for each prompt line, the stored login read anew."""
    stream_line({"type": "system", "subtype": "init", "session_id": session})
    for line in sys.stdin or ():
        message = {"model": "claude-sonnet-4-5", "content": [{"text": "echo " + line.strip()}]}
        # Like the real one, it reads the stored login again for each prompt; what it found
        # goes in a field of our own (tests of the guard look, no wording is invented).
        now = stored_login() or {}
        token = str(now.get("accessToken", ""))
        problem = refusal()
        if problem is None and usable_token(token) is None:
            problem = REVOKED_PRINT
        seen = {"problem": problem, "access_tail": token[-9:]}
        stream_line({"type": "assistant", "message": message, "fake_login": seen})
    stream_line({"type": "result", "is_error": False, "result": "bye"})
    return 0


def _print_bytes(remaining: int) -> int:
    """FAKE_CLAUDE_BYTES: that many bytes of output, in 64 KiB lines."""
    block = b"y" * 65535 + b"\n"
    out = sys.stdout.buffer
    while remaining > 0:
        chunk = block[: min(remaining, len(block))]
        out.write(chunk)
        remaining -= len(chunk)
    out.flush()
    return 0


def _stream_lines(lines: int, session: str) -> int:
    """FAKE_CLAUDE_LINES with --output-format stream-json: one message a line, each acknowledged."""
    stream_line({"type": "system", "subtype": "init", "session_id": session})
    for i in range(lines):
        stream_line(
            {
                "type": "assistant",
                "message": {"model": "claude-sonnet-4-5", "content": [{"text": str(i)}]},
            }
        )
        wait_ack(i)
    stream_line({"type": "result", "is_error": False, "result": "done"})
    return 0


def _problem(run_no: int, token: str) -> str | None:
    """What this run says instead of answering: the stored login's refusal, the revoked token's
    (`token`, read at the start, and the file's, re-read once), or, for the first
    FAKE_CLAUDE_FAIL_FIRST runs, FAKE_CLAUDE_FAIL_MESSAGE's line for this run."""
    env = os.environ
    problem = refusal()
    if problem is None and usable_token(token) is None:
        problem = REVOKED_PRINT
    if run_no <= int(env.get("FAKE_CLAUDE_FAIL_FIRST") or 0):
        messages = (env.get("FAKE_CLAUDE_FAIL_MESSAGE") or NOT_LOGGED_IN).split("\n")
        problem = messages[min(run_no, len(messages)) - 1]  # one per run, the last repeated
    return problem


def _print_lines(lines: int) -> None:
    """FAKE_CLAUDE_LINES as text: each line stamped with its time, acknowledged, then a pause."""
    env = os.environ
    for i in range(lines):
        emit(f"line {i} {time.time():.6f}\n")
        wait_ack(i)
        time.sleep(float(env.get("FAKE_CLAUDE_LINE_DELAY") or 0))


def _answer_text(args: list[str], stdin: bytes) -> str:
    """The answer of a --print run: what it was given (or a quote of the failure's words)."""
    env = os.environ
    return (
        f"fake answer: quoting '{NOT_LOGGED_IN}' from the docs"
        if env.get("FAKE_CLAUDE_QUOTE")
        else f"fake answer: argv={json.dumps(args)} active={env.get('CLAUDE_WRAP_ACTIVE')} "
        f"stdin={len(stdin)}:{hashlib.sha256(stdin).hexdigest()[:16]}"
    )


def _start_grandchild(pid_file: str) -> None:
    """A grandchild that outlives us (it holds our output open), its pid in `pid_file`."""
    child = subprocess.Popen(["sleep", "300"])
    with open(pid_file, "w", encoding="utf-8") as f:
        f.write(str(child.pid))


def _exit_status() -> int:
    """How an answered run ends: by FAKE_CLAUDE_SIGNAL, with FAKE_CLAUDE_EXIT, or 0."""
    env = os.environ
    if env.get("FAKE_CLAUDE_SIGNAL"):
        os.kill(os.getpid(), int(env["FAKE_CLAUDE_SIGNAL"]))
    if env.get("FAKE_CLAUDE_EXIT"):
        return int(env["FAKE_CLAUDE_EXIT"])
    return 0


def main() -> int:
    args = sys.argv[1:]
    env = os.environ
    if "--version" in args or "-v" in args:
        wanted = env.get("FAKE_CLAUDE_VERSION")
        emit((f"{wanted} (Claude Code)" if wanted else VERSION) + "\n")
        return 0
    if env.get("FAKE_CLAUDE_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run_no = bump_counter()
    print_mode = "-p" in args or "--print" in args
    stdin = b""
    streaming_in = option(args, "--input-format", "text") == "stream-json"
    # No sys.stdin when fd 0 is closed: as empty input.
    if print_mode and sys.stdin is not None and not sys.stdin.isatty() and not streaming_in:
        stdin = sys.stdin.buffer.read()
    oauth = stored_login() or {}
    record = env.get("FAKE_CLAUDE_RECORD")
    if record:
        _record_run(record, run_no, stdin, oauth)
    if env.get("FAKE_CLAUDE_GRANDCHILD"):
        _start_grandchild(env["FAKE_CLAUDE_GRANDCHILD"])
    if env.get("FAKE_CLAUDE_SLEEP"):
        time.sleep(float(env["FAKE_CLAUDE_SLEEP"]))

    fmt = option(args, "--output-format", "text")
    session = str(uuid.uuid4())
    if args[:2] == ["auth", "status"]:
        return _auth_status(oauth)

    if env.get("FAKE_CLAUDE_TUI") and not print_mode:
        return tui(run_no)
    # Only a call to the API finds a revoked token: --print, not an interactive run that sends
    # no prompt, nor an editor's session (which asks for each prompt, in _echo_stream).
    asks = print_mode and not streaming_in
    problem = _problem(run_no, str(oauth.get("accessToken") or "") if asks else "")
    if env.get("FAKE_CLAUDE_STDERR") and print_mode:
        sys.stderr.write(env["FAKE_CLAUDE_STDERR"])
        sys.stderr.flush()
    if problem is not None and print_mode:
        return fail(fmt, problem, session)
    if print_mode and streaming_in:
        return _echo_stream(session)

    if print_mode:
        if env.get("FAKE_CLAUDE_BYTES"):
            return _print_bytes(int(env["FAKE_CLAUDE_BYTES"]))
        lines = int(env.get("FAKE_CLAUDE_LINES") or 0)
        if fmt == "stream-json" and lines:
            return _stream_lines(lines, session)
        _print_lines(lines)
        answer(fmt, _answer_text(args, stdin), session)
    else:
        emit(f"fake claude: argv={json.dumps(args)} active={env.get('CLAUDE_WRAP_ACTIVE')}\n")
    return _exit_status()


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # die by it, as the real binary does
    sys.exit(main())

"""detect.py: the pure judges of claude's output, fed the shapes of docs/protocol.md section 6
at every chunk boundary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from claude_wrap.watch import detect

NLI = "Not logged in · Please run /login"
E401 = (
    'Failed to authenticate. API Error: 401 {"type":"error","error":{"type":"authentication_error",'
    '"message":"OAuth token has expired. Please obtain a new token or refresh your existing '
    'token."}}'
)


def compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def json_failure(message: str = NLI) -> bytes:
    return compact(
        {
            "type": "result",
            "subtype": "success",
            "is_error": True,
            "duration_ms": 12,
            "num_turns": 1,
            "result": message,
            "session_id": "s",
            "total_cost_usd": 0,
        }
    )


INIT = compact({"type": "system", "subtype": "init", "cwd": "/tmp", "session_id": "s"})


def synthetic(message: str = NLI, model: str = "<synthetic>", error: str | None = None) -> bytes:
    obj: dict[str, object] = {
        "type": "assistant",
        "message": {
            "model": model,
            "role": "assistant",
            "content": [{"type": "text", "text": message}],
        },
        "session_id": "s",
    }
    if error:
        obj["error"] = error
    return compact(obj)


def stream_failure(message: str = NLI) -> bytes:
    return (
        INIT
        + synthetic(message, error="authentication_failed")
        + compact({"type": "result", "is_error": True, "result": message})
    )


AUTH_RETRY = compact(
    {
        "type": "system",
        "subtype": "api_retry",
        "error_status": 401,
        "error": "authentication_failed",
    }
)

FAILURES = {
    "text": (NLI + "\n").encode(),
    "text-401": (E401 + "\n").encode(),
    "text-revoked": b"OAuth token revoked \xc2\xb7 Please run /login\n",
    "text-no-newline": NLI.encode(),
    "json": json_failure(),
    "json-spaced": json.dumps({"type": "result", "is_error": True, "result": NLI}).encode() + b"\n",
    "stream-json": stream_failure(),
    "stream-json-401": INIT + AUTH_RETRY + AUTH_RETRY + stream_failure(E401)[len(INIT) :],
}


def split_everywhere(data: bytes) -> list[list[bytes]]:
    return [[data[:i], data[i:]] for i in range(len(data) + 1)]


def judge(chunks: list[bytes], status: int) -> tuple[str, bytes]:
    watch = detect.Watch()
    out = b"".join(watch.feed(c) for c in chunks)
    verdict = watch.finish(status)
    if verdict == detect.Output.HEALTHY:
        out += watch.release()
    return verdict, out


@pytest.mark.parametrize("name", FAILURES)
def test_a_failure_is_held_whole_and_recognised_at_every_split(name: str) -> None:
    data = FAILURES[name]
    for chunks in [*split_everywhere(data), [bytes([b]) for b in data]]:
        watch = detect.Watch()
        released = b"".join(watch.feed(c) for c in chunks)
        assert released == b"", (name, chunks)
        assert watch.finish(1) == detect.Output.FAILURE, (name, chunks)
        assert watch.release() == data


@pytest.mark.parametrize("name", FAILURES)
def test_the_same_output_with_exit_0_is_healthy_and_passes_unchanged(name: str) -> None:
    assert judge([FAILURES[name]], 0) == (detect.Output.HEALTHY, FAILURES[name])


@pytest.mark.parametrize(
    "data",
    [
        # quoting the phrase inside an answer
        f"The docs say '{NLI}' when you are logged out.\n".encode(),
        (NLI + "\nand then some more text\n").encode(),
        # json: is_error false
        compact({"type": "result", "is_error": False, "result": NLI}),
        # json: an error that is not a login failure
        compact(
            {"type": "result", "is_error": True, "result": "Invalid API key · Fix external API key"}
        ),
        # stream-json: the phrase inside a real model's message
        INIT
        + synthetic(NLI, model="claude-sonnet-4-5")
        + compact({"type": "result", "is_error": True, "result": NLI}),
        # stream-json: a fourth line after the failure
        stream_failure() + compact({"type": "rate_limit_event"}),
        # stream-json: the result says no error
        INIT
        + synthetic(error="authentication_failed")
        + compact({"type": "result", "is_error": False}),
        # stream-json: claude retrying an overloaded API is progress, not a login failure
        INIT
        + compact(
            {"type": "system", "subtype": "api_retry", "error_status": 529, "error": "overloaded"}
        )
        + synthetic(error="authentication_failed")
        + compact({"type": "result", "is_error": True, "result": NLI}),
        # not JSON after all
        b"{not json\n",
        b"",
    ],
)
def test_runs_that_only_look_like_a_failure_are_healthy_even_with_exit_1(data: bytes) -> None:
    for chunks in split_everywhere(data):
        assert judge(chunks, 1) == (detect.Output.HEALTHY, data)


def test_healthy_text_goes_through_from_the_first_byte() -> None:
    watch = detect.Watch()
    assert watch.feed(b"f") == b"f"
    assert watch.feed(b"ake answer\n") == b"ake answer\n"


def test_text_that_starts_like_the_failure_is_held_only_until_it_cannot_be_one() -> None:
    watch = detect.Watch()
    assert watch.feed(b"Not logged") == b""
    assert watch.feed(b" in \xc2\xb7 Please run /login") == b""
    # A complete failure line is still a candidate until more output or the exit...
    assert watch.feed(b"\n") == b""
    # ...and anything more means it was not the failure: everything goes, at once.
    assert watch.feed(b"x") == (NLI + "\nx").encode()
    assert watch.feed(b"y") == b"y"


def test_stream_json_init_is_held_only_until_the_next_line_shows_a_real_model() -> None:
    watch = detect.Watch()
    assert watch.feed(INIT) == b""
    answer = synthetic("hello", model="claude-sonnet-4-5")
    assert watch.feed(answer[:10]) == b""
    assert watch.feed(answer[10:]) == INIT + answer
    line = compact({"type": "result", "is_error": False, "result": "hello"})
    assert watch.feed(line) == line


def test_a_huge_first_line_is_released_past_the_bound() -> None:
    watch = detect.Watch()
    assert watch.feed(b"{" + b"x" * detect.MAX_HOLD) != b""


def test_is_failure_text() -> None:
    assert detect.is_failure_text(NLI)
    assert detect.is_failure_text(E401)
    assert detect.is_failure_text("Login expired · Please run /login")
    assert not detect.is_failure_text("Not logged in, says the manual")
    assert not detect.is_failure_text("Invalid API key · Fix external API key")
    assert detect.needs_force(E401) and not detect.needs_force(NLI)


# --- the TUI -------------------------------------------------------------------------------------

TUI_STATUS = (
    b"\x1b[2K\x1b[38;5;246mNot\x1b[97Glogged\x1b[104Gin\x1b[107G\xc2\xb7\x1b[109GRun"
    b"\x1b[113G/login\x1b[39m\r\n"
)


def test_tui_status_line_is_found_with_escapes_and_whitespace_ignored_at_every_split() -> None:
    noise = b"\x1b]0;claude\x07\x1b[?25l> type here\x1b[1;1H"
    data = noise + TUI_STATUS + noise
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1, 7):
            matcher = detect.TuiMatcher()
            found = [matcher.feed(c) for c in (data[:i], data[i:j], data[j:])]
            assert [f for f in found if f] == ["notloggedin·run/login"], (i, j)


def test_tui_one_drawing_is_one_match_and_a_redraw_is_another() -> None:
    matcher = detect.TuiMatcher()
    assert matcher.feed(TUI_STATUS) is not None
    assert matcher.feed(b"\x1b[5G") is None
    assert matcher.feed(TUI_STATUS) is not None


def test_tui_401_and_plain_text_forms() -> None:
    matcher = detect.TuiMatcher()
    assert matcher.feed(b"Please run /login \xc2\xb7 API Error: 401 {...}") == (
        "pleaserun/login·apierror:401"
    )
    assert detect.TuiMatcher().feed(b"I am logged in, all fine \xc2\xb7 Run things") is None


# --- the real binary's own output, every version (recorded by the e2e harness) ---------------

SAMPLES = Path(__file__).resolve().parents[1] / "e2e" / "samples"
FAILED_NAMES = (
    "print_logged_out.txt",
    "print_expired_401.txt",
    "print_logged_out.json",
    "print_logged_out.stream.jsonl",
    "print_logged_out.stream-in.jsonl",
    "print_invalid_grant.txt",
    # captured for this module (2.1.197): a 401 in stream-json has api_retry lines first
    "print_expired_401.stream.jsonl",
)
VERSIONS = sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())
FAILED_SAMPLES = [
    f"{version}/{name}" for version in VERSIONS for name in FAILED_NAMES
    if (SAMPLES / version / name).exists()
]
OK_SAMPLES = [f"{v}/print_ok.stream.jsonl" for v in VERSIONS
              if (SAMPLES / v / "print_ok.stream.jsonl").exists()]
TUI_SAMPLES = [f"{v}/tui_logged_out.bin" for v in VERSIONS
               if (SAMPLES / v / "tui_logged_out.bin").exists()]


def test_every_version_of_the_matrix_has_samples() -> None:
    from claude_wrap.config.versions import TESTED

    for version in TESTED:
        assert f"{version}/print_logged_out.txt" in FAILED_SAMPLES
        assert f"{version}/print_ok.stream.jsonl" in OK_SAMPLES
        assert f"{version}/tui_logged_out.bin" in TUI_SAMPLES


@pytest.mark.parametrize("name", FAILED_SAMPLES)
def test_the_real_binarys_failures_are_recognised(name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    for size in (1, 7, 100, len(data)):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert judge(chunks, 1) == (detect.Output.FAILURE, b""), size
        assert judge(chunks, 0) == (detect.Output.HEALTHY, data)


@pytest.mark.parametrize("name", OK_SAMPLES)
def test_the_real_binarys_healthy_stream_goes_through_once_the_model_answers(name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    init, *rest = data.splitlines(keepends=True)
    watch = detect.Watch()
    assert watch.feed(init) == b""
    out = b"".join(watch.feed(line) for line in rest)
    assert out == data  # init included, released once a real model's message came
    assert watch.finish(0) == detect.Output.HEALTHY


@pytest.mark.parametrize("name", TUI_SAMPLES)
def test_the_real_tui_status_line_is_found_in_any_chunking(name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    for size in (1, 3, 64, 1000, len(data)):
        matcher = detect.TuiMatcher()
        found = [m for i in range(0, len(data), size) if (m := matcher.feed(data[i : i + size]))]
        # One match per drawing of the status line (2.1.87's sample draws it twice).
        drawings = len(re.findall(rb"Not(?:\x1b\[\d+[GC]| )logged", data))
        # (a chunk holding two drawings reports the first: one repair either way)
        assert 1 <= len(found) <= drawings, size
        assert set(found) == {"notloggedin·run/login"}, size


# --- 2.1.332's wordings (docs/protocol.md section 9) ----------------------------------------------

WORDINGS_2_1_332 = (
    "Failed to authenticate: OAuth session expired and could not be refreshed",
    "OAuth refresh token is no longer valid; run /login to re-authenticate",
    "Your session has expired. Please run /login to sign in again.",
    "Session expired. Please run /login to sign in again.",
    "Login expired · Please run /login",
)
# What detect.BUSY_LOCK used to say: the error class's message, never printed (section 10).
NEVER_PRINTED = (
    "OAuth access token could not be refreshed: another Claude Code process is holding the "
    "refresh lock"
)


@pytest.mark.parametrize("text", WORDINGS_2_1_332)
def test_the_newest_wordings_are_login_failures_in_text_json_and_the_tui(text: str) -> None:
    assert detect.is_failure_text(text)
    assert detect.is_failure_text(text.upper())  # case-tolerant
    assert not detect.needs_force(text)  # a re-read or a due refresh may fix these locally
    line = (text + "\n").encode()
    assert judge([line], 1) == (detect.Output.FAILURE, b"")
    assert judge([line], 0) == (detect.Output.HEALTHY, line)
    result = compact({"type": "result", "subtype": "success", "is_error": True, "result": text})
    assert judge([result], 1) == (detect.Output.FAILURE, b"")
    # The TUI, with real spaces inside colour escapes as 2.1.332 draws its status line.
    drawn = b"\x1b[38;5;211m" + text.encode().replace(b" ", b"\x1b[39m \x1b[38;5;211m")
    assert detect.TuiMatcher().feed(drawn + b"\x1b[39m\r\n") is not None


@pytest.mark.parametrize(
    "text",
    [
        NEVER_PRINTED,
        "Your session has expired. Please run /login to sign in again. Said the manual, once.",
        "The docs say: Failed to authenticate: OAuth session expired and could not be refreshed",
        "Session expired is a phrase; so is run /login",
    ],
)
def test_a_busy_lock_and_quotes_of_the_newest_wordings_are_not_failures(text: str) -> None:
    line = (text + "\n").encode()
    assert judge([line], 1) == (detect.Output.HEALTHY, line)


def test_a_json_result_with_api_status_401_is_a_failure_whatever_its_wording() -> None:
    result = compact({"type": "result", "is_error": True, "api_error_status": 401,
                      "terminal_reason": "api_error", "result": "API Error: something new"})
    assert judge([result], 1) == (detect.Output.FAILURE, b"")
    healthy = compact({"type": "result", "is_error": False, "api_error_status": None,
                       "result": "Session expired. Please run /login to sign in again."})
    assert judge([healthy], 0) == (detect.Output.HEALTHY, healthy)


# --- docs/protocol.md section 10: the forms of 2.1.332 and 2.1.337, structural signals first ------

BUSY_PRINT = (
    "Failed to refresh OAuth token: another Claude Code process is refreshing it or exited "
    "mid-refresh. This is usually transient; retry in a minute, and if it persists close other "
    "Claude Code processes or sign in again"
)
BUSY_TUI = (
    "Could not refresh your login because another Claude Code process is refreshing it (or "
    "exited mid-refresh) \u00b7 Try again in a minute; if it keeps happening, close other Claude "
    "Code windows or sign in again with /login"
)
REVOKED_PRINT = (
    "Failed to authenticate: OAuth token revoked. Please log in again or contact your "
    "administrator."
)
TIME_LIMIT = (
    "Login reached its time limit \u00b7 Please run /login",
    "Failed to authenticate: this login reached its time limit and cannot be renewed. Run "
    "`claude auth login` to sign in again, or use `claude setup-token` and set "
    "CLAUDE_CODE_OAUTH_TOKEN for unattended jobs",
    "Failed to authenticate: this login reached its time limit \u00b7 Sign in again to continue",
)
# Organization ("hybrid" / gateway) sign-ins: read in 2.1.337's bundle only.
ORGANIZATION = (
    "Not logged in \u00b7 Run /status for details",
    "Not logged in \u00b7 /status",
    "No usable connection \u00b7 /status",
    "Not signed in to gateway \u00b7 /login",
    "Run /status for details \u00b7 API Error: 401 OAuth token has expired.",
)


def stream_of(message: str, error: str, **top: object) -> bytes:
    synthetic_line = json.loads(synthetic(message, error=error))
    synthetic_line.update(top)
    result = {"type": "result", "subtype": "success", "is_error": True, "result": message, **top}
    return INIT + compact(synthetic_line) + compact(result)


def test_the_printed_busy_forms_are_busy_never_failures() -> None:
    for text in (BUSY_PRINT, BUSY_TUI):
        assert detect.is_busy_lock(text)
        assert detect.is_busy_lock(text.upper())
        assert not detect.is_failure_text(text)
    assert not detect.is_busy_lock(NEVER_PRINTED)
    assert not detect.is_busy_lock("The manual says: " + BUSY_PRINT)


@pytest.mark.parametrize(
    "data",
    [
        (BUSY_PRINT + "\n").encode(),
        json_failure(BUSY_PRINT),
        # stream-json: a synthetic line tagged as a server error; only its text says "busy"
        stream_of(BUSY_PRINT, "server_error"),
    ],
    ids=["text", "json", "stream-json"],
)
def test_a_busy_lock_is_held_whole_and_judged_busy_at_every_split(data: bytes) -> None:
    for chunks in [*split_everywhere(data), [bytes([b]) for b in data]]:
        watch = detect.Watch()
        assert b"".join(watch.feed(c) for c in chunks) == b"", chunks
        assert watch.finish(1) == detect.Output.BUSY, chunks
        assert watch.message == BUSY_PRINT
        assert watch.release() == data
    assert judge([data], 0) == (detect.Output.HEALTHY, data)


def test_an_ordinary_server_error_is_not_a_busy_lock() -> None:
    data = stream_of("API Error: 500 Internal server error", "server_error")
    assert judge([data], 1) == (detect.Output.HEALTHY, data)
    data = stream_of("API Error: 529 Overloaded", "server_error")
    assert judge([data], 1) == (detect.Output.HEALTHY, data)
    # a busy synthetic line whose result says something else is no busy lock either
    mixed = INIT + synthetic(BUSY_PRINT, error="server_error") + json_failure("API Error: 500")
    assert judge([mixed], 1) == (detect.Output.HEALTHY, mixed)


def test_the_revoked_print_form_is_a_failure_to_repair_with_a_new_token() -> None:
    assert detect.is_failure_text(REVOKED_PRINT)
    assert detect.needs_force(REVOKED_PRINT)
    for data in ((REVOKED_PRINT + "\n").encode(), json_failure(REVOKED_PRINT),
                 stream_of(REVOKED_PRINT, "authentication_failed")):
        assert judge([data], 1) == (detect.Output.FAILURE, b"")
    assert detect.TuiMatcher().feed(REVOKED_PRINT.encode()) is not None


@pytest.mark.parametrize("text", TIME_LIMIT + ORGANIZATION)
def test_the_time_limit_and_organization_forms_go_through_whatever_their_tags(text: str) -> None:
    assert not detect.is_failure_text(text)
    assert detect.is_beyond_refresh(text)
    assert not detect.is_busy_lock(text)
    for data in (
        (text + "\n").encode(),
        json_failure(text),
        # 2.1.332 tags the time limit `authentication_failed`, like a login to repair
        stream_of(text, "authentication_failed"),
        compact({"type": "result", "is_error": True, "api_error_status": 401, "result": text}),
    ):
        for chunks in split_everywhere(data):
            assert judge(chunks, 1) == (detect.Output.HEALTHY, data)
    drawn = b"\x1b[38;5;211m" + text.encode().replace(b" ", b"\x1b[39m \x1b[38;5;211m")
    assert detect.TuiMatcher().feed(drawn + b"\x1b[39m\r\n") is None


def test_the_tui_busy_form_starts_no_repair() -> None:
    assert detect.TuiMatcher().feed(BUSY_TUI.encode()) is None


@pytest.mark.parametrize("value", ["no_credential", "token_revoked"])
def test_api_error_of_a_login_is_a_failure_whatever_the_wording(value: str) -> None:
    result = compact({"type": "result", "is_error": True, "api_error": value,
                      "result": "Something worded anew"})
    assert judge([result], 1) == (detect.Output.FAILURE, b"")
    stream = stream_of("Something worded anew", "invalid_request", api_error=value)
    assert judge([stream], 1) == (detect.Output.FAILURE, b"")


@pytest.mark.parametrize(
    "value",
    ["login_replaces_organization_sign_in", "check_refused_on_route", "client_certificate",
     "prompt_too_long", "request_too_large", "unexpected_response"],
)
def test_any_other_api_error_is_no_login_failure_whatever_the_wording(value: str) -> None:
    # An organization sign-in worded like the stored login's failure: no refresh fixes it.
    for data in (
        compact({"type": "result", "is_error": True, "api_error": value, "result": NLI}),
        compact({"type": "result", "is_error": True, "api_error": value,
                 "api_error_status": 401, "result": E401}),
        stream_of(NLI, "authentication_failed", api_error=value),
    ):
        assert judge([data], 1) == (detect.Output.HEALTHY, data)


# The same cases run against the real binaries (tests/e2e/test_binary_forms.py), each version in
# each format. The forms of section 10 exist from 2.1.332 on; what the older releases print in
# the same case is judged as what it is.
Output = detect.Output
FORM_VERDICTS = {
    # Busy lock: 2.1.87 and 2.1.197 give up on the lock and answer with the stored token.
    "print_busy_lock": {"2.1.87": (0, Output.HEALTHY), "2.1.197": (0, Output.HEALTHY),
                        "2.1.332": (1, Output.BUSY), "2.1.337": (1, Output.BUSY)},
    # Revoked: every release fails; 2.1.87 and 2.1.197 with the API's 401.
    "print_revoked": {v: (1, Output.FAILURE) for v in ("2.1.87", "2.1.197", "2.1.332", "2.1.337")},
    # The time limit: 2.1.332 and later pass it through (only /login helps); 2.1.197 prints "Not
    # logged in" (it has no such form), 2.1.87 never refreshes on a 401 and prints the 401.
    "print_time_limit": {"2.1.87": (1, Output.FAILURE), "2.1.197": (1, Output.FAILURE),
                         "2.1.332": (1, Output.HEALTHY), "2.1.337": (1, Output.HEALTHY)},
}
FORM_SAMPLES = [
    (f"{version}/{name}.{ext}", status, verdict)
    for name, per_version in FORM_VERDICTS.items()
    for version, (status, verdict) in per_version.items()
    for ext in ("txt", "json", "stream.jsonl")
]


def test_every_version_of_the_matrix_has_the_forms_samples() -> None:
    from claude_wrap.config.versions import TESTED

    for name, per_version in FORM_VERDICTS.items():
        assert set(per_version) == set(TESTED), name
    for sample, _, _ in FORM_SAMPLES:
        assert (SAMPLES / sample).exists(), sample


@pytest.mark.parametrize(("name", "status", "verdict"), FORM_SAMPLES)
def test_the_real_binarys_section_10_forms_are_judged_right(
    name: str, status: int, verdict: str
) -> None:
    data = (SAMPLES / name).read_bytes()
    for size in (1, 7, 100, len(data)):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        watch = detect.Watch()
        out = b"".join(watch.feed(c) for c in chunks)
        assert watch.finish(status) == verdict, size
        out += watch.release()
        assert out == data


TUI_TIME_LIMIT_SAMPLES = [f"{v}/tui_time_limit.bin" for v in ("2.1.332", "2.1.337")]


@pytest.mark.parametrize("name", TUI_TIME_LIMIT_SAMPLES)
def test_the_real_tuis_time_limit_starts_no_repair_of_its_own(name: str) -> None:
    # Recorded by tests/e2e/test_binary_forms.py (2.1.332+ only: older releases have no such
    # form): started on a login marked ended, the TUI draws its logged-out status line (a repair
    # then finds the login beyond refresh and sends nothing), then the time limit after a prompt.
    data = (SAMPLES / name).read_bytes()
    limit_at = data.index(b"Login")
    for size in (1, 3, 64, len(data)):
        matcher = detect.TuiMatcher()
        found = [m for i in range(0, len(data), size) if (m := matcher.feed(data[i : i + size]))]
        assert set(found) <= {"notloggedin·run/login"}, size
    matcher = detect.TuiMatcher()
    assert matcher.feed(data[limit_at - 200 :]) is None  # the time limit's drawing alone


def test_the_headless_403_revoked_form_of_2_1_87_and_2_1_197_is_a_failure() -> None:
    # Issue 26: a guest whose owner rotated meets a 403 "OAuth token has been revoked"; these
    # versions print this (read in their bundles, seen end to end), the organization twin not.
    text = ("Your account does not have access to Claude. Please login again or contact your "
            "administrator.")
    assert detect.is_failure_text(text)
    assert judge([text.encode() + b"\n"], 1) == (detect.Output.FAILURE, b"")
    org = text.replace("Your account", "Your organization")
    assert not detect.is_failure_text(org)
    assert not detect.is_failure_text("A note: " + text)

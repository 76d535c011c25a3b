"""Parts of the soak that need no process: reading a TUI the way a user does (issue 26), by
bytes. Claude Code redraws only the cells that changed, so an answer one digit away from the one
above it arrives as a cursor move and that digit: the string is on the screen, never in the
bytes. These bytes are of that shape (written by hand, not recorded)."""

from __future__ import annotations

import re

from claude_wrap_testing.soak import TUI_LOGIN_ERROR, Terminal, compressed


def test_an_answer_redrawn_as_one_digit_is_on_the_screen_though_not_in_the_bytes() -> None:
    term = Terminal(rows=10, columns=60)
    # A conversation that fills the window: the last exchange at the bottom.
    term.write(b"\x1b[2J\x1b[H" + b"".join(f"line {i}\r\n".encode() for i in range(6)))
    term.write(b"> soak-ping-11\r\n\xe2\x97\x8f soak-pong-11\r\n")
    term.mark()
    # The next prompt: Claude Code rewrites the two lines in place, changed cells only.
    term.write(b"\x1b[2A\x1b[14G2\r\n\x1b[14G2\r\n")
    answer = re.compile(r"soak-pong-12\b")
    assert term.shows(answer)
    assert b"soak-pong-12" not in term.raw  # what the old driver searched: never there
    assert not term.shows(re.compile(r"soak-pong-11\b"))


def test_a_multibyte_character_split_across_two_reads_is_drawn_whole() -> None:
    term = Terminal(rows=4, columns=40)
    term.write(b"\xe2\x97")
    term.write(b"\x8f soak-pong-3")
    assert term.lines()[0].startswith("\u25cf soak-pong-3")


def test_the_terminal_answers_a_query_as_a_terminal_would() -> None:
    answers: list[str] = []
    term = Terminal(rows=4, columns=40, answer=answers.append)
    term.write(b"abc\x1b[6n")  # where is the cursor?
    assert answers == ["\x1b[1;4R"]


def test_a_login_error_is_judged_below_the_prompt_only() -> None:
    term = Terminal(rows=6, columns=80)
    term.write(b"> soak-ping-1\r\n  OAuth token revoked \xc2\xb7 Please run /login\r\n"
               b"> soak-ping-2\r\n")
    assert any(TUI_LOGIN_ERROR.search(line) for line in term.below("soak-ping-1"))
    assert not any(TUI_LOGIN_ERROR.search(line) for line in term.below("soak-ping-2"))


def test_docs_guests_min_valid_compressed_lies_between_the_buffer_and_the_lifetime() -> None:
    assert compressed(300.0, 10.0) == 300.0
    assert 300.3 < compressed(1200.0, 10.0) < 300.4


def test_the_soaks_forced_command_compresses_only_the_guests_margin() -> None:
    from claude_wrap_testing.soakowner import compress

    assert compress("claude-wrap token --json --min-valid 600", 0.105) == (
        "claude-wrap token --json --min-valid 300.105"
    )
    assert compress("claude-wrap token --json --min-valid=900", 0.1) == (
        "claude-wrap token --json --min-valid=600.100"
    )
    assert compress("claude-wrap token --json --follow", 0.1) == (
        "claude-wrap token --json --follow"
    )
    assert compress("claude-wrap token --min-valid x; rm -rf /", 0.1) == (
        "claude-wrap token --min-valid x; rm -rf /"
    )

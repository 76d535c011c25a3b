"""What a guest may ask the forced command `token --json --for-guest` (guests/push.py): read
strictly from SSH_ORIGINAL_COMMAND, anything else refused in one line that never echoes more
than a word."""

from __future__ import annotations

import pytest

from claude_wrap.errors import SettingError
from claude_wrap.guests.push import Request, parse_request


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        (None, Request(follow=False, min_valid=None)),
        ("", Request(follow=False, min_valid=None)),
        ("claude-wrap token --json --follow", Request(follow=True, min_valid=None)),
        ("claude-wrap token --json --min-valid 1200", Request(follow=False, min_valid=1200.0)),
        ("/home/me/.local/bin/claude-wrap token --min-valid=0", Request(False, 0.0)),
        ("--follow", Request(follow=True, min_valid=None)),
        ("  claude-wrap   token\t--json  ", Request(follow=False, min_valid=None)),
    ],
)
def test_what_a_guest_may_ask(asked: str | None, expected: Request) -> None:
    assert parse_request(asked) == expected


@pytest.mark.parametrize(
    ("asked", "named"),
    [
        ("sh -c id", "'sh'"),
        ("claude-wrap refresh --force", "'refresh'"),
        ("claude-wrap", "'claude-wrap'"),
        ("claude-wrap token --follow --min-valid 5", "'--min-valid'"),
        ("claude-wrap token --min-valid 5 --follow", "'--min-valid'"),
        ("claude-wrap token --min-valid", "''"),
        ("claude-wrap token --min-valid -1", "'-1'"),
        ("claude-wrap token --min-valid nan", "'nan'"),
        ("claude-wrap token --min-valid 43201", "'43201'"),
        ("claude-wrap token --min-valid 1 --min-valid 2", "'--min-valid'"),
        ("claude-wrap token --json; rm -rf ~", "'--json;'"),
        ("claude-wrap token " + "x" * 500, "'" + "x" * 40 + "'"),
    ],
)
def test_anything_else_is_one_line_naming_one_word(asked: str, named: str) -> None:
    with pytest.raises(SettingError) as caught:
        parse_request(asked)
    text = str(caught.value)
    assert "\n" not in text and named in text
    assert len(text) < 200

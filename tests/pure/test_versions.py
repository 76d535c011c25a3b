"""The version matrix (claude_wrap/versions.py) and how the e2e suite chooses its versions."""

from __future__ import annotations

import pytest

from claude_wrap.config import versions
from claude_wrap_testing.install import InstallError, e2e_versions
from tests.e2e import compat


def test_the_matrix_is_oldest_to_newest_and_parses() -> None:
    parsed = [versions.parse(v) for v in versions.TESTED]
    assert None not in parsed
    assert versions.newest_tested() == "2.1.337"
    assert versions.parse("2.1.332 (Claude Code)") == (2, 1, 332)
    assert versions.parse("Claude Code") is None


def test_the_knob_chooses_versions_in_order_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAUDE_WRAP_E2E_VERSIONS", raising=False)
    assert e2e_versions() == versions.TESTED
    monkeypatch.setenv("CLAUDE_WRAP_E2E_VERSIONS", " 2.1.332, 2.1.87,2.1.332,")
    assert e2e_versions() == ("2.1.332", "2.1.87")
    monkeypatch.setenv("CLAUDE_WRAP_E2E_VERSIONS", "2.1.332,newest")
    with pytest.raises(InstallError, match="'newest' is neither a version"):
        e2e_versions()


def test_compat_rows_name_the_output_format_of_a_case() -> None:
    name = "test_a_token_the_server_refuses_is_refreshed_and_the_run_retried"
    assert compat.capability(name, "2.1.332-stream-json-in") == (
        "401 mid-run: repaired and retried (stream-json-in)"
    )
    assert compat.capability(name, "2.1.332-json").endswith("(json)")
    assert compat.capability(name, "2.1.332-text").endswith("(text)")
    assert compat.capability("test_something_new", "2.1.332") == compat.OTHER


def test_compat_table_fails_a_capability_when_any_of_its_cases_failed() -> None:
    outcomes = [
        {"capability": "TUI repair in place", "version": "2.1.332", "outcome": "passed"},
        {"capability": "TUI repair in place", "version": "2.1.332", "outcome": "failed"},
        {"capability": "TUI repair in place", "version": "2.1.197", "outcome": "passed"},
    ]
    text, ok = compat.table(outcomes, ["2.1.197", "2.1.332"])
    assert not ok
    [row] = [line for line in text.splitlines() if line.startswith("TUI repair")]
    assert row.split()[-2:] == ["PASS", "FAIL"]
    _text, ok = compat.table(outcomes[:1], ["2.1.332"])
    assert ok

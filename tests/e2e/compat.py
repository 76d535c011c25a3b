"""`scripts/compat [VERSION|latest ...]`: is a Claude Code release supported? One table.

It runs the end-to-end suite (tests/e2e) against the versions given (default: the matrix,
claude_wrap/versions.py TESTED) through CLAUDE_WRAP_E2E_VERSIONS, with this module loaded as a
pytest plugin that records each case's outcome and version into a JSON report; then it prints one
row per capability a user cares about and one column per version: PASS, FAIL, or `-` (no case
ran). Exit status 1 when anything failed, 2 when pytest itself could not run.

The soak (minutes long) is left out unless `--soak` is given. Cases are mapped to capabilities by
test function name (CAPABILITIES); a case mapped to none lands in the row "other e2e cases", so a
new test is never silently left out of the verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REPORT_OPTION = "--compat-report"
OTHER = "other e2e cases"

# Test function name -> capability; a `{output}` in a capability is filled from the case's id.
CAPABILITIES: dict[str, str] = {
    "test_the_pinned_binary_runs": "binary installs and runs (--version)",
    # What the binary prints when it refuses a login: the forms the watcher must recognise.
    "test_auth_status_without_scopes_is_logged_out": "login failure read (auth status)",
    "test_auth_status_with_scopes_is_logged_in": "login failure read (auth status)",
    "test_print_with_scopes_answers_with_the_stored_token": "login failure read (text)",
    "test_print_without_scopes_says_not_logged_in": "login failure read (text)",
    "test_print_with_a_token_the_api_calls_expired": "login failure read (text)",
    "test_print_json_without_scopes": "login failure read (json)",
    "test_stream_json_without_scopes_is_three_lines": "login failure read (stream-json)",
    "test_stream_json_with_scopes_is_a_healthy_run": "login failure read (stream-json)",
    "test_tui_without_scopes_shows_not_logged_in": "login failure read (TUI)",
    # The binary's own refresh, as protocol.md says (what claude-wrap interoperates with).
    "test_expired_login_is_refreshed_by_claude_itself": "its own refresh (protocol facts)",
    "test_a_401_makes_it_refresh_a_token_it_thought_valid": "its own refresh (protocol facts)",
    "test_invalid_grant_blanks_the_login": "its own refresh (protocol facts)",
    "test_a_failed_refresh_keeps_the_file_and_spends_the_token_again":
        "its own refresh (protocol facts)",
    # Through the shim.
    "test_auth_status_logged_out_directly_logged_in_through_the_shim":
        "logged-out repair (auth status)",
    "test_print_through_the_shim_answers_with_the_refreshed_token":
        "expired/no-scopes refresh before --print ({output})",
    "test_invalid_grant_leaves_the_file_and_claude_speaks_for_itself":
        "invalid_grant leaves the file",
    "test_parallel_runs_make_one_token_request": "herd of runs = one token request",
    "test_a_token_the_server_refuses_is_refreshed_and_the_run_retried":
        "401 mid-run: repaired and retried ({output})",
    "test_scopes_lost_after_the_preflight_are_repaired_and_the_run_retried":
        "login lost after pre-flight: retried ({output})",
    "test_a_failed_repair_leaves_the_real_output_and_status_with_one_line":
        "failed repair: real output, one line",
    "test_a_login_the_preflight_could_not_repair_is_not_tried_again":
        "failed repair: real output, one line",
    "test_the_tui_is_repaired_in_place_and_its_next_prompt_works": "TUI repair in place",
    "test_the_tui_started_logged_out_is_repaired_once_in_place": "TUI repair in place",
    "test_scopes_dropped_during_a_tui_session_are_restored_before_the_next_prompt":
        "TUI repair in place",
    "test_the_demo_shows_the_shim_repairing_a_login": "scripts/demo",
    "test_a_compressed_stretch_of_real_use_logs_nobody_out": "soak (short)",
}
OUTPUTS = ("stream-json-in", "stream-json", "json", "text")  # longest first, for matching
SHOWN = ("text", "json", "stream-json", "stream-json-in")  # the table's order


def capability(name: str, case_id: str) -> str:
    """The row a case belongs to, from its function name and its parameter id."""
    row = CAPABILITIES.get(name, OTHER)
    if "{output}" in row:
        words = case_id.split("-")
        found = next((o for o in OUTPUTS if o in case_id and o.split("-")[0] in words), "text")
        row = row.format(output=found)
    return row


# --- the pytest plugin (`-p tests.e2e.compat`) -----------------------------------------------

_outcomes: list[dict[str, str]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(REPORT_OPTION, default=None, help="write the compat JSON report here")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    callspec = getattr(item, "callspec", None)
    version = callspec.params.get("claude_version") if callspec is not None else None
    if version is None:
        return  # a harness case that runs no binary
    if report.when == "call" or report.outcome != "passed":
        name = getattr(item, "originalname", item.name)
        case_id = callspec.id if callspec is not None else ""
        _outcomes.append({
            "nodeid": item.nodeid, "version": str(version), "when": report.when,
            "outcome": report.outcome, "capability": capability(name, case_id),
        })


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption(REPORT_OPTION)
    if path:
        Path(path).write_text(json.dumps(_outcomes, indent=1))


# --- the command ---------------------------------------------------------------------------


def table(outcomes: list[dict[str, Any]], versions: list[str]) -> tuple[str, bool]:
    """The table, and whether everything that ran passed."""
    verdict: dict[tuple[str, str], str] = {}
    for o in outcomes:
        key = (o["capability"], o["version"])
        if o["outcome"] == "failed":
            verdict[key] = "FAIL"
        elif o["outcome"] == "passed":
            verdict.setdefault(key, "PASS")
        else:
            verdict.setdefault(key, "skip")
    order = list(dict.fromkeys(
        [*(c.format(output=o) if "{output}" in c else c for c in CAPABILITIES.values()
           for o in (SHOWN if "{output}" in c else ("",))), OTHER]
    ))
    rows = [c for c in order if any((c, v) in verdict for v in versions)]
    width = max([len("capability"), *map(len, rows)])
    lines = ["capability".ljust(width) + "".join(f"  {v:>9}" for v in versions)]
    lines.append("-" * len(lines[0]))
    for row in rows:
        lines.append(row.ljust(width) + "".join(
            f"  {verdict.get((row, v), '-'):>9}" for v in versions))
    ok = "FAIL" not in verdict.values() and bool(verdict)
    return "\n".join(lines), ok


def main(argv: list[str]) -> int:
    from .install import InstallError, e2e_versions

    soak = "--soak" in argv
    wanted = [a for a in argv if a != "--soak"]
    if any(a.startswith("-") for a in wanted):
        print("usage: scripts/compat [--soak] [VERSION|latest ...]", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if wanted:
        env["CLAUDE_WRAP_E2E_VERSIONS"] = ",".join(wanted)
    try:
        # `latest` resolved once, here, so the table's columns are the versions pytest runs.
        os.environ.update(env)
        versions = list(e2e_versions())
    except InstallError as exc:
        print(f"compat: {exc}", file=sys.stderr)
        return 2
    env["CLAUDE_WRAP_E2E_VERSIONS"] = ",".join(versions)
    env.pop("CLAUDE_WRAP_SKIP_E2E", None)
    with tempfile.TemporaryDirectory(prefix="claude-wrap-compat-") as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pytest", str(REPO / "tests" / "e2e"), "-q",
                   "-p", "tests.e2e.compat", f"{REPORT_OPTION}={report}", "-o", "addopts=",
                   "-p", "no:cacheprovider"]
        if not soak:
            command += ["--deselect", "tests/e2e/test_soak.py"]
        print(f"compat: the end-to-end suite against {', '.join(versions)} "
              f"(pytest output in {tmp}/pytest.log while it runs)", flush=True)
        with open(Path(tmp) / "pytest.log", "wb") as log:
            done = subprocess.run(command, cwd=REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, check=False)
        if not report.exists():
            print((Path(tmp) / "pytest.log").read_text()[-3000:])
            print(f"compat: pytest wrote no report (exit status {done.returncode})",
                  file=sys.stderr)
            return 2
        outcomes = json.loads(report.read_text())
        text, ok = table(outcomes, versions)
        print(text)
        failed = sorted({o["nodeid"] for o in outcomes if o["outcome"] == "failed"})
        for nodeid in failed:
            print(f"FAILED {nodeid}")
        if done.returncode not in (0, 1):
            print(f"compat: pytest exit status {done.returncode}", file=sys.stderr)
            return 2
        return 0 if ok and done.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

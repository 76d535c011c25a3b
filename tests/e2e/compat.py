"""`scripts/compat [--keep-samples] [--soak] [-k EXPR] [VERSION|latest ...]`: is a Claude Code
release supported? One table, honest for a release this checkout has never seen (issue 28).

It runs the end-to-end suite (tests/e2e) against the versions given (default: the matrix,
claude_wrap/versions.py TESTED) through CLAUDE_WRAP_E2E_VERSIONS, with this module loaded as a
pytest plugin that records each case's outcome and version into a JSON report; then it prints one
row per capability a user cares about and one column per version: PASS, FAIL, SKIP (with the
reason below the table) or `-` (no case ran). Exit status 0 when nothing failed, 1 when anything
did, 2 when pytest itself could not run.

A version without samples in tests/e2e/samples/ (one never recorded here) runs in record mode
into a scratch folder: its cases judge the live output by their own assertions (exit codes,
wordings, line structure), not by comparison with a sample that cannot exist yet, and the
detectors the watcher uses (claude_wrap.watch.detect) are then run over what was recorded: the row
"login failure detected (recorded output)". `--keep-samples` copies the recorded samples into
tests/e2e/samples/<version>/ for the matrix.

System tools the cases drive (sshd for the guests over SSH, …) are installed with apt-get when
missing and compat runs as root, as scripts/test does; otherwise their cases are left out and
their rows say SKIP, naming the package.

The soak (minutes long) is left out unless `--soak` is given. A case belongs to a capability by
its `@pytest.mark.capability("…")` marker, else by its function name (CAPABILITIES); a name in
CAPABILITIES that matches no collected case is reported (a renamed test), and a case mapped to
none lands in the row "other e2e cases", so no test is silently left out of the verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REPORT_OPTION = "--compat-report"
SAMPLES_OPTION = "--compat-samples"
OTHER = "other e2e cases"
DETECTED = "login failure detected (recorded output)"
GUESTS_SSH = "guest over ssh (real sshd)"
# Where the samples of the versions this checkout has seen live; a test points it elsewhere to
# stand for a fresh clone that has never seen a version.
KNOWN_SAMPLES_ENV = "CLAUDE_WRAP_COMPAT_KNOWN_SAMPLES"
# Set to 1: never install a missing tool (a test of the SKIP path, or a machine you keep clean).
NO_INSTALL_ENV = "CLAUDE_WRAP_COMPAT_NO_INSTALL"

# Test function name -> capability, for the cases that carry no `capability` marker (new cases
# should: `@pytest.mark.capability("…")`, as test_repair_real.py does); a `{output}` in a
# capability is filled from the case's id.
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
    # The binary's own refresh, as docs/protocol.md says (what claude-wrap interoperates with).
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
    "test_a_guest_over_ssh_answers_print_with_the_owners_token": GUESTS_SSH,
    "test_a_guest_tui_rolls_over_when_the_owner_rotates_mid_session": GUESTS_SSH,
    "test_a_guest_tui_prompt_right_after_the_owners_rotation_is_answered": GUESTS_SSH,
    "test_a_guest_run_that_meets_a_revoked_token_pulls_at_once_and_is_answered": GUESTS_SSH,
    "test_a_guest_tui_that_meets_a_revoked_token_pulls_at_once": GUESTS_SSH,
    "test_an_execd_command_answers_across_two_rotations": "exec hands over a token",
    "test_a_command_that_chooses_its_own_config_folder_still_gets_the_token":
        "exec hands over a token",
    "test_a_login_rotated_elsewhere_is_said_to_be_spent_by_a_copy": "why a login died",
    "test_a_compressed_stretch_of_real_use_logs_nobody_out": "soak (short)",
}
OUTPUTS = ("stream-json-in", "stream-json", "json", "text")  # longest first, for matching
SHOWN = ("text", "json", "stream-json", "stream-json-in")  # the table's order

# The cases that run a real sshd (node id prefixes: each stands for its case's parameters).
_SSH_CASES = tuple(
    f"tests/e2e/{file}::{name}"
    for file, names in (
        ("test_guests_real.py", ("test_a_guest_over_ssh_answers_print_with_the_owners_token",
                                 "test_a_guest_tui_rolls_over_when_the_owner_rotates_mid_session")),
        ("test_guests_push_real.py", (
            "test_a_guest_tui_prompt_right_after_the_owners_rotation_is_answered",
            "test_a_guest_run_that_meets_a_revoked_token_pulls_at_once_and_is_answered",
            "test_a_guest_tui_that_meets_a_revoked_token_pulls_at_once")),
    )
    for name in names
)
# The system tools the cases drive that a fresh machine may lack: (tool, Debian package, the
# cases that need it, by node id prefix). scripts/test installs the same.
TOOLS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("sshd", "openssh-server", _SSH_CASES),
    ("ssh-keygen", "openssh-client", _SSH_CASES),
)


def capability(name: str, case_id: str, marked: str | None = None) -> str:
    """The row a case belongs to: its marker's, else from its function name; `{output}` from
    its parameter id."""
    row = marked or CAPABILITIES.get(name, OTHER)
    if "{output}" in row:
        words = case_id.split("-")
        found = next((o for o in OUTPUTS if o in case_id and o.split("-")[0] in words), "text")
        row = row.format(output=found)
    return row


# --- the pytest plugin (`-p tests.e2e.compat`) -----------------------------------------------

_outcomes: list[dict[str, str]] = []


_unmatched: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(REPORT_OPTION, default=None, help="write the compat JSON report here")
    parser.addoption(SAMPLES_OPTION, default=None,
                     help="read and record the output samples here instead of tests/e2e/samples")


def pytest_configure(config: pytest.Config) -> None:
    folder = config.getoption(SAMPLES_OPTION)
    if folder:
        # Before the test modules are imported; samples.sample_path reads it at each call.
        from . import samples

        samples.SAMPLES = Path(folder)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Before -k and --deselect take any away: a name no case has is a renamed or removed test.
    names = {getattr(item, "originalname", item.name) for item in items}
    _unmatched.extend(n for n in CAPABILITIES if n not in names)


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
        mark = item.get_closest_marker("capability")
        marked = str(mark.args[0]) if mark is not None and mark.args else None
        _outcomes.append({
            "nodeid": item.nodeid, "version": str(version), "when": report.when,
            "outcome": report.outcome, "capability": capability(name, case_id, marked),
            "reason": _reason(report),
        })


def _reason(report: pytest.TestReport) -> str:
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if report.outcome == "failed":
        text = getattr(report, "longreprtext", "") or ""
        errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
        last = text.strip().splitlines()[-1:]
        return (errors or last or [""])[0][:300]
    return ""


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption(REPORT_OPTION)
    if path:
        Path(path).write_text(json.dumps({"outcomes": _outcomes, "unmatched": _unmatched},
                                         indent=1))


# --- the command ---------------------------------------------------------------------------


def table(
    outcomes: list[dict[str, Any]], versions: list[str],
    skipped: dict[tuple[str, str], str] | None = None,
) -> tuple[str, bool]:
    """The table, and whether nothing failed (and something passed)."""
    text, ok, _ = report_of(outcomes, versions, skipped or {})
    return text, ok


def report_of(
    outcomes: list[dict[str, Any]], versions: list[str], skipped: dict[tuple[str, str], str]
) -> tuple[str, bool, list[str]]:
    """The table, whether nothing failed (and something passed), and the reasons below it.

    `skipped`: (capability, version) -> why it was not run (a missing tool)."""
    verdict: dict[tuple[str, str], str] = {}
    why: dict[tuple[str, str], str] = {}
    for o in outcomes:
        key = (o["capability"], o["version"])
        if o["outcome"] == "failed":
            verdict[key] = "FAIL"
            why.setdefault(key, f"{o.get('nodeid', '?')}: {o.get('reason') or 'failed'}")
        elif o["outcome"] == "passed":
            if verdict.get(key) != "FAIL":
                verdict[key] = "PASS"
        else:
            verdict.setdefault(key, "SKIP")
            if verdict[key] == "SKIP":
                why.setdefault(key, o.get("reason") or "skipped")
    for key, reason in skipped.items():
        if key not in verdict:
            verdict[key], why[key] = "SKIP", reason
    order = list(dict.fromkeys(
        [*(c.format(output=o) if "{output}" in c else c for c in CAPABILITIES.values()
           for o in (SHOWN if "{output}" in c else ("",))),
         *(o["capability"] for o in outcomes), *(c for c, _ in skipped), DETECTED, OTHER]
    ))
    rows = [c for c in order if any((c, v) in verdict for v in versions)]
    width = max([len("capability"), *map(len, rows)])
    lines = ["capability".ljust(width) + "".join(f"  {v:>9}" for v in versions)]
    lines.append("-" * len(lines[0]))
    for row in rows:
        lines.append(row.ljust(width) + "".join(
            f"  {verdict.get((row, v), '-'):>9}" for v in versions))
    reasons = [f"{verdict[(row, v)]} {row} [{v}]: {why[(row, v)]}"
               for row in rows for v in versions
               if verdict.get((row, v)) in ("FAIL", "SKIP") and (row, v) in why]
    ok = "FAIL" not in verdict.values() and "PASS" in verdict.values()
    return "\n".join(lines), ok, reasons


# --- the detectors over recorded output ---------------------------------------------------------

FAILED_NAMES = (
    "print_logged_out.txt", "print_expired_401.txt", "print_logged_out.json",
    "print_logged_out.stream.jsonl", "print_logged_out.stream-in.jsonl",
    "print_invalid_grant.txt", "print_expired_401.stream.jsonl",
)


def judge_detection(folder: Path) -> list[str]:
    """What claude_wrap.watch.detect gets wrong about the output recorded in `folder` (one
    version's samples): a login failure it does not recognise, whole or split anywhere; a healthy
    stream it holds back or calls a failure; a TUI drawing of `Not logged in` it does not find.
    Empty when it reads them all right; the checks tests/pure/test_watch_detect.py runs on the
    matrix.
    """
    from claude_wrap.watch import detect

    def verdict(chunks: list[bytes], status: int) -> tuple[str, bytes]:
        watch = detect.Watch()
        out = b"".join(watch.feed(c) for c in chunks)
        found = watch.finish(status)
        if found == detect.Output.HEALTHY:
            out += watch.release()
        return found, out

    problems = []
    for name in FAILED_NAMES:
        path = folder / name
        if not path.exists():
            continue
        data = path.read_bytes()
        for size in (1, 7, 100, max(len(data), 1)):
            chunks = [data[i : i + size] for i in range(0, len(data), size)]
            if verdict(chunks, 1) != (detect.Output.FAILURE, b""):
                problems.append(f"{name}: not recognised as a login failure (chunks of {size})")
                break
            if verdict(chunks, 0) != (detect.Output.HEALTHY, data):
                problems.append(f"{name}: with exit 0 not passed through unchanged")
                break
    ok = folder / "print_ok.stream.jsonl"
    if ok.exists():
        data = ok.read_bytes()
        watch = detect.Watch()
        out = b"".join(watch.feed(line) for line in data.splitlines(keepends=True))
        if out != data or watch.finish(0) != detect.Output.HEALTHY:
            problems.append("print_ok.stream.jsonl: a healthy stream held back or judged failed")
    tui = folder / "tui_logged_out.bin"
    if tui.exists():
        data = tui.read_bytes()
        for size in (1, 3, 64, 1000, max(len(data), 1)):
            matcher = detect.TuiMatcher()
            if not any(matcher.feed(data[i : i + size]) for i in range(0, len(data), size)):
                problems.append(f"tui_logged_out.bin: `Not logged in` not found (chunks of {size})")
                break
    if not any((folder / n).exists() for n in (*FAILED_NAMES, "tui_logged_out.bin")):
        problems.append(f"no output was recorded in {folder}")
    return problems


# --- the command ---------------------------------------------------------------------------


def find_tool(tool: str) -> str | None:
    """The tool on PATH, as the cases will look for it (scripts/compat puts /usr/sbin on PATH,
    where sshd lives, as scripts/test does; a test hides a tool by leaving its folder out)."""
    return shutil.which(tool)


def missing_tools() -> dict[str, str]:
    """tool -> Debian package, for the tools the cases drive that are not there, after trying
    to install them (root and apt-get, as scripts/test does)."""
    missing = {tool: package for tool, package, _ in TOOLS if find_tool(tool) is None}
    if not missing:
        return {}
    can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if can_install and os.environ.get(NO_INSTALL_ENV) != "1":
        packages = sorted(set(missing.values()))
        print(f"compat: apt-get install {' '.join(packages)}", flush=True)
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=quiet, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=quiet, check=False)
        missing = {t: p for t, p in missing.items() if find_tool(t) is None}
    return missing


USAGE = "usage: scripts/compat [--keep-samples] [--soak] [-k EXPR] [VERSION|latest ...]"


def parse(argv: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    flags: dict[str, Any] = {"soak": False, "keep": False, "k": None}
    wanted: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--soak":
            flags["soak"] = True
        elif arg == "--keep-samples":
            flags["keep"] = True
        elif arg == "-k":
            flags["k"] = next(args, None)
            if flags["k"] is None:
                return None
        elif arg.startswith("-"):
            return None
        else:
            wanted.append(arg)
    return flags, wanted


def run_pytest(
    versions: list[str], env: dict[str, str], tmp: Path, tag: str, samples: Path | None,
    flags: dict[str, Any], deselect: list[str],
) -> tuple[dict[str, Any] | None, int, Path]:
    report = tmp / f"report-{tag}.json"
    log_path = tmp / f"pytest-{tag}.log"
    command = [sys.executable, "-m", "pytest", str(REPO / "tests" / "e2e"), "-q",
               "-p", "tests.e2e.compat", f"{REPORT_OPTION}={report}", "-o", "addopts=",
               "-p", "no:cacheprovider"]
    env = {**env, "CLAUDE_WRAP_E2E_VERSIONS": ",".join(versions)}
    if samples is not None:
        command.append(f"{SAMPLES_OPTION}={samples}")
        env["CLAUDE_WRAP_E2E_RECORD"] = "1"
    else:
        env.pop("CLAUDE_WRAP_E2E_RECORD", None)
    if not flags["soak"]:
        command += ["--deselect", "tests/e2e/test_soak.py"]
    for nodeid in deselect:
        command += ["--deselect", nodeid]
    if flags["k"]:
        command += ["-k", flags["k"]]
    with open(log_path, "wb") as log:
        done = subprocess.run(command, cwd=REPO, env=env, stdout=log,
                              stderr=subprocess.STDOUT, check=False)
    if not report.exists():
        return None, done.returncode, log_path
    loaded: dict[str, Any] = json.loads(report.read_text())
    return loaded, done.returncode, log_path


def _without_missing_tools(
    versions: list[str],
) -> tuple[list[str], dict[tuple[str, str], str]]:
    """The cases left out for want of a tool (pytest --deselect), and why, by (row, version)."""
    missing = missing_tools()
    deselect: list[str] = []
    skipped: dict[tuple[str, str], str] = {}
    for tool, package, cases in TOOLS:
        if tool in missing:
            deselect += cases
            for case in cases:
                row = capability(case.rsplit("::", 1)[-1], "")
                for v in versions:
                    skipped[(row, v)] = (f"`{tool}` is not installed (Debian: apt-get install "
                                         f"{package}; compat installs it when run as root)")
    return deselect, skipped


def _detection_outcomes(
    versions: list[str], unseen: list[str], recorded: Path, known: Path
) -> list[dict[str, Any]]:
    """The detectors over each version's output: recorded now, or the checkout's samples."""
    outcomes: list[dict[str, Any]] = []
    for v in versions:
        folder = (recorded if v in unseen else known) / v
        if v in unseen and not folder.is_dir():
            continue  # nothing recorded (its cases failed or were left out): shown there
        problems = judge_detection(folder)
        outcomes.append({
            "nodeid": f"detect over {folder}", "version": v, "when": "call",
            "outcome": "failed" if problems else "passed", "capability": DETECTED,
            "reason": "; ".join(problems),
        })
    return outcomes


def _keep_samples(unseen: list[str], recorded: Path, *, keep: bool) -> None:
    """The output recorded from new versions: into tests/e2e/samples (`--keep-samples`), else
    into a folder that outlives the run, named."""
    if keep:
        for v in unseen:
            if (recorded / v).is_dir():
                target = REPO / "tests" / "e2e" / "samples" / v
                shutil.copytree(recorded / v, target, dirs_exist_ok=True)
                print(f"compat: the samples of {v} are now in {target}")
    else:
        kept = Path(tempfile.mkdtemp(prefix="claude-wrap-compat-samples-"))
        if recorded.is_dir():
            shutil.copytree(recorded, kept, dirs_exist_ok=True)
        print(f"compat: the output recorded from {', '.join(unseen)} is in {kept} "
              "(`--keep-samples` adds it to tests/e2e/samples/ for the matrix)")


def main(argv: list[str]) -> int:
    from claude_wrap_testing.install import InstallError, e2e_versions

    parsed = parse(argv)
    if parsed is None:
        print(USAGE, file=sys.stderr)
        return 2
    flags, wanted = parsed
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
    env.pop("CLAUDE_WRAP_SKIP_E2E", None)
    known = Path(env.get(KNOWN_SAMPLES_ENV) or REPO / "tests" / "e2e" / "samples")
    seen = [v for v in versions if (known / v).is_dir()]
    unseen = [v for v in versions if v not in seen]

    deselect, skipped = _without_missing_tools(versions)

    with tempfile.TemporaryDirectory(prefix="claude-wrap-compat-") as tmp_name:
        tmp = Path(tmp_name)
        recorded = tmp / "samples"
        outcomes: list[dict[str, Any]] = []
        unmatched: set[str] = set()
        statuses = []
        groups = [(seen, "seen", None), (unseen, "new", recorded)]
        for group, tag, samples in groups:
            if not group:
                continue
            how = ("recording its output into a scratch folder" if samples is not None
                   else "checking its output against tests/e2e/samples")
            print(f"compat: the end-to-end suite against {', '.join(group)}, {how} "
                  f"(pytest output in {tmp}/pytest-{tag}.log while it runs)", flush=True)
            report, status, log_path = run_pytest(group, env, tmp, tag, samples, flags, deselect)
            if report is None:
                print(log_path.read_text()[-3000:])
                print(f"compat: pytest wrote no report (exit status {status})", file=sys.stderr)
                return 2
            outcomes += report["outcomes"]
            unmatched.update(report["unmatched"])
            statuses.append((status, log_path))
        outcomes += _detection_outcomes(versions, unseen, recorded, known)
        text, ok, reasons = report_of(outcomes, versions, skipped)
        print(text)
        for line in reasons:
            print(line)
        for name in sorted(unmatched):
            print(f"compat: CAPABILITIES names {name}, which no case has any more: its row "
                  "cannot be shown (rename it in tests/e2e/compat.py)")
        if unseen:
            _keep_samples(unseen, recorded, keep=bool(flags["keep"]))
        for status, log_path in statuses:
            if status not in (0, 1, 5):
                print(f"compat: pytest exit status {status}; see the end of its output:",
                      file=sys.stderr)
                print(log_path.read_text()[-3000:], file=sys.stderr)
                return 2
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

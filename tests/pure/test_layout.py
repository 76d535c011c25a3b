"""The tests' layout (tests/README.md), read from the source with `ast`: bench/ and the test
support package never reach into tests/ (bench/soak once imported tests.e2e.soak, which ran
`python -m tests.e2e.hostile`), claude_wrap reaches into neither, and every test file sits in
the folder of its kind, which is its marker."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import KINDS

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
SUPPORT = REPO / "claude_wrap_testing"
# A module of the tests named as `python -m` takes it: an import made at run time.
MODULE_NAME = re.compile(r"^tests(\.\w+)+$")


def python_files(folder: Path) -> Iterator[Path]:
    """Every Python source in `folder`: the .py files, and scripts without one (bench/run)."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        if path.suffix == ".py":
            yield path
        elif not path.suffix:
            first = path.read_bytes().split(b"\n", 1)[0]
            if first.startswith(b"#!") and b"python" in first:
                yield path


def reaches(path: Path) -> set[str]:
    """The top-level packages `path` imports, anywhere in it, and the `tests` modules it names
    as a string (`[sys.executable, "-m", "tests.x"]` imports tests.x as surely)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and MODULE_NAME.match(node.value)):
            found.add("tests")
    return found


def offenders(folder: Path, forbidden: set[str]) -> dict[str, set[str]]:
    """The sources in `folder` (by their path in it) that reach a package of `forbidden`."""
    found = {}
    for path in python_files(folder):
        bad = reaches(path) & forbidden
        if bad:
            found[str(path.relative_to(folder))] = bad
    return found


def test_bench_does_not_import_the_tests() -> None:
    scanned = [p.name for p in python_files(REPO / "bench")]
    assert {"run", "soak", "cli.py"} <= set(scanned), scanned  # the scripts are read too
    assert offenders(REPO / "bench", {"tests"}) == {}


def test_the_support_package_does_not_import_the_tests() -> None:
    assert offenders(SUPPORT, {"tests"}) == {}


def test_claude_wrap_imports_neither_the_tests_nor_their_support() -> None:
    assert offenders(REPO / "claude_wrap", {"tests", "claude_wrap_testing"}) == {}


def test_the_scan_sees_an_import_and_a_module_run(tmp_path: Path) -> None:
    (tmp_path / "lazy.py").write_text("def f():\n    from tests.e2e import compat\n")
    (tmp_path / "spawn.py").write_text("ARGV = ['python', '-m', 'tests.e2e.hostile']\n")
    (tmp_path / "fine.py").write_text('"""See tests/e2e/test_soak.py."""\nimport claude_wrap\n')
    (tmp_path / "script").write_text("#!/usr/bin/env python3\nimport tests.conftest\n")
    assert offenders(tmp_path, {"tests"}) == {
        "lazy.py": {"tests"}, "script": {"tests"}, "spawn.py": {"tests"}
    }


def test_every_test_file_sits_in_the_folder_of_its_kind() -> None:
    assert {p.name for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        KINDS
    )
    astray = [
        str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py")
        if p.relative_to(TESTS).parts[0] not in KINDS
    ]
    assert astray == []

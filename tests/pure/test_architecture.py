"""The package's shape (issue 16): no import cycles, lazy imports included, and the entry point
alone imports the shim. Read from the source with `ast`, so an import inside a function counts
exactly as one at the top of a module does: a cycle that works only because one side imports
lazily is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "claude_wrap"
# What may import the shim: the entry point. (bin/claude is outside the package.)
SHIM_IMPORTERS = {"claude_wrap.main"}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], package: Path = PACKAGE) -> set[str]:
    """The package's modules that `path` imports, anywhere in it (TYPE_CHECKING blocks aside:
    they never run)."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path, package)
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(_owning(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, here, path.name == "__init__.py")
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else _owning(base, modules))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard("")
    found.discard(here)
    return {m for m in found if m in modules and m != "claude_wrap"}


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = here.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = ".".join(parts[:keep])
    return f"{base}.{node.module}" if node.module else base


def _owning(name: str, modules: set[str]) -> str:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def test_the_package_has_no_import_cycles_lazy_imports_included() -> None:
    assert cycles(graph()) == []


def test_only_the_entry_point_imports_the_shim() -> None:
    importers = {m for m, deps in graph().items() if "claude_wrap.shim" in deps}
    assert importers <= SHIM_IMPORTERS



# Issue 27: the folders are the layers, bottom first. A module imports its own folder and those
# below it; the root's leaves (errors, console, findings, feedback) sit under everything, and the
# entry point (main) over everything.
LAYERS = (
    ("errors", "console", "findings", "feedback"),
    ("config",),
    ("judging",),
    ("system",),
    ("storage",),
    ("locks",),
    ("logfile",),
    ("refresh",),
    ("guests",),
    ("watch",),
    ("keeper",),
    ("shim",),
    ("commands",),
    ("main", "__main__"),
)
# An import that goes up, each with the reason it must.
UPWARD = {
    # Owner or guest: the one place that picks, imported lazily and only on a guest, so that
    # neither guests/ (whose owner side refreshes) nor refresh/ imports the other back.
    ("claude_wrap.refresh.renewal", "claude_wrap.guests.guest"),
}


def layer_of(module: str) -> int:
    name = module.split(".")[1] if "." in module else ""
    for rank, names in enumerate(LAYERS):
        if name in names:
            return rank
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS")


def upward_imports(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (m, d)
        for m, deps in edges.items()
        if m != "claude_wrap"
        for d in deps
        if layer_of(d) > layer_of(m)
    }


def test_each_layer_imports_only_its_own_folder_and_those_below() -> None:
    assert upward_imports(graph()) == UPWARD


def test_an_upward_import_is_found() -> None:
    # The yardstick: storage importing the refresher is caught.
    edges = {"claude_wrap.storage.store": {"claude_wrap.refresh.refresher"}}
    assert upward_imports(edges) == {("claude_wrap.storage.store", "claude_wrap.refresh.refresher")}


# The hot path avoids `os` (config/fspath.py says why) by using `posix` directly: that idiom stays
# in the modules a healthy run imports, whose import tests (tests/process/test_shim.py,
# test_watch_relay.py) hold them to it, and goes nowhere else.
POSIX_USERS = {
    "claude_wrap.config.fspath",
    "claude_wrap.config.settings",
    "claude_wrap.config.locate",
    "claude_wrap.shim",
    "claude_wrap.watch.relay",
    "claude_wrap.watch.pipes",
    "claude_wrap.watch.process",
    "claude_wrap.locks.flock",
}


def test_only_the_hot_path_uses_posix_in_place_of_os() -> None:
    users = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            if "posix" in names:
                users.add(module_name(path))
    assert users == POSIX_USERS

def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path: Path) -> None:
    # The yardstick itself: a function-level import closing a loop is a cycle.
    pkg = tmp_path / "claude_wrap"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from claude_wrap import b\n")
    (pkg / "b.py").write_text("def f():\n    from claude_wrap import a  # lazy\n")
    (pkg / "c.py").write_text("TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from . import a\n")
    modules = {"claude_wrap", "claude_wrap.a", "claude_wrap.b", "claude_wrap.c"}
    edges = {m: imports_of(pkg / f"{m.rpartition('.')[2]}.py", modules, pkg)
             for m in modules - {"claude_wrap"}}
    assert edges["claude_wrap.c"] == set()
    assert cycles(edges) == [["claude_wrap.a", "claude_wrap.b"]]


# Issue 27: the environment is read in one module, into a Settings handed down; anywhere else a
# read is a fallback to the process's environment, which is how a refresh for HOME=a once wrote
# under the process's HOME=b.
SETTINGS_MODULE = "claude_wrap.config.settings"
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(tree: ast.Module) -> list[str]:
    """`os.environ`, `posix.environ`, `os.getenv(...)` and the like, and `from os import
    environ`: every way to the process's own environment."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENVIRONMENT_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in ("os", "posix", "nt")
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "posix"):
            found += [
                f"line {node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if alias.name in ENVIRONMENT_NAMES
            ]
    return found


def test_only_settings_py_reads_the_process_environment() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        uses = environment_uses(ast.parse(path.read_text(), str(path)))
        if uses and name != SETTINGS_MODULE:
            offenders[name] = uses
    assert offenders == {}


def test_the_environment_scan_sees_each_way_in() -> None:
    code = (
        "import os, posix\n"
        "a = os.environ['HOME']\n"
        "b = posix.environ[b'HOME']\n"
        "c = os.getenv('X')\n"
        "d = os.environb\n"
        "from os import environ\n"
        "e = settings.env.get('HOME')\n"  # a Settings' own copy: not the process's
    )
    assert len(environment_uses(ast.parse(code))) == 5

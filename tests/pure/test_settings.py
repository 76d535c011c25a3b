"""Settings and protocol constants in one place each (issue 16, item 3), read from the source with
`ast`: only settings.py reads the environment, only protocol.py spells Claude Code's names and
values, and one error class reports a bad setting."""

from __future__ import annotations

import ast
import re

import pytest

from claude_wrap import errors
from claude_wrap.config import protocol, settings
from claude_wrap.config.settings import Settings
from tests.pure.test_architecture import PACKAGE, module_name

# Modules whose reads other branches of issue 16 move into settings.py (the process layer: shim,
# relay, interactive; the storage layer: guard). Remove each as it lands.
PENDING: set[str] = set()
OURS = re.compile(r"CLAUDE_WRAP_[A-Z_]+")
VARIABLE = re.compile(r"^(CLAUDE_|XDG_|ANTHROPIC_|NPM_|npm_config_)[A-Za-z0-9_]*$|^[A-Z][A-Z_]+$")


def sources() -> list[tuple[str, ast.Module]]:
    return [
        (module_name(path), ast.parse(path.read_text(), str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def environment_reads(tree: ast.Module) -> list[str]:
    """`x.get("NAME")`, `x["NAME"]` (read), `os.getenv(...)`, and bare names of our own
    variables (`"CLAUDE_WRAP_..."`) handed to anything else."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "getenv":
                found.append(f"line {node.lineno}: getenv")
            elif node.func.attr == "get" and node.args:
                name = _text(node.args[0])
                if name is not None and VARIABLE.match(name):
                    found.append(f"line {node.lineno}: .get({name!r})")
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            name = _text(node.slice)
            if name is not None and VARIABLE.match(name):
                found.append(f"line {node.lineno}: [{name!r}]")
        elif isinstance(node, ast.Constant) and OURS.fullmatch(str(node.value)):
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


def test_only_settings_py_reads_the_environment() -> None:
    offenders = {
        name: reads
        for name, tree in sources()
        if name not in {"claude_wrap.config.settings", *PENDING}
        for reads in [environment_reads(tree)]
        if reads
    }
    assert offenders == {}


def test_the_scan_sees_a_read() -> None:
    """The scan above would see each kind of read (else it could never fail)."""
    code = (
        "import os\n"
        "a = env.get('CLAUDE_CONFIG_DIR')\n"
        "b = os.environ['HOME']\n"
        "c = os.getenv('X')\n"
        "d = flag(env, 'CLAUDE_WRAP_WATCH')\n"
        "env['PATH'] = '/bin'\n"  # a write, for a child: not a read
    )
    assert len(environment_reads(ast.parse(code))) == 4


def _docstring_nodes(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            out.add(id(node.value))
    return out


def protocol_strings() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(protocol).items()
        if name.isupper() and isinstance(value, str)
    }


def test_claude_codes_names_are_spelled_in_protocol_py_alone() -> None:
    wanted = protocol_strings()
    assert {"CLIENT_ID", "TOKEN_URL", "KEYCHAIN_SERVICE", "REFRESH_LOCK_NAME"} <= set(wanted)
    spelled = []
    for name, tree in sources():
        if name == "claude_wrap.config.protocol":
            continue
        docs = _docstring_nodes(tree)
        for node in ast.walk(tree):
            text = _text(node)
            if text in wanted.values() and id(node) not in docs:
                spelled.append(f"{name} line {getattr(node, 'lineno', '?')}: {text!r}")
    assert spelled == []


def test_the_scopes_hold_the_one_claude_code_requires() -> None:
    assert protocol.INFERENCE_SCOPE in protocol.DEFAULT_SCOPES
    assert protocol.PLUGINS_SCOPE not in protocol.DEFAULT_SCOPES
    assert protocol.LOCK_STALE_S >= protocol.OLD_LOCK_STALE_S


def test_one_setting_error() -> None:
    assert settings.SettingError is errors.SettingError
    assert not hasattr(errors, "ConfigError")
    exc = errors.SettingError("CLAUDE_WRAP_X", "soon", "a number of seconds")
    assert isinstance(exc, errors.WrapError)
    assert isinstance(exc, ValueError)
    assert exc.exit_code == errors.EXIT_USAGE
    assert str(exc) == "CLAUDE_WRAP_X='soon' is not a number of seconds; unset it or fix its value"
    with pytest.raises(errors.SettingError, match="CLAUDE_WRAP_LOCK_TIMEOUT='x' is not a number"):
        _ = Settings({"CLAUDE_WRAP_LOCK_TIMEOUT": "x"}).lock_wait


def test_values_are_parsed_once_and_derived_settings_are_new_ones() -> None:
    env = {"HOME": "/h", "CLAUDE_WRAP_REFRESH_WINDOW": "90"}
    settings = Settings(env)
    env["HOME"] = "/elsewhere"  # the caller's mapping, changed afterwards: not ours
    assert settings.credentials_file == "/h/.claude/.credentials.json"
    assert settings.refresh_window_ms == 90_000
    other = settings.selecting("/work")
    assert other.credentials_file == "/work/.credentials.json"
    assert settings.credentials_file == "/h/.claude/.credentials.json"
    assert settings.with_refresh_window(1800).refresh_window_ms == 1_800_000
    child = settings.unnested()
    assert child.nested and not settings.nested
    assert child.child_env()["CLAUDE_WRAP_ACTIVE"] == "1"
    token = settings.with_access_token(token="t").child_env()
    assert token["CLAUDE_CODE_OAUTH_TOKEN"] == "t"
    assert "CLAUDE_WRAP_GUEST" not in Settings({"CLAUDE_WRAP_GUEST": "off"}).without_guest().env
    with pytest.raises(errors.SettingError, match="CLAUDE_WRAP_TOKEN_URL"):
        _ = Settings({"CLAUDE_WRAP_TOKEN_URL": "http://example.com/token"}).token_url

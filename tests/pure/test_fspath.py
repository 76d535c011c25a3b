"""fspath.py does what os.path does, without importing os: compared with os.path itself on
every shape of path the hot path may meet (trailing and doubled slashes, '.', '..', empty and
relative paths), and on real files, folders, symlinks and what is not there."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

import pytest

from claude_wrap.config import fspath

PARTS = ["", "/", "//", "///", ".", "..", "a", "a/", "/a", "//a", "a//b", "a/./b", "a/../b",
         "../a", "./a", "/a/b/", "a/b//", "/..", "/../a", "//..", "a/..", "a/../..", "...",
         "b/.", "./", "../", "/./", "é", "c d", "a\udcff"]


@pytest.mark.parametrize("path", PARTS)
def test_one_path_as_os_path_has_it(path: str) -> None:
    assert fspath.basename(path) == os.path.basename(path)
    assert fspath.dirname(path) == os.path.dirname(path)
    assert fspath.isabs(path) == os.path.isabs(path)
    assert fspath.normpath(path) == os.path.normpath(path)


def test_joins_as_os_path_does() -> None:
    for first, second in itertools.product(PARTS, repeat=2):
        assert fspath.join(first, second) == os.path.join(first, second), (first, second)
    for parts in itertools.product(["", "/", "a", "/b", "c/", "//d"], repeat=3):
        assert fspath.join(*parts) == os.path.join(*parts), parts
    assert fspath.join("a") == os.path.join("a")


def test_normalises_as_os_path_does() -> None:
    for parts in itertools.product(["", "/", "//", ".", "..", "a", "b/"], repeat=4):
        path = "".join(parts)
        assert fspath.normpath(path) == os.path.normpath(path), path
        assert fspath.dirname(path) == os.path.dirname(path), path


def test_makes_paths_absolute_as_os_path_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for path in [*PARTS, "../../x", "bin/claude", "/usr/bin/claude"]:
        assert fspath.abspath(path) == os.path.abspath(path), path


def test_tells_files_and_folders_as_os_path_does(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "to-file").symlink_to(tmp_path / "file")
    (tmp_path / "to-dir").symlink_to(tmp_path / "dir")
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        names = ["file", "dir", "to-file", "to-dir", "dangling", "fifo", "sock", "nothing",
                 "file/", "dir/", "to-dir/", "file/x"]
        paths = [str(tmp_path / n) if not n.endswith("/") else f"{tmp_path}/{n}" for n in names]
        for path in [*paths, "", "nul\0byte", "/", "/dev/null"]:
            assert fspath.isfile(path) == os.path.isfile(path), path
            assert fspath.isdir(path) == os.path.isdir(path), path
            assert fspath.exists(path) == os.path.exists(path), path
    assert fspath.isfile(paths[0]) and fspath.isdir(paths[1])  # the yardstick sees both kinds


def test_one_file_by_any_path_to_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "other").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to("file")
    (tmp_path / "dir-link").symlink_to(tmp_path / "dir")
    os.link(tmp_path / "file", tmp_path / "hard")
    paths = [str(tmp_path / n) for n in ("file", "other", "dir", "link", "dir-link", "hard")]
    paths += [f"{tmp_path}/dir/../file", f"{tmp_path}//dir/"]
    for a, b in itertools.product(paths, repeat=2):
        assert (fspath.file_id(a) == fspath.file_id(b)) == os.path.samefile(a, b), (a, b)
    for path in [*paths, "/", "/proc/self", "/dev/null"]:  # other devices, the same inodes maybe
        st = os.stat(path)
        assert fspath.file_id(path) == (st.st_dev, st.st_ino), path
    assert fspath.file_id(str(tmp_path / "nothing")) is None
    assert fspath.file_id("") is None
    assert fspath.file_id("nul\0byte") is None

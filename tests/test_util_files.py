"""`edgeface.util.files`: regular files only, a size cap per kind, atomic writes that replace only regular
files. Every refusal is one line naming the path; a FIFO never blocks (the FIFO here has no writer, so a
blocking open would hang the test: it finishing is the check)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgeface.util.files import (
    MAX_CONFIG_BYTES,
    FileRefused,
    check_output_path,
    check_writable_folder,
    read_bytes,
    read_text,
    write_atomic,
)


def _one_line(exc: pytest.ExceptionInfo[FileRefused], *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_bytes(b"x" * 100)
    assert read_bytes(path, 100, "config") == b"x" * 100
    assert read_text(path, 100, "config") == "x" * 100


@pytest.mark.parametrize("kind", ["directory", "fifo", "dev-zero", "symlink-to-fifo", "socket"])
def test_anything_but_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    import socket

    path = tmp_path / "target"
    keep = None
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "symlink-to-fifo":
        os.mkfifo(tmp_path / "fifo")
        path.symlink_to(tmp_path / "fifo")
    else:
        keep = socket.socket(socket.AF_UNIX)
        keep.bind(str(path))
    try:
        with pytest.raises(FileRefused) as exc:
            read_bytes(path, MAX_CONFIG_BYTES, "config")
    finally:
        if keep is not None:
            keep.close()
    # a socket cannot even be opened (ENXIO); everything else is refused by its type once open
    _one_line(exc, f"config {path}", "cannot read" if kind == "socket" else "expected a regular file")


def test_a_file_above_its_cap_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    with open(path, "wb") as handle:  # sparse: 8 GiB of apparent size, no disk used
        handle.truncate(8 << 30)
    with pytest.raises(FileRefused) as exc:
        read_bytes(path, MAX_CONFIG_BYTES, "config")
    _one_line(exc, str(path), "8192.0 MiB", "above the limit of 1.0 MiB")
    assert exc.value.too_large and not exc.value.missing


def test_missing_loops_and_non_utf8_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FileRefused) as exc:
        read_bytes(tmp_path / "nope", 10, "key")
    _one_line(exc, "key", "No such file")
    assert exc.value.missing
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(FileRefused) as exc:
        read_bytes(loop, 10, "key")
    _one_line(exc, "Too many levels of symbolic links")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9")
    with pytest.raises(FileRefused) as exc:
        read_text(latin, 10, "credentials")
    _one_line(exc, "not UTF-8 text (byte 3)")


def test_an_unreadable_file_is_a_one_line_error_for_a_user_who_is_not_root(tmp_path: Path) -> None:
    """As root every file is readable, so a forked child drops to `nobody` (uid 65534) to read it."""
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"edgeface-unreadable-{os.getpid()}"
    folder.mkdir(mode=0o755)
    path = folder / "secret.toml"
    path.write_text("[device]\n")
    path.chmod(0)
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            os.close(read_end)
            message = b"no error"
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                read_bytes(path, 100, "config")
            except FileRefused as exc:
                message = str(exc).encode()
            except BaseException as exc:
                message = f"unexpected {type(exc).__name__}: {exc}".encode()
            os.write(write_end, message)
            os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        with os.fdopen(read_end, "rb") as pipe:
            message_text = pipe.read().decode()
    finally:
        path.unlink()
        folder.rmdir()
    assert message_text == f"config {path}: cannot read (Permission denied)"


# --- writing ---------------------------------------------------------------------------------------------
def test_write_atomic_replaces_a_regular_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    write_atomic(path, b"new", "--out", mode=0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink-to-dir", "symlink-to-file", "device"])
def test_write_atomic_never_replaces_anything_but_a_regular_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "out"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink-to-dir":
        (tmp_path / "d").mkdir()
        path.symlink_to(tmp_path / "d")
    elif kind == "symlink-to-file":
        (tmp_path / "f").write_bytes(b"keep")
        path.symlink_to(tmp_path / "f")
    elif os.geteuid() == 0:  # a private copy of /dev/null, so a failure cannot break the machine's
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        path = Path("/dev/null")  # not root: the rename could not replace it anyway
    before = path.lstat()
    with pytest.raises(FileRefused) as exc:
        write_atomic(path, b"data", "--out")
    _one_line(exc, f"--out {path}", "refusing to replace it")
    after = path.lstat()
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


def test_output_into_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileRefused) as exc:
        check_output_path(tmp_path / "missing" / "x.png", "--plot")
    _one_line(exc, "--plot", "folder", "does not exist")


def test_a_folder_we_cannot_write_into_is_refused(tmp_path: Path) -> None:
    check_writable_folder(tmp_path / "new" / "gallery", "--gallery")  # creatable: fine, nothing created
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileRefused) as exc:
        check_writable_folder(tmp_path / "file" / "gallery", "--gallery")
    _one_line(exc, "is not a folder")
    with pytest.raises(FileRefused) as exc:
        check_writable_folder(
            "/proc/edgeface-gallery", "--gallery"
        )  # procfs takes no new files, even as root
    _one_line(exc, "cannot write in /proc")

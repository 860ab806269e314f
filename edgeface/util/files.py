"""Every file edgeface reads or writes goes through here: regular files only, with a size cap per kind.

Reading opens with O_NONBLOCK and checks the open descriptor (fstat), so a FIFO, a device (`/dev/zero`) or
a directory is refused at once with a one-line error instead of hanging the command or filling memory; a
file larger than its kind's cap is refused before it is read. Writing goes to a temporary file in the same
folder and is renamed over the target, and refuses to replace anything that is not a regular file (a
device, FIFO, directory or symlink), so `--out /dev/null` never destroys `/dev/null`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from edgeface.errors import EdgefaceError

KIB = 1024
MIB = 1024 * KIB

# Generous but finite: each is far above any real file of its kind and far below a Pi's memory.
MAX_CONFIG_BYTES = 1 * MIB
MAX_CREDENTIALS_BYTES = 64 * KIB
MAX_KEY_BYTES = 64 * KIB  # PEM keys and client certificates
MAX_CA_BYTES = 4 * MIB  # a CA bundle (the system one is ~220 KiB)
MAX_CARD_BYTES = 1 * MIB
MAX_MODEL_BYTES = 512 * MIB
MAX_PHOTO_BYTES = 64 * MIB
MAX_GALLERY_FILE_BYTES = 1024 * MIB  # vectors.npy of a large gallery

__all__ = [
    "MAX_CARD_BYTES",
    "MAX_CA_BYTES",
    "MAX_CONFIG_BYTES",
    "MAX_CREDENTIALS_BYTES",
    "MAX_GALLERY_FILE_BYTES",
    "MAX_KEY_BYTES",
    "MAX_MODEL_BYTES",
    "MAX_PHOTO_BYTES",
    "FileRefused",
    "check_output_path",
    "check_regular",
    "check_writable_folder",
    "open_regular",
    "read_bytes",
    "read_text",
    "write_atomic",
]


class FileRefused(EdgefaceError):
    """A file is missing, unreadable, not a regular file, or above its size cap; the message names it."""

    def __init__(self, message: str, *, missing: bool = False, too_large: bool = False) -> None:
        super().__init__(message)
        self.missing = missing
        self.too_large = too_large


def _named(what: str, path: str | Path) -> str:
    return f"{what} {path}" if what else str(path)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "not a regular file"


def _refusal(what: str, path: str | Path, exc: OSError) -> FileRefused:
    reason = exc.strerror or str(exc)
    return FileRefused(
        f"{_named(what, path)}: cannot read ({reason})", missing=isinstance(exc, FileNotFoundError)
    )


def _size_text(size: int) -> str:
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size} bytes"


@contextlib.contextmanager
def open_regular(path: str | Path, max_bytes: int, what: str = "file") -> Iterator[BinaryIO]:
    """The open regular file at `path`, its size checked against `max_bytes` (FileRefused otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _refusal(what, path, exc) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{_named(what, path)}: is {_kind(info.st_mode)}, expected a regular file")
        if info.st_size > max_bytes:
            raise FileRefused(
                f"{_named(what, path)}: is {_size_text(info.st_size)}, above the limit of {_size_text(max_bytes)}",
                too_large=True,
            )
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def check_regular(path: str | Path, max_bytes: int, what: str = "file") -> None:
    """Refuse now what `open_regular` would refuse (for files a library opens itself, e.g. TLS certs)."""
    with open_regular(path, max_bytes, what):
        pass


def read_bytes(path: str | Path, max_bytes: int, what: str = "file") -> bytes:
    """The whole regular file at `path`, at most `max_bytes` (a file growing while read is refused too)."""
    with open_regular(path, max_bytes, what) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise _refusal(what, path, exc) from None
    if len(data) > max_bytes:
        raise FileRefused(
            f"{_named(what, path)}: grew above the limit of {_size_text(max_bytes)} while read",
            too_large=True,
        )
    return data


def read_text(path: str | Path, max_bytes: int, what: str = "file") -> str:
    """`read_bytes` decoded as UTF-8; FileRefused naming the byte offset if it is not."""
    data = read_bytes(path, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRefused(f"{_named(what, path)}: not UTF-8 text (byte {exc.start})") from None


def check_output_path(path: str | Path, what: str = "output") -> None:
    """Refuse a target that is anything but a regular file or nothing, or whose folder does not exist."""
    path = Path(path)
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise FileRefused(f"{_named(what, path)}: cannot check ({exc.strerror or exc})") from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise FileRefused(f"{_named(what, path)}: is {_kind(info.st_mode)}; refusing to replace it")
    parent = path.parent
    if not parent.is_dir():
        raise FileRefused(f"{_named(what, path)}: folder {parent} does not exist")


def check_writable_folder(path: str | Path, what: str = "folder") -> None:
    """Refuse a folder we could not write into (or create): checked by creating and removing a temporary
    file, so it holds for root and read-only mounts alike, before any slow work is done."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FileRefused(f"{_named(what, path)}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise FileRefused(
            f"{_named(what, path)}: cannot write in {existing} ({exc.strerror or exc})"
        ) from None


def write_atomic(path: str | Path, data: bytes, what: str = "output", mode: int = 0o644) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`: a reader sees the old
    file or the new one, never half of one; only a regular file (or nothing) is ever replaced."""
    path = Path(path)
    check_output_path(path, what)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise FileRefused(f"{_named(what, path)}: cannot write ({exc.strerror or exc})") from None

"""Reading photos and identity folders from disk, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import ImageError
from edgeface.util.imagesize import DEFAULT_MAX_MEGAPIXELS, header_size

# Every still format OpenCV's imread knows (a build without one of the codecs says so when decoding).
IMAGE_SUFFIXES = frozenset(
    {
        *(".bmp", ".dib", ".jpg", ".jpeg", ".jpe", ".jp2", ".png", ".webp", ".avif", ".gif"),
        *(".pbm", ".pgm", ".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".tif", ".tiff", ".hdr", ".pic"),
    }
)


__all__ = ["DEFAULT_MAX_MEGAPIXELS", "identity_folders", "image_files", "max_pixels_of", "read_image"]


def max_pixels_of(megapixels: float) -> int:
    return int(megapixels * 1_000_000)


def read_image(path: str | Path, max_pixels: int = max_pixels_of(DEFAULT_MAX_MEGAPIXELS)) -> np.ndarray:
    """BGR uint8 pixels of an image file; ImageError naming the file if it is missing, cannot be decoded,
    or has more than `max_pixels` pixels. The size is read from the header before decoding where
    `edgeface.util.imagesize` knows the format, else checked right after decoding."""
    path = Path(path)
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    size = header_size(data.data) if data.size else None
    if size is not None:
        _check_pixels(path, size, max_pixels)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as exc:  # some codecs raise on malformed input instead of returning None
        raise ImageError(f"{path}: not a decodable image ({str(exc).strip().splitlines()[-1]})") from exc
    if image is None:
        raise ImageError(f"{path}: not a decodable image (corrupt or unsupported format)")
    if image.ndim == 2:  # some decoders (PFM) ignore IMREAD_COLOR for single-channel files
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    _check_pixels(path, (image.shape[1], image.shape[0]), max_pixels)
    return image


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            f"{path}: {width}x{height} is {width * height / 1e6:.1f} megapixels, above the cap of "
            f"{max_pixels / 1e6:g} (raise --max-megapixels or camera.max_megapixels, or shrink the photo)"
        )


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def identity_folders(root: str | Path) -> dict[str, list[Path]]:
    """{identity: sorted photo paths} for each non-empty sub-folder of root."""
    root = Path(root)
    if not root.is_dir():
        raise ImageError(f"{root}: not a folder of identity sub-folders")
    folders = {d.name: image_files(d) for d in sorted(root.iterdir()) if d.is_dir()}
    folders = {name: files for name, files in folders.items() if files}
    if not folders:
        raise ImageError(
            f"{root}: no sub-folder with images (any still format OpenCV reads, e.g. jpg, png, pgm, tiff)"
        )
    return folders

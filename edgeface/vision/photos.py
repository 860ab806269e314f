"""Reading photos and identity folders from disk, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import ImageError
from edgeface.util.files import MAX_PHOTO_BYTES, FileRefused, read_bytes
from edgeface.util.imagesize import DEFAULT_MAX_MEGAPIXELS, header_size

# The still formats OpenCV decodes whose size `edgeface.util.imagesize` reads from the header. Others
# (Radiance HDR, JPEG 2000, AVIF, OpenEXR) are refused by content, whatever their name: their pixel count
# is only known once decoded, and a small file can decode to gigabytes.
IMAGE_SUFFIXES = frozenset(
    {
        *(".bmp", ".dib", ".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif"),
        *(".pbm", ".pgm", ".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".tif", ".tiff"),
    }
)
# A photo this many times wider than high (or higher than wide) is no face photo; refusing it also keeps
# the detection cascade's bordered retries (which grow with the longer side) small.
MAX_ASPECT_RATIO = 16.0


__all__ = ["DEFAULT_MAX_MEGAPIXELS", "identity_folders", "image_files", "max_pixels_of", "read_image"]


def max_pixels_of(megapixels: float) -> int:
    return int(megapixels * 1_000_000)


def read_image(path: str | Path, max_pixels: int = max_pixels_of(DEFAULT_MAX_MEGAPIXELS)) -> np.ndarray:
    """BGR uint8 pixels of an image file; ImageError naming the file if it is missing, not a regular file,
    above MAX_PHOTO_BYTES, of a format whose size cannot be read from its header, of more than
    `max_pixels` pixels or a degenerate shape, or cannot be decoded. Everything but decoding errors is
    refused before the decoder runs, so no photo can make it allocate more than the pixel cap."""
    path = Path(path)
    try:
        data = np.frombuffer(read_bytes(path, MAX_PHOTO_BYTES, "photo"), np.uint8)
    except FileRefused as exc:
        raise ImageError(str(exc)) from None
    _check_pixels(path, checked_header_size(path, data), max_pixels)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # some codecs raise on malformed input instead of returning None
        raise ImageError(f"{path}: not a decodable image ({str(exc).strip().splitlines()[-1]})") from exc
    if image is None:
        raise ImageError(f"{path}: not a decodable image (corrupt or unsupported format)")
    if image.ndim == 2:  # some decoders (PFM) ignore IMREAD_COLOR for single-channel files
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    _check_pixels(path, (image.shape[1], image.shape[0]), max_pixels)
    return image


def checked_header_size(path: Path, data: np.ndarray) -> tuple[int, int]:
    """(width, height) from the header; ImageError if `data` is empty or its header gives no size."""
    if not data.size:
        raise ImageError(f"{path}: empty file, not an image")
    size = header_size(data.data)
    if size is None:
        raise ImageError(
            f"{path}: not a decodable image (a corrupt header, or a format whose size cannot be checked "
            "before decoding; use JPEG, PNG, WebP, GIF, BMP, TIFF, PNM/PFM or Sun raster)"
        )
    return size


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"{path}: header says {width}x{height}, not an image")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageError(
            f"{path}: {width}x{height} is more than {MAX_ASPECT_RATIO:g} times wider than high or higher "
            "than wide, not a photo"
        )
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

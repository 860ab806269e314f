"""Reading photos and identity folders from disk, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 pixels of an image file; ImageError if it is missing or cannot be decoded."""
    path = Path(path)
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageError(f"{path}: not a decodable image (corrupt or unsupported format)")
    return image


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
        raise ImageError(f"{root}: no sub-folder with images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return folders

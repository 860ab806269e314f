"""An image's width and height from its header bytes, without decoding it (for the pixel cap).

OpenCV's Python API has no header-only read, so the still formats are parsed here: PNG, JPEG, GIF, BMP,
WebP, PNM/PAM/PFM, Sun raster and TIFF. These are the sizes OpenCV's decoders allocate for. For any other
format `header_size` returns None and `edgeface.vision.photos` refuses the file without decoding it.
"""

from __future__ import annotations

import struct

# A 40 MP BGR image is 120 MB decoded (plus the decoder's working copy); larger photos can exhaust a Pi.
DEFAULT_MAX_MEGAPIXELS = 40.0

_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD9)})


def header_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) read from the header, or None when the format is not one parsed here."""
    head = bytes(data[:64])
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return width, height
        if head.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", head[6:10])
            return width, height
        if head.startswith(b"BM") and len(head) >= 26:
            return _bmp_size(head)
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            return _webp_size(head)
        if head[:4] == b"\x59\xa6\x6a\x95":  # Sun raster
            width, height = struct.unpack(">ii", head[4:12])
            return width, height
        if len(head) > 2 and head[0:1] == b"P" and head[1:2] in b"1234567Ff":
            return _pnm_size(bytes(data[:4096]))
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
    except (struct.error, LookupError, ValueError):  # a truncated or malformed header (PAM: a missing key)
        return None
    return None


def _jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    at, end = 2, len(data)
    while at + 4 <= end:
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            at += 2
            continue
        (length,) = struct.unpack(">H", bytes(data[at + 2 : at + 4]))
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", bytes(data[at + 5 : at + 9]))
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header: not a valid JPEG
            return None
        at += 2 + length
    return None


def _bmp_size(head: bytes) -> tuple[int, int]:
    (header_bytes,) = struct.unpack("<I", head[14:18])
    if header_bytes == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", head[18:22])
        return width, height
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    return None


def _pnm_size(head: bytes) -> tuple[int, int] | None:
    if head[1:2] == b"7":  # PAM: WIDTH and HEIGHT lines
        fields = dict(
            line.split(maxsplit=1) for line in head.split(b"\n")[1:] if len(line.split(maxsplit=1)) == 2
        )
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    tokens: list[bytes] = []
    for line in head[2:].split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            return int(tokens[0]), int(tokens[1])
    return None


def _tiff_size(data: bytes | memoryview) -> tuple[int, int] | None:
    order = "<" if bytes(data[:2]) == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", bytes(data[4:8]))
    (count,) = struct.unpack(order + "H", bytes(data[ifd : ifd + 2]))
    found: dict[int, int] = {}
    for i in range(min(count, 512)):
        entry = bytes(data[ifd + 2 + 12 * i : ifd + 14 + 12 * i])
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            value = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8 : 10 if kind == 3 else 12])
            found[tag] = value[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None

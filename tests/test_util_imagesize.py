"""`header_size`: an image's size from its header bytes, checked against what OpenCV itself writes and decodes.

Every file here is either written by OpenCV or hand-made in a layout OpenCV decodes, and OpenCV's decoded
shape is the expected answer. `test_damage.py` covers the pixel cap through `read_image` and the real photos;
here: every variant each parser handles, truncated and corrupt headers, and formats left to the decoder.
"""

from __future__ import annotations

import inspect
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeface.errors import ImageError
from edgeface.util.imagesize import DEFAULT_MAX_MEGAPIXELS, header_size
from edgeface.vision.photos import max_pixels_of, read_image

# (name, suffix, imencode params, grey): each a distinct header layout.
WRITTEN = [
    ("png", ".png", [], False),
    ("png-grey", ".png", [], True),
    ("jpeg-baseline", ".jpg", [], False),
    ("jpeg-progressive", ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], False),
    ("jpeg-grey", ".jpg", [], True),
    ("gif", ".gif", [], False),
    ("bmp-24bit", ".bmp", [], False),
    ("bmp-8bit", ".bmp", [], True),
    ("webp-lossless-vp8l", ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], False),
    ("webp-lossy-vp8", ".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], False),
    ("ppm", ".ppm", [], False),
    ("pgm", ".pgm", [], True),
    ("ppm-ascii", ".ppm", [cv2.IMWRITE_PXM_BINARY, 0], False),
    ("pam", ".pam", [], False),
    ("tiff", ".tiff", [], False),
    ("tiff-uncompressed", ".tiff", [cv2.IMWRITE_TIFF_COMPRESSION, cv2.IMWRITE_TIFF_COMPRESSION_NONE], False),
]
SIZES = [(41, 30), (1, 1), (7, 300), (16000, 2)]  # (width, height); 16000 fits WebP's 14-bit fields


def encode(suffix: str, params: list[int], image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(suffix, image, params)
    assert ok, suffix
    return buffer.tobytes()


def image_of(width: int, height: int, grey: bool = False, seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    return pixels[..., 0].copy() if grey else pixels


def decoded_size(data: bytes) -> tuple[int, int]:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, "OpenCV cannot decode the test file"
    return image.shape[1], image.shape[0]


def written(name: str, width: int, height: int) -> bytes:
    _, suffix, params, grey = next(w for w in WRITTEN if w[0] == name)
    return encode(suffix, params, image_of(width, height, grey))


# --- what OpenCV writes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "suffix", "params", "grey"), WRITTEN, ids=[w[0] for w in WRITTEN])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_the_header_size_is_the_size_opencv_decodes(
    name: str, suffix: str, params: list[int], grey: bool, size: tuple[int, int]
) -> None:
    data = encode(suffix, params, image_of(*size, grey))
    assert decoded_size(data) == size
    assert header_size(data) == size
    assert header_size(memoryview(np.frombuffer(data, np.uint8))) == size  # as `read_image` passes it


def test_webp_with_alpha_uses_the_extended_vp8x_header() -> None:
    rgba = np.dstack([image_of(41, 30), np.full((30, 41), 128, np.uint8)])
    data = encode(".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], rgba)
    assert data[12:16] == b"VP8X"
    assert header_size(data) == decoded_size(data) == (41, 30)


def test_sizes_beyond_16_bits_are_read_whole() -> None:
    for suffix in (".png", ".tiff", ".ppm", ".pam", ".bmp"):
        data = encode(suffix, [], np.zeros((1, 70_000, 3), np.uint8))
        assert header_size(data) == decoded_size(data) == (70_000, 1), suffix


# --- hand-made layouts OpenCV also decodes -----------------------------------------------------------------
def bmp(width: int, height: int, core_header: bool = False) -> bytes:
    """A 24-bit BMP; negative `height` is a top-down one; `core_header`: the OS/2 12-byte header."""
    stride = (width * 3 + 3) & ~3
    pixels = bytes(stride * abs(height))
    if core_header:
        info = struct.pack("<IHHHH", 12, width, height, 1, 24)
    else:
        info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


def tiff(width: int, height: int, order: str, width_type: int) -> bytes:
    """A minimal uncompressed 8-bit grey TIFF; `width_type` 3 (SHORT) or 4 (LONG) for ImageWidth."""
    entries = [
        (256, width_type, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 0),  # strip offset, filled in below
        (277, 3, 1),
        (278, 4, height),
        (279, 4, width * height),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    strip = 8 + ifd_size
    body = struct.pack(order + "H", len(entries))
    for tag, kind, value in entries:
        value = strip if tag == 273 else value
        packed = struct.pack(order + "HHI", tag, kind, 1)
        packed += struct.pack(order + "HH", value, 0) if kind == 3 else struct.pack(order + "I", value)
        body += packed
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    return magic + struct.pack(order + "I", 8) + body + struct.pack(order + "I", 0) + bytes(width * height)


def jpeg_with_padding(width: int, height: int) -> bytes:
    """A JPEG with 0xFF fill bytes before a marker and a 60 kB comment segment before the frame header."""
    data = written("jpeg-baseline", width, height)
    comment = b"\xff\xfe" + struct.pack(">H", 60_002) + bytes(60_000)
    return data[:2] + b"\xff\xff\xff" + comment + data[2:]


def webp_with_scale_bits(width: int, height: int) -> bytes:
    """A lossy WebP whose frame header sets the two upscaling-hint bits above each 14-bit size."""
    data = bytearray(written("webp-lossy-vp8", width, height))
    data[27] |= 0x40
    data[29] |= 0xC0
    return bytes(data)


HAND_MADE = {
    "bmp-top-down": bmp(41, -30),
    "bmp-os2-core-header": bmp(41, 30, core_header=True),
    "tiff-little-endian-short": tiff(41, 30, "<", 3),
    "tiff-big-endian-short": tiff(41, 30, ">", 3),
    "tiff-big-endian-long": tiff(41, 30, ">", 4),
    "pgm-with-comments": b"P5\n# made 9999 9999\n41 # width\n# height next\n30\n255\n" + bytes(41 * 30),
    "pam-height-first": b"P7\nHEIGHT 30\nWIDTH 41\nDEPTH 1\nMAXVAL 255\nTUPLTYPE GRAYSCALE\nENDHDR\n"
    + bytes(41 * 30),
    "jpeg-fill-bytes-and-long-segment": jpeg_with_padding(41, 30),
    "webp-vp8-scale-bits": webp_with_scale_bits(41, 30),
}


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_hand_made_layouts_match_the_decoded_size(name: str) -> None:
    data = HAND_MADE[name]
    assert decoded_size(data) == (41, 30)
    assert header_size(data) == (41, 30)


# --- truncated and corrupt headers -------------------------------------------------------------------------
TRUNCATED = [(w[0], 41, 30) for w in WRITTEN] + [("tiff-uncompressed", 300, 200)]


@pytest.mark.parametrize(
    ("name", "width", "height"), TRUNCATED, ids=[f"{n}-{w}x{h}" for n, w, h in TRUNCATED]
)
def test_a_truncated_header_never_raises_nor_claims_more_than_the_image(
    name: str, width: int, height: int
) -> None:
    data = written(name, width, height)
    for end in range(min(len(data), 1024)):
        size = header_size(data[:end])
        assert size is None or (size[0] <= width and size[1] <= height), (end, size)


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_a_truncated_hand_made_header_never_raises_nor_claims_more(name: str) -> None:
    data = HAND_MADE[name]
    for end in range(min(len(data), 512)):
        size = header_size(data[:end])
        assert size is None or (size[0] <= 41 and size[1] <= 30), (end, size)


def _jpeg_segments_before_sof(data: bytes) -> int:
    """Offset of the first frame header (SOF) marker in an OpenCV JPEG."""
    at = 2
    while data[at + 1] not in (0xC0, 0xC2):
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    return at


def test_corrupt_jpeg_structure_gives_none() -> None:
    data = written("jpeg-baseline", 41, 30)
    sof = _jpeg_segments_before_sof(data)
    # A scan before any frame header: an empty SOS segment, skipped by its length, would land on the SOF.
    assert header_size(data[:sof] + b"\xff\xda\x00\x02" + data[sof:]) is None
    assert header_size(data[:sof] + b"\xff\xe1\x00\x01" + data[sof:]) is None  # segment length below 2
    assert header_size(data[:sof] + b"\x00" + data[sof:]) is None  # no marker where one must be
    assert header_size(data[:sof]) is None  # ends before the frame header


def test_corrupt_headers_of_other_formats_give_none() -> None:
    png = written("png", 41, 30)
    assert header_size(png[:12] + b"IDAT" + png[16:]) is None  # IHDR must come first
    tif = tiff(41, 30, "<", 3)
    assert header_size(tif[:4] + struct.pack("<I", 1 << 30) + tif[8:]) is None  # IFD beyond the data
    no_height = tif.replace(struct.pack("<HHI", 257, 4, 1), struct.pack("<HHI", 999, 4, 1))
    assert header_size(no_height) is None
    many = tif[:8] + struct.pack("<H", 65_535) + tif[10:]  # an entry table that runs off the end
    assert header_size(many) is None
    assert header_size(b"P7\nWIDTH 41\nDEPTH 3\nMAXVAL 255\nENDHDR\n") is None  # PAM without HEIGHT
    assert header_size(b"P7\nHEIGHT 30\nENDHDR\n") is None
    assert header_size(b"P6\nwide 30\n255\n") is None
    assert header_size(b"RIFF\x00\x00\x00\x00WEBPVP8Z" + bytes(40)) is None  # unknown WebP chunk


def test_tiff_entries_are_read_up_to_512() -> None:
    """The entry table is read for at most 512 entries: a hostile count costs bounded work."""

    def with_filler(filler: int, size_first: bool) -> bytes:
        size = [struct.pack("<HHII", 256, 4, 1, 41), struct.pack("<HHII", 257, 4, 1, 30)]
        dummy = [struct.pack("<HHII", 305, 2, 4, 0)] * filler
        entries = size + dummy if size_first else dummy + size
        return b"II*\x00" + struct.pack("<IH", 8, len(entries)) + b"".join(entries) + bytes(4)

    assert header_size(with_filler(600, size_first=True)) == (41, 30)
    assert header_size(with_filler(510, size_first=False)) == (41, 30)  # entries 510 and 511
    assert header_size(with_filler(600, size_first=False)) is None


def test_a_pam_without_its_size_is_an_image_error_not_a_crash(tmp_path) -> None:
    path = tmp_path / "broken.pam"
    path.write_bytes(b"P7\nWIDTH 41\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + bytes(41 * 30 * 3))
    with pytest.raises(ImageError, match=r"broken\.pam: not a decodable image"):
        read_image(path)


MAGICS = [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"\xff\xd8",
    b"\xff\xd8\xff\xe0",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    *(b"P%d" % n for n in range(1, 8)),
    b"P7\nWIDTH ",
    b"II*\x00",
    b"MM\x00*",
]


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=80), newlines=st.booleans())
def test_any_bytes_after_a_known_magic_give_a_size_or_none(magic: bytes, tail: bytes, newlines: bool) -> None:
    data = magic + (tail.replace(b"\x00", b"\n") if newlines else tail)
    size = header_size(data)
    assert size is None or (len(size) == 2 and all(isinstance(v, int) for v in size))
    assert header_size(memoryview(data)) == size


# --- formats with a simple header, and the one refused ----------------------------------------------------
@pytest.mark.parametrize("suffix", [".sr", ".pfm"])
def test_sun_raster_and_pfm_headers_give_the_decoded_size(suffix: str) -> None:
    image = image_of(41, 30).astype(np.float32) / 255 if suffix == ".pfm" else image_of(41, 30)
    data = encode(suffix, [], image)
    assert header_size(data) == decoded_size(data) == (41, 30)


def test_radiance_hdr_gives_none_so_read_image_refuses_it() -> None:
    data = encode(".hdr", [], image_of(41, 30).astype(np.float32) / 255)
    assert decoded_size(data) == (41, 30)  # OpenCV reads it, but its size is not in a fixed header
    assert header_size(data) is None


@pytest.mark.parametrize(
    "data", [b"", b"P", b"P8 41 30", b"GIF90a" + bytes(10), b"\x00" * 64, b"hello world"]
)
def test_unknown_bytes_give_none(data: bytes) -> None:
    assert header_size(data) is None


# --- the default cap --------------------------------------------------------------------------------------
def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_the_default_cap_is_40_megapixels_and_read_image_applies_it_from_the_header(tmp_path) -> None:
    assert DEFAULT_MAX_MEGAPIXELS == 40.0
    assert inspect.signature(read_image).parameters["max_pixels"].default == max_pixels_of(40.0) == 40_000_000
    path = tmp_path / "just-over.png"
    path.write_bytes(png_claiming(8000, 5001))
    assert header_size(path.read_bytes()) == (8000, 5001)
    with pytest.raises(ImageError, match=r"8000x5001 is 40\.0 megapixels, above the cap of 40 "):
        read_image(path)

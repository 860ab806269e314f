"""Large-gallery encoding and decoding that never holds the GIL for long and copies nothing it need not.

Recognition runs in another thread of the same process; one big C call (`json.loads` of 100k rows, copying a
200 MB buffer) would stall it past a frame deadline. So identities JSON is parsed and written row by row,
`.npy` vectors are read in place (`np.frombuffer` on the verified bytes after checking the header: a
float32 array cannot hold pickles), and checks over the vectors run in row blocks.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import numpy as np

from edgeface.sync.errors import Rejected

ROW_BLOCK = 8192
_DECODER = json.JSONDecoder()
_SPACE = " \t\n\r"


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at


def parse_rows(raw: bytes | memoryview) -> list[object]:
    """Parse a JSON array one element at a time (same result as `json.loads` for an array)."""
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("payload_invalid", f"identities are not UTF-8 ({exc})") from exc
    at = _skip(text, 0)
    if not text.startswith("[", at):
        raise Rejected("payload_invalid", "identities must be a JSON array")
    rows: list[object] = []
    at = _skip(text, at + 1)
    if text.startswith("]", at):
        at += 1
    else:
        while True:
            try:
                row, at = _DECODER.raw_decode(text, at)
            except ValueError as exc:  # JSONDecodeError, or an integer beyond the digit limit
                raise Rejected("payload_invalid", f"identities are not JSON ({exc})") from exc
            except RecursionError as exc:
                raise Rejected("payload_invalid", "identities JSON is nested too deeply") from exc
            rows.append(row)
            at = _skip(text, at)
            if text.startswith(",", at):
                at = _skip(text, at + 1)
            elif text.startswith("]", at):
                at += 1
                break
            else:
                raise Rejected("payload_invalid", f"identities JSON: expected ',' or ']' at {at}")
    if _skip(text, at) != len(text):
        raise Rejected("payload_invalid", "identities JSON: data after the array")
    return rows


def encode_rows(ids: Sequence[str], names: Sequence[str], samples: Sequence[int]) -> bytes:
    """Byte-identical to `Gallery.identities_json()`, built row by row."""
    parts = [
        json.dumps({"id": i, "name": n, "samples": s}, ensure_ascii=False, separators=(",", ":")).encode()
        for i, n, s in zip(ids, names, samples, strict=True)
    ]
    return b"[" + b",".join(parts) + b"]"


def read_npy_f32(raw: bytes | memoryview, rows: int, dim: int) -> np.ndarray:
    """A read-only (rows, dim) little-endian float32 view of `.npy` bytes; anything else is rejected."""
    view = memoryview(raw)
    head = io.BytesIO(bytes(view[: min(len(view), 65536)]))
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (
        Exception
    ) as exc:  # numpy's header parser can raise ValueError, SyntaxError, tokenize.TokenError...
        raise Rejected("payload_invalid", f"vectors: not a valid .npy header ({exc})") from exc
    if dtype != np.dtype("<f4") or fortran or tuple(shape) != (rows, dim):
        raise Rejected(
            "payload_invalid",
            f"vectors must be C-order little-endian float32 {(rows, dim)}, got {dtype} {shape}"
            f"{' fortran' if fortran else ''}",
        )
    offset = head.tell()
    if len(view) - offset != rows * dim * 4:
        raise Rejected("payload_invalid", f"vectors: {len(view) - offset} data bytes for shape {(rows, dim)}")
    vectors = np.frombuffer(view, dtype="<f4", count=rows * dim, offset=offset).reshape(rows, dim)
    vectors.flags.writeable = (
        False  # verified bytes: a writable buffer (chunks assembled in place) stays unchanged
    )
    return vectors


def check_unit_rows(vectors: np.ndarray, tolerance: float = 1e-3) -> str | None:
    """None if every row is finite and L2-normalised, else what is wrong (checked in row blocks)."""
    for start in range(0, len(vectors), ROW_BLOCK):
        block = vectors[start : start + ROW_BLOCK]
        if not np.isfinite(block).all():
            return "vectors contain NaN or infinity"
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        if float(np.abs(norms - 1.0).max()) > tolerance:
            return "vectors are not L2-normalised"
    return None


def npy_view(vectors: np.ndarray) -> memoryview:
    """Byte-identical to `npy_bytes(vectors)` for a C-order float32 array, filled in row blocks."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(vectors))
    head = header.getvalue()
    # np.empty, not bytearray(n): that zero-fills all of it at once, holding the GIL (~100 ms at 200 MB)
    out = np.empty(len(head) + vectors.nbytes, np.uint8)
    out[: len(head)] = np.frombuffer(head, np.uint8)
    flat = vectors.reshape(-1).view(np.uint8)
    step = ROW_BLOCK * max(1, vectors.shape[1] if vectors.ndim == 2 else 1) * 4
    target = out[len(head) :]
    for start in range(0, len(flat), step):
        target[start : start + step] = flat[start : start + step]
    return out.data  # a memoryview of the array

"""Large-payload helpers give exactly what the simple json/numpy calls give, and reject what they must."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeface.identity.gallery import npy_bytes
from edgeface.sync.errors import Rejected
from edgeface.sync.rawio import ROW_BLOCK, check_unit_rows, encode_rows, npy_view, parse_rows, read_npy_f32
from tests.factories import make_gallery, unit_vectors


@pytest.mark.parametrize(
    "text",
    ["[]", " [ ] ", '[{"id":"a","name":"Ä","samples":3}]', '[1, "two", [3], {"4": null}]', "\n[\t1 ,2\r]\n"],
)
def test_parse_rows_equals_json_loads(text: str) -> None:
    assert parse_rows(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"id": 1}', "must be a JSON array"),
        (b"[1,2", "expected ',' or ']'"),
        (b"[1 2]", "expected ',' or ']'"),
        (b"[1,]", "not JSON"),
        (b"[1] x", "data after the array"),
        (b"[\xff]", "not UTF-8"),
        (b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]", "nested too deeply"),
    ],
)
def test_parse_rows_rejects(raw: bytes, message: str) -> None:
    with pytest.raises(Rejected, match=message):
        parse_rows(raw)


def test_encode_rows_is_byte_identical_to_the_gallery_json() -> None:
    gallery = make_gallery(20)
    assert encode_rows(gallery.ids, gallery.names, gallery.samples) == gallery.identities_json()
    assert encode_rows([], [], []) == b"[]"


@pytest.mark.parametrize("rows", [0, 3, ROW_BLOCK + 5])
def test_npy_view_is_npy_bytes_and_reads_back_in_place(rows: int) -> None:
    vectors = unit_vectors(rows, 16)
    view = npy_view(vectors)
    assert bytes(view) == npy_bytes(vectors)
    back = read_npy_f32(view, rows, 16)
    assert np.array_equal(back, vectors) and not back.flags.writeable


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (npy_bytes(np.zeros((2, 4), np.float64)), "float32"),
        (npy_bytes(np.asfortranarray(np.zeros((4, 2), np.float32))), "float32"),
        (npy_bytes(np.zeros((3, 4), np.float32)), r"\(2, 4\)"),
        (npy_bytes(np.zeros((2, 4), np.float32))[:-4], "data bytes"),
        (npy_bytes(np.zeros((2, 4), np.float32)) + b"\0" * 4, "data bytes"),
        (b"not an npy file at all", "not a valid .npy header"),
    ],
)
def test_read_npy_rejects(raw: bytes, message: str) -> None:
    with pytest.raises(Rejected, match=message):
        read_npy_f32(raw, 2, 4)


def test_check_unit_rows_finds_the_bad_row_in_any_block() -> None:
    vectors = unit_vectors(ROW_BLOCK + 10, 8)
    assert check_unit_rows(vectors) is None
    scaled = vectors.copy()
    scaled[ROW_BLOCK + 3] *= 2
    assert check_unit_rows(scaled) == "vectors are not L2-normalised"
    broken = vectors.copy()
    broken[1, 0] = np.nan
    assert check_unit_rows(broken) == "vectors contain NaN or infinity"

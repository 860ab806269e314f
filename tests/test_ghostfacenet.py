"""GhostFaceNetV1: architecture facts, Keras 2 .h5 round trip, delegate-friendly rewrite, int8 export."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeface.vision.runtime import TFLiteModel

pytestmark = pytest.mark.export

ROOT = Path(__file__).resolve().parents[1]
WIDTH, SEED = 0.5, 7


def _sample(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, 112, 112, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def small() -> Any:
    from edgeface_tools.export.ghostfacenet import build_ghostfacenet_v1, randomize_statistics

    return randomize_statistics(build_ghostfacenet_v1(WIDTH, 2, seed=SEED), SEED, _sample(8))


def test_published_w13_channel_plan() -> None:
    """Channel counts of the published W1.3 checkpoints (stem 20, last conv 664, SE widths as shipped)."""
    from edgeface_tools.export.ghostfacenet import BLOCKS, conv_channel_plan, make_divisible

    plan = conv_channel_plan(1.3)
    assert plan[0] == 20 and plan[-1] == 664
    expands = [make_divisible(b.expand * 1.3) for b in BLOCKS]
    assert expands == [20, 64, 92, 92, 156, 312, 260, 240, 240, 624, 872, 872, 1248, 1248, 1248, 664]
    assert [make_divisible(b.out * 1.3) for b in BLOCKS] == [20, 32, 32, 52, 52] + [104] * 4 + [144] * 2 + [
        208
    ] * 5
    se = [make_divisible(e * b.se_ratio) for e, b in zip(expands, BLOCKS, strict=True) if b.se_ratio]
    assert se == [24, 40, 156, 220, 220, 312, 168]


@pytest.mark.parametrize(("strides", "gdc"), [(1, 7), (2, 4)])
def test_w13_variants_shape_and_size(strides: int, gdc: int) -> None:
    from edgeface_tools.export.ghostfacenet import build_ghostfacenet_v1, count_params_and_mflops

    model = build_ghostfacenet_v1(1.3, strides)
    assert model.get_layer("GDC_dw").get_weights()[0].shape == (gdc, gdc, 664, 1)
    assert tuple(model.outputs[0].shape) == (None, 512)
    params, mflops = count_params_and_mflops(model)
    assert 4.0e6 < params < 4.2e6  # the paper's ~4.1 M
    assert (200 < mflops < 230) if strides == 1 else (55 < mflops < 65)


def test_keras2_hard_sigmoid_is_not_keras3s() -> None:
    import keras
    from edgeface_tools.export.ghostfacenet_layers import Keras2HardSigmoid

    x = np.array([[-3.0, -2.5, -1.0, 0.0, 1.0, 2.0, 2.5, 3.0]], np.float32)
    ours = keras.ops.convert_to_numpy(Keras2HardSigmoid()(x))
    np.testing.assert_allclose(ours, np.clip(0.2 * x + 0.5, 0, 1), atol=1e-7)
    keras3 = keras.ops.convert_to_numpy(keras.activations.hard_sigmoid(x))
    assert abs(ours[0, 5] - keras3[0, 5]) > 0.05  # 0.9 vs 0.833 at x = 2


_LEGACY_SAVE = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    from edgeface_tools.export.ghostfacenet import GhostFaceNetConfig, build, randomize_statistics
    out = sys.argv[1]
    rng = np.random.default_rng(0)
    model = build(GhostFaceNetConfig(width={width}, strides=2, gdc_bias=False), seed={seed}, legacy=True)
    model = randomize_statistics(model, {seed}, rng.normal(0, 1, (8, 112, 112, 3)).astype("float32"))
    assert type(model).__module__.startswith("tf_keras"), type(model).__module__
    x = rng.normal(0, 1, (3, 112, 112, 3)).astype("float32")
    np.save(out + "/x.npy", x)
    np.save(out + "/y.npy", model.predict(x, verbose=0))
    model.save(out + "/model.h5")
    model.save_weights(out + "/weights.h5")
    """
)


@pytest.fixture(scope="module")
def keras2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GhostFaceNet saved by real Keras 2 (tf_keras) in .h5, with its outputs, made in a subprocess."""
    out = tmp_path_factory.mktemp("keras2")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    script = _LEGACY_SAVE.format(width=WIDTH, seed=SEED)
    done = subprocess.run([sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"tf_keras could not build/save the Keras 2 model:\n{done.stderr[-3000:]}")
    return out


@pytest.mark.parametrize("name", ["model.h5", "weights.h5"])
def test_keras2_h5_round_trip(keras2_checkpoint: Path, name: str) -> None:
    from edgeface_tools.export.ghostfacenet import load_checkpoint

    model = load_checkpoint(keras2_checkpoint / name)
    assert model.get_layer("GDC_conv").use_bias is False and tuple(model.outputs[0].shape) == (None, 512)
    x, expected = np.load(keras2_checkpoint / "x.npy"), np.load(keras2_checkpoint / "y.npy")
    got = model.predict(x, verbose=0)
    scale = float(np.abs(expected).max())
    assert np.abs(got - expected).max() <= 1e-5 * max(scale, 1.0), (np.abs(got - expected).max(), scale)


def test_load_rejects_other_models(tmp_path: Path) -> None:
    import h5py
    from edgeface_tools.export import ExportError
    from edgeface_tools.export.ghostfacenet import load_checkpoint

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        f.create_group("dense").attrs["weight_names"] = [b"dense/kernel:0"]
        f["dense"]["dense/kernel:0"] = np.zeros((4, 2), np.float32)
    with pytest.raises(ExportError, match="not a GhostFaceNet checkpoint"):
        load_checkpoint(path)
    with pytest.raises(ExportError, match="not found"):
        load_checkpoint(tmp_path / "missing.h5")


def test_rewritten_activations_are_exact() -> None:
    import keras
    from edgeface_tools.export.ghostfacenet_layers import AffineReluPReLU, Keras2HardSigmoid, Relu6HardSigmoid

    z = np.linspace(-6, 6, 97, dtype=np.float32).reshape(1, 97, 1, 1) * np.ones((1, 1, 1, 4), np.float32)
    for alpha in ([0.0, 0.25, 0.7, 1.0], [-0.3, 0.1, 1.5, 2.0], [1.0, 1.2, 3.0, 1.0]):
        a = np.asarray(alpha, np.float32)
        got = keras.ops.convert_to_numpy(AffineReluPReLU(alpha)(z))
        np.testing.assert_allclose(got, np.where(z > 0, z, a * z), atol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(Relu6HardSigmoid()(z)),
        keras.ops.convert_to_numpy(Keras2HardSigmoid()(z)),
        atol=1e-6,
    )


def test_delegate_friendly_is_equivalent(small: Any) -> None:
    from edgeface_tools.export.prelu import make_delegate_friendly

    friendly = make_delegate_friendly(small)
    kinds = {type(layer).__name__ for layer in friendly.layers}
    assert "PReLU" not in kinds and "Keras2HardSigmoid" not in kinds and "Reshape" not in kinds
    x = _sample(4, seed=3)
    expected, got = small.predict(x, verbose=0), friendly.predict(x, verbose=0)
    assert np.abs(expected).max() > 0.1  # a live signal, not a collapsed net
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.fixture(scope="module")
def face_crops(faces5: Path, models_dir: Path) -> np.ndarray:
    """Real faces5 photos aligned to the ArcFace 112 template by the device's detector and aligner."""
    from edgeface_tools.export import calibration
    from edgeface_tools.export.cli import ghostfacenet_spec

    spec = ghostfacenet_spec("ghostfacenet-test", (112, 112), 512, {})
    photos = [
        p for person in sorted(faces5.iterdir()) if person.is_dir() for p in sorted(person.glob("*.jpg"))[:3]
    ]
    crops, _, _ = calibration.aligned_crops(photos, spec.align_spec(), spec.input_spec(), models_dir)
    return crops


def test_int8_export_runs_and_rewrite_is_fully_delegated(
    small: Any, face_crops: np.ndarray, tmp_path: Path
) -> None:
    from edgeface_tools.export.prelu import delegate_partitions, make_delegate_friendly
    from edgeface_tools.export.quantize import convert_int8, op_names

    original = convert_int8(small, face_crops, tmp_path / "original.int8.tflite")
    friendly = convert_int8(make_delegate_friendly(small), face_crops, tmp_path / "friendly.int8.tflite")
    assert "PRELU" in op_names(original) and delegate_partitions(original) > 1
    ops = set(op_names(friendly))
    assert not ops & {"PRELU", "MAXIMUM", "MINIMUM", "RELU", "SHAPE", "PACK"}, ops
    assert delegate_partitions(friendly) == 1
    reference = small.predict(face_crops[:4], verbose=0)
    for path in (original, friendly):
        with TFLiteModel(path, num_threads=2) as runner:
            assert runner.input_dtype == np.int8
            out = np.concatenate([runner.run(crop[np.newaxis])[0] for crop in face_crops[:4]])
        cosine = np.sum(out * reference, 1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
        assert out.shape == (4, 512) and cosine.min() > 0.9, (path.name, cosine)


def test_depthwise_split_is_equivalent(small: Any) -> None:
    """Every ghost-module depthwise conv gets its own equalised input copy; the function does not change."""
    from edgeface_tools.export.depthwise_split import SUFFIX, candidates, split_depthwise_inputs
    from edgeface_tools.export.prelu import make_delegate_friendly

    x = _sample(4, seed=5)
    expected = small.predict(x, verbose=0)
    found = candidates(small)
    assert len(found) >= 16  # at least one per ghost module with a shared primary output
    split, done = split_depthwise_inputs(small, _sample(8, seed=6), min_noise=0.0)
    assert {d.depthwise for d in done} == {chain[-1].name for chain, _ in found}
    assert all(d.spread_before >= 1.0 for d in done)
    copies = [layer.name for layer in split.layers if layer.name.endswith(SUFFIX)]
    assert len(copies) >= 3 * len(done)  # conv, BN (PReLU) and the depthwise conv itself
    got = make_delegate_friendly(split).predict(x, verbose=0)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_channel_equalisation_is_exact_and_evens_ranges(small: Any) -> None:
    """Graph-wide channel rescaling keeps the function and brings every channel group to range 1."""
    import keras
    from edgeface_tools.export.channel_scales import channel_absmax, equalize_channels

    model = keras.models.clone_model(small)
    model.set_weights(small.get_weights())
    x, sample = _sample(4, seed=8), _sample(8, seed=9)
    expected = model.predict(x, verbose=0)
    bn = [layer.name for layer in model.layers if type(layer).__name__ == "BatchNormalization"][:6]
    before = channel_absmax(model, bn, sample)
    done = equalize_channels(model, sample)
    assert done.scaled > 0 and done.scale_max > done.scale_min
    got = model.predict(x, verbose=0)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    after = channel_absmax(model, bn, sample)
    assert any(float(r.max() / r.min()) > 2 for r in before.values())  # uneven to begin with
    # every channel's group now peaks at 1, so no channel of these tensors exceeds it (within float error)
    assert all(float(after[n].max()) <= 1.0 + 1e-3 for n in bn)
    assert max(float(r.max()) for r in after.values()) >= 1.0 - 1e-3


def test_prelu_flip_is_exact(small: Any) -> None:
    """Slopes beyond +-1 move into the layers around the PReLU; the function does not change."""
    import keras
    from edgeface_tools.export.prelu_flip import flip_steep_slopes

    model = keras.models.clone_model(small)
    model.set_weights(small.get_weights())
    prelus = [layer for layer in model.layers if type(layer).__name__ == "PReLU"]
    rng = np.random.default_rng(11)
    for layer in prelus:  # trained nets have slopes far below -1; the random net's are all 0.25
        (alpha,) = layer.get_weights()
        layer.set_weights([rng.uniform(-6.0, 2.0, alpha.shape).astype(np.float32)])
    x = _sample(4, seed=12)
    expected = model.predict(x, verbose=0)
    assert flip_steep_slopes(model) > 0
    assert all(layer.get_weights()[0].min() >= -1.0 for layer in prelus)
    # slopes > 1 are flipped wherever the output's sign can be absorbed (all but the residual-stream PReLUs)
    assert sum(int((layer.get_weights()[0] > 1.0).any()) for layer in prelus) < len(prelus) // 4
    got = model.predict(x, verbose=0)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()

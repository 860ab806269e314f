"""int8 tuning of the export tool: the two-step conversion, activation ranges by least error, bias correction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeface.vision.runtime import TFLiteModel

pytestmark = pytest.mark.export


@pytest.fixture(scope="module")
def model() -> Any:
    """A small random-weight GhostFaceNet in its delegate-friendly form, as the export tool converts it."""
    from edgeface_tools.export.ghostfacenet import build_ghostfacenet_v1, randomize_statistics
    from edgeface_tools.export.prelu import make_delegate_friendly

    sample = np.random.default_rng(0).normal(0.0, 1.0, (8, 112, 112, 3)).astype(np.float32)
    return make_delegate_friendly(randomize_statistics(build_ghostfacenet_v1(0.5, 2, seed=3), 3, sample))


@pytest.fixture(scope="module")
def crops(faces5: Path, models_dir: Path) -> np.ndarray:
    """Real faces5 photos aligned as on the device (3 per identity)."""
    from edgeface_tools.export import calibration
    from edgeface_tools.export.cli import ghostfacenet_spec

    spec = ghostfacenet_spec("tuning-test", (112, 112), 512, {})
    photos = [
        p for person in sorted(faces5.iterdir()) if person.is_dir() for p in sorted(person.glob("*.jpg"))[:3]
    ]
    result, _, _ = calibration.aligned_crops(photos, spec.align_spec(), spec.input_spec(), models_dir)
    return result


@pytest.fixture(scope="module")
def converted(model: Any, crops: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgeface_tools.export import quantize

    out = tmp_path_factory.mktemp("tuning")
    return {
        "float32": quantize.convert_float32(model, out / "m.float32.tflite"),
        "int8": quantize.convert_int8(model, crops, out / "m.int8.tflite"),
        "two_step": quantize.convert_int8(model, crops, out / "two.int8.tflite", adjust_ranges=lambda c: c),
    }


def _outputs(path: Path | bytes, crops: np.ndarray, tmp: Path) -> np.ndarray:
    if isinstance(path, bytes):
        (tmp / "content.tflite").write_bytes(path)
        path = tmp / "content.tflite"
    with TFLiteModel(path, num_threads=2) as runner:
        return np.concatenate([runner.run(crop[np.newaxis])[0] for crop in crops]).astype(np.float64)


def test_two_step_conversion_is_the_converters_own(converted: dict[str, Path], crops: np.ndarray) -> None:
    """calibrate + quantize_calibrated (TF private entry points) with the ranges untouched gives the same
    int8 model as the one-call converter: same ops, same outputs."""
    from edgeface_tools.export.quantize import op_names

    assert op_names(converted["two_step"]) == op_names(converted["int8"])
    tmp = converted["int8"].parent
    np.testing.assert_array_equal(
        _outputs(converted["two_step"], crops, tmp), _outputs(converted["int8"], crops, tmp)
    )


def test_expected_error_matches_simulated_rounding() -> None:
    """The histogram's expected error (d^2/12 inside, distance^2 outside) agrees with actually rounding the
    values to int8 over the same range, for full and clipped ranges."""
    from edgeface_tools.export.ranges import BINS, _Histogram, expected_error

    rng = np.random.default_rng(1)
    values = np.concatenate([rng.laplace(0.2, 0.3, 200_000), rng.uniform(-4.0, 6.0, 50)])
    histogram = _Histogram(float(values.min()), float(values.max()), np.zeros(BINS, np.int64))
    histogram.add(values)
    edges = np.linspace(histogram.low, histogram.high, BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for lo, hi in [(histogram.low, histogram.high), (-1.5, 2.0), (-0.8, 0.9)]:
        step = (hi - lo) / 255
        rounded = np.clip(np.round((values - lo) / step), 0, 255) * step + lo
        simulated = float(((rounded - values) ** 2).sum())
        expected = float(expected_error(histogram.counts, centres, np.array(lo), np.array(hi)))
        assert expected == pytest.approx(simulated, rel=0.1), (lo, hi)


@pytest.mark.parametrize("kind", ["uniform", "student_t", "laplace", "one_sided"])
def test_choose_range_is_the_least_error_range_of_the_grid(kind: str) -> None:
    """The chosen range is the one of least *simulated* rounding + clipping error among the candidates;
    a compact tensor keeps its full range, heavy-tailed ones are narrowed."""
    from edgeface_tools.export.ranges import BINS, FRACTIONS, _Histogram, choose_range

    rng = np.random.default_rng(2)
    values = {
        "uniform": rng.uniform(-1.0, 1.0, 100_000),
        "student_t": rng.standard_t(3, 100_000) * 0.1,
        "laplace": rng.laplace(0.0, 0.1, 100_000),
        "one_sided": np.maximum(rng.standard_t(3, 100_000), 0.0),
    }[kind]
    histogram = _Histogram(float(values.min()), float(values.max()), np.zeros(BINS, np.int64))
    histogram.add(values)

    def simulated(lo: float, hi: float) -> float:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        step = (hi - lo) / 255
        return float(((np.clip(np.round((values - lo) / step), 0, 255) * step + lo - values) ** 2).sum())

    lows = FRACTIONS * histogram.low if histogram.low < 0 else [histogram.low]
    best = min(simulated(lo, hi) for lo in lows for hi in FRACTIONS * histogram.high)
    lo, hi = choose_range(histogram)
    assert simulated(lo, hi) <= 1.02 * best
    kept = (hi - lo) / (histogram.high - histogram.low)
    assert kept == 1.0 if kind == "uniform" else kept < 0.96, kept


def test_clip_ranges_narrows_activations_but_not_the_input(model: Any, crops: np.ndarray) -> None:
    from edgeface_tools.export import quantize
    from edgeface_tools.export.ranges import _recorded_ranges, clip_ranges
    from tensorflow.lite.python import schema_py_generated as schema

    calibrated = quantize.calibrate(model, crops)
    clipped, choice = clip_ranges(calibrated, crops)
    before, after = _recorded_ranges(bytearray(calibrated)), _recorded_ranges(bytearray(clipped))
    assert before.keys() == after.keys() and choice.tensors == len(before)
    assert 0 < choice.narrowed < choice.tensors
    for index, (low, high) in before.items():
        assert low[0] <= after[index][0][0] and after[index][1][0] <= high[0]
    subgraphs = [schema.Model.GetRootAs(bytearray(c), 0).Subgraphs(0) for c in (calibrated, clipped)]
    inputs = [s.Tensors(int(s.InputsAsNumpy()[0])).Quantization() for s in subgraphs]
    assert inputs[0].MinAsNumpy()[0] == inputs[1].MinAsNumpy()[0] < 0 < inputs[1].MaxAsNumpy()[0]
    assert inputs[0].MaxAsNumpy()[0] == inputs[1].MaxAsNumpy()[0]


def test_own_bias_buffers_changes_nothing_but_the_sharing(
    converted: dict[str, Path], crops: np.ndarray
) -> None:
    from edgeface_tools.export.bias_correction import own_bias_buffers
    from edgeface_tools.export.quantize import check_full_integer

    original = converted["int8"].read_bytes()
    unshared = own_bias_buffers(original)
    check_full_integer(unshared)
    tmp = converted["int8"].parent
    np.testing.assert_array_equal(_outputs(unshared, crops, tmp), _outputs(converted["int8"], crops, tmp))


def test_bias_correction_removes_the_mean_error_on_the_calibration_crops(
    converted: dict[str, Path], crops: np.ndarray
) -> None:
    """After correction the int8 output's per-channel mean over the calibration crops is float32's, up to
    the output's rounding (measured, like the correction, on the reference kernels: on this untrained net
    XNNPACK's int8 rounding alone moves the output by more); the ops and full-integer property stay."""
    from edgeface_tools.export import quantize
    from edgeface_tools.export.bias_correction import channel_means, correct_biases
    from edgeface_tools.export.layerwise import reference_interpreter

    tmp = converted["int8"].parent
    corrected, done = correct_biases(converted["float32"], converted["int8"].read_bytes(), crops)
    assert done.ops >= 50
    quantize.check_full_integer(corrected)
    (tmp / "corrected.int8.tflite").write_bytes(corrected)
    assert quantize.op_names(tmp / "corrected.int8.tflite") == quantize.op_names(converted["int8"])

    def output_mean(model: Path | bytes) -> np.ndarray:
        interpreter = reference_interpreter(model)
        output = int(interpreter.get_output_details()[0]["index"])
        return channel_means(interpreter, [output], crops)[output]

    wanted = output_mean(converted["float32"])
    before = np.abs(output_mean(converted["int8"]) - wanted).mean()
    after = np.abs(output_mean(corrected) - wanted).mean()
    assert after < 0.2 * before, (before, after)

"""Keras model -> float32 TFLite and full-integer int8 TFLite (post-training quantisation).

The int8 model is built with only `TFLITE_BUILTINS_INT8` allowed. That alone does not stop a float fallback:
for an op without an int8 kernel (e.g. COS) TF 2.21 still emits the op in float behind a DEQUANTIZE, so the
result is checked for any non-integer tensor and refused with the tensors' names. Weights are quantised per
channel (the converter's default), input and output are int8.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from edgeface_tools.export import ExportError

from edgeface.vision.runtime import load_interpreter_class

log = logging.getLogger(__name__)

# Tensor types allowed in a full-integer model: int8 activations/weights, int32 biases and shapes.
_INTEGER_TYPES = frozenset({np.dtype(np.int8), np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.int16)})


def _converter(model: Any) -> tf.lite.TFLiteConverter:
    """A converter for a tf-keras or Keras 3 model; Keras 3's SavedModel export chatter goes to the log."""
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    log.debug("keras export: %s", chatter.getvalue())
    return converter


def _convert(converter: tf.lite.TFLiteConverter) -> bytes:
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        content: bytes = converter.convert()
    log.debug("converter: %s", chatter.getvalue())
    return content


def _write(out: Path, content: bytes) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(content)
    log.info("wrote %s (%.1f MB)", out, len(content) / 1e6)
    return out


def convert_float32(model: Any, out: Path) -> Path:
    """The float32 reference model (no optimisation), written to `out`."""
    try:
        content = _convert(_converter(model))
    except Exception as exc:  # the converter raises several unrelated types
        raise ExportError(f"float32 conversion of {model.name!r} failed: {exc}") from exc
    return _write(Path(out), content)


def representative_dataset(calibration: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Yield the calibration crops one by one, in the given (fixed) order."""
    crops = np.ascontiguousarray(calibration, np.float32)
    if crops.ndim != 4 or crops.shape[-1] != 3 or len(crops) == 0:
        raise ExportError(f"calibration: expected (N, H, W, 3) float32 crops with N > 0, got {crops.shape}")

    def generate() -> Iterator[list[np.ndarray]]:
        for crop in crops:
            yield [crop[np.newaxis]]

    return generate


def _int8_converter(model: Any, calibration: np.ndarray) -> tf.lite.TFLiteConverter:
    expected = tuple(int(d) for d in model.inputs[0].shape[1:])
    if tuple(calibration.shape[1:]) != expected:
        raise ExportError(f"calibration crops have shape {calibration.shape[1:]}, model input is {expected}")
    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter


def calibrate(model: Any, calibration: np.ndarray) -> bytes:
    """The converter's calibration step alone: the float model with every activation tensor's min and max
    over the calibration crops recorded in it (TF's `_experimental_calibrate_only`), not yet quantised."""
    converter = _int8_converter(model, calibration)
    converter._experimental_calibrate_only = True
    return _convert(converter)


def quantize_calibrated(calibrated: bytes) -> bytes:
    """The converter's quantisation step on a calibrated model, as `convert_int8` runs it (the MLIR quantiser
    with per-channel weights and int8 input/output, then equal read-only buffers merged). TF's private entry
    points; `tests/test_export_int8_tuning.py` checks that the result equals the one-call conversion."""
    from tensorflow.lite.python import lite

    content = lite._mlir_quantize(calibrated, False, input_data_type=tf.int8, output_data_type=tf.int8)
    return bytes(lite._deduplicate_readonly_buffers(content))


def convert_int8(
    model: Any, calibration: np.ndarray, out: Path, *, adjust_ranges: Callable[[bytes], bytes] | None = None
) -> Path:
    """Full-integer PTQ: int8 in/out, per-channel weights, BUILTINS_INT8 only; written to `out`.

    `calibration` is (N, H, W, 3) float32, already normalised exactly as the device will feed the model.
    `adjust_ranges`, if given, rewrites the calibrated model's recorded activation ranges (`ranges.clip_ranges`)
    between the converter's calibration and quantisation steps.
    """
    try:
        if adjust_ranges is None:
            content = _convert(_int8_converter(model, calibration))
        else:
            content = quantize_calibrated(adjust_ranges(calibrate(model, calibration)))
    except ExportError:
        raise
    except Exception as exc:  # ConverterError, ValueError, RuntimeError depending on the stage
        raise ExportError(
            f"int8 conversion of {model.name!r} failed (an op without an int8 kernel cannot fall back to "
            f"float under TFLITE_BUILTINS_INT8): {exc}"
        ) from exc
    check_full_integer(content)
    return _write(Path(out), content)


def check_full_integer(content: bytes) -> None:
    """Raise ExportError if any tensor of the model is floating point (a silent float fallback)."""
    interpreter_class, _ = load_interpreter_class()
    interpreter = interpreter_class(model_content=content)
    floats = [
        f"{t['name']} ({np.dtype(t['dtype']).name})"
        for t in interpreter.get_tensor_details()
        if np.dtype(t["dtype"]) not in _INTEGER_TYPES
    ]
    if floats:
        raise ExportError(f"int8 model still has {len(floats)} non-integer tensors: {floats[:8]}")


def op_names(path: Path) -> list[str]:
    """The builtin op names of a .tflite file, in execution order."""
    interpreter_class, _ = load_interpreter_class()
    interpreter = interpreter_class(model_path=str(path))
    return [op["op_name"] for op in interpreter._get_ops_details()]


def delegate_partitions(path: Path, num_threads: int = 2) -> tuple[int, list[str]]:
    """(number of XNNPACK delegate partitions, op names left outside the delegate) of a .tflite file.

    Read from the interpreter's node list after the default delegate is applied (original nodes first,
    one DELEGATE node per partition appended). An original node runs outside the delegate when its output
    is not a partition output but is consumed by a partition, by another such node, or is a model output.
    1 partition and no leftovers means the whole graph runs in XNNPACK.
    """
    interpreter_class, _ = load_interpreter_class()
    interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    nodes = interpreter._interpreter  # no public API exposes the node list
    count = nodes.NumNodes()
    names = [nodes.NodeName(i) for i in range(count)]
    delegates = [i for i in range(count) if names[i] == "DELEGATE"]
    produced_by_delegate = {int(t) for i in delegates for t in nodes.NodeOutputs(i)}
    needed = {int(t) for i in delegates for t in nodes.NodeInputs(i)}
    needed |= {int(d["index"]) for d in interpreter.get_output_details()}
    leftovers: list[int] = []
    for i in reversed([i for i in range(count) if names[i] != "DELEGATE"]):
        outputs = {int(t) for t in nodes.NodeOutputs(i)}
        if outputs & needed and not outputs & produced_by_delegate:
            leftovers.append(i)
            needed |= {int(t) for t in nodes.NodeInputs(i)}
    return len(delegates), [names[i] for i in sorted(leftovers)]

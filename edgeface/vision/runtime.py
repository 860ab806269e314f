"""The one place that picks a TFLite runtime and runs a model with (de)quantisation.

Preference order: ai-edge-litert, tflite-runtime (needs numpy<2; the only choice on 32-bit Pi OS),
then tensorflow.lite.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from edgeface.errors import ModelError

log = logging.getLogger(__name__)

_RUNTIMES: tuple[tuple[str, str], ...] = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow.lite"),
)


def load_interpreter_class(preferred: str | None = None) -> tuple[type, str]:
    """Return (Interpreter class, runtime name), trying runtimes in preference order."""
    candidates = [r for r in _RUNTIMES if preferred in (None, r[1])]
    if not candidates:
        raise ModelError(f"unknown TFLite runtime {preferred!r}; choose from {[r[1] for r in _RUNTIMES]}")
    errors = []
    for module_name, runtime_name in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{runtime_name}: {exc}")
            continue
        return module.Interpreter, runtime_name
    raise ModelError("no TFLite runtime could be imported (pip install ai-edge-litert): " + "; ".join(errors))


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float array -> the tensor's dtype, using its own scale and zero point."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    if scale == 0:
        raise ModelError(f"input tensor {detail['name']!r} is {np.dtype(dtype).name} but has no quantisation")
    info = np.iinfo(dtype)
    q = np.round(x / scale + zero_point)
    return np.asarray(np.clip(q, info.min, info.max), dtype=dtype)


def dequantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Tensor values -> float32, using the tensor's own scale and zero point."""
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    if scale == 0:
        return x.astype(np.float32)
    return np.asarray((x.astype(np.float32) - zero_point) * scale, dtype=np.float32)


class TFLiteModel:
    """A loaded .tflite file: `run(float inputs) -> float outputs`, batch dimension resizable."""

    def __init__(
        self,
        path: str | Path,
        num_threads: int = 2,
        runtime: str | None = None,
        use_xnnpack: bool = True,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        interpreter_class, self.runtime_name = load_interpreter_class(runtime)
        kwargs: dict[str, Any] = {"model_path": str(self.path), "num_threads": num_threads}
        if not use_xnnpack:
            kwargs["experimental_op_resolver_type"] = _builtin_without_default_delegates(interpreter_class)
        try:
            self._interpreter = interpreter_class(**kwargs)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path}: not a loadable TFLite model ({exc})") from exc
        self.inputs = self._interpreter.get_input_details()
        self.outputs = self._interpreter.get_output_details()
        self._batch = int(self.inputs[0]["shape"][0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.inputs[0]["shape"])

    @property
    def input_dtype(self) -> np.dtype[Any]:
        dtype: np.dtype[Any] = np.dtype(self.inputs[0]["dtype"])  # the interpreter's details are untyped
        return dtype

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Run on float inputs (quantised here as each tensor needs); return float outputs."""
        if len(arrays) != len(self.inputs):
            raise ModelError(f"{self.path}: expects {len(self.inputs)} inputs, got {len(arrays)}")
        batch = int(arrays[0].shape[0])
        if batch != self._batch:
            for detail, array in zip(self.inputs, arrays, strict=True):
                self._interpreter.resize_tensor_input(detail["index"], list(array.shape))
            self._interpreter.allocate_tensors()
            self.inputs = self._interpreter.get_input_details()
            self.outputs = self._interpreter.get_output_details()
            self._batch = batch
        for detail, array in zip(self.inputs, arrays, strict=True):
            self._interpreter.set_tensor(detail["index"], quantize(array, detail))
        self._interpreter.invoke()
        return [dequantize(self._interpreter.get_tensor(d["index"]), d) for d in self.outputs]

    def close(self) -> None:
        self._interpreter = None

    def __enter__(self) -> TFLiteModel:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _builtin_without_default_delegates(interpreter_class: type) -> Any:
    module = importlib.import_module(interpreter_class.__module__)
    return module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES

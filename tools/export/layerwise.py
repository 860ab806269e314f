"""Where an int8 model loses fidelity: float32 vs int8 activations, op by op, on the same crops.

Both .tflite files come from the same Keras graph, so the converter emits the same op sequence for each (the
int8 one adds a QUANTIZE at the input and a DEQUANTIZE-free int8 output); ops are paired by position among
the ops of the same kind sequence and every output tensor of the int8 model is dequantised with its own
scale and zero point. Both run without XNNPACK (its intermediate tensors are not readable) with all tensors
kept. The cosine of an op's output is taken per crop over the whole tensor and averaged: it is the fidelity
*accumulated* up to that op, so the first op whose cosine drops is where the loss starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeface_tools.export import ExportError

log = logging.getLogger(__name__)

_SKIPPED_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


@dataclass(frozen=True, slots=True)
class LayerFidelity:
    """The int8 model's agreement with float32 at one op's output."""

    index: int  # position among the compared ops (0 = first op after the input)
    op: str
    tensor: str
    cosine: float
    scale: float  # the int8 tensor's quantisation step
    float_range: tuple[float, float]  # min and max of the float32 activations over the crops

    def card_entry(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "op": self.op,
            "tensor": short_name(self.tensor),
            "cosine": round(self.cosine, 5),
            "scale": float(f"{self.scale:.4g}"),
            "float_range": [float(f"{v:.4g}") for v in self.float_range],
        }


def short_name(tensor: str) -> str:
    """The Keras layer part of a converter tensor name ('model/activation_3/add;...' -> 'activation_3/add')."""
    first = tensor.split(";", 1)[0]
    parts = first.split("/")
    return "/".join(parts[1:3]) if len(parts) > 2 else first


def reference_interpreter(model: Path | bytes) -> Any:
    """An interpreter on the reference kernels (no XNNPACK) that keeps every intermediate tensor readable;
    `model` is a .tflite path or its content."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    source: dict[str, Any] = (
        {"model_content": bytes(model)}
        if isinstance(model, bytes | bytearray)
        else {"model_path": str(model)}
    )
    interpreter = Interpreter(
        **source,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    return interpreter


def compared_ops(interpreter: Any) -> list[dict[str, Any]]:
    return [op for op in interpreter._get_ops_details() if op["op_name"] not in _SKIPPED_OPS]


def feed(interpreter: Any, crop: np.ndarray) -> None:
    """Run one crop (H, W, C) float, quantised with the input's own scale when the input is integer."""
    detail = interpreter.get_input_details()[0]
    value = crop[np.newaxis].astype(np.float32)
    if np.dtype(detail["dtype"]) != np.float32:
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        value = np.clip(np.round(value / scale) + zero, info.min, info.max).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()


def read(interpreter: Any, tensor: int, details: list[dict[str, Any]] | None = None) -> np.ndarray:
    """A tensor after the last `feed`, dequantised to float64 and flattened. `details` is the interpreter's
    `get_tensor_details()`, which is slow to build, for callers reading many tensors."""
    detail = (details or interpreter.get_tensor_details())[tensor]
    value: np.ndarray = interpreter.get_tensor(tensor).astype(np.float64)
    if np.dtype(detail["dtype"]) != np.float32:
        scale, zero = detail["quantization"]
        value = (value - zero) * scale
    return value.reshape(-1)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(a @ b) / norms


def layer_fidelity(float_path: Path, int8_path: Path, crops: np.ndarray) -> list[LayerFidelity]:
    """Accumulated float32-vs-int8 cosine at every op output, in execution order, averaged over `crops`."""
    reference, quantised = reference_interpreter(Path(float_path)), reference_interpreter(Path(int8_path))
    ops_f, ops_q = compared_ops(reference), compared_ops(quantised)
    if [o["op_name"] for o in ops_f] != [o["op_name"] for o in ops_q]:
        raise ExportError("layer fidelity: the float32 and int8 models do not have the same op sequence")
    outputs = [(int(f["outputs"][0]), int(q["outputs"][0])) for f, q in zip(ops_f, ops_q, strict=True)]
    cosines = np.zeros((len(crops), len(outputs)))
    details_f, details_q = reference.get_tensor_details(), quantised.get_tensor_details()
    low, high = np.full(len(outputs), np.inf), np.full(len(outputs), -np.inf)
    for n, crop in enumerate(crops):
        feed(reference, crop)
        feed(quantised, crop)
        for k, (tf, tq) in enumerate(outputs):
            a = read(reference, tf, details_f)
            cosines[n, k] = _cosine(a, read(quantised, tq, details_q))
            low[k], high[k] = min(low[k], float(a.min())), max(high[k], float(a.max()))
    details = quantised.get_tensor_details()
    return [
        LayerFidelity(
            index=k,
            op=ops_q[k]["op_name"],
            tensor=details[tq]["name"],
            cosine=float(cosines[:, k].mean()),
            scale=float(details[tq]["quantization"][0]),
            float_range=(float(low[k]), float(high[k])),
        )
        for k, (_, tq) in enumerate(outputs)
    ]


def largest_drops(rows: list[LayerFidelity], count: int = 5) -> list[LayerFidelity]:
    """The ops that lose the most cosine relative to their input op (where fidelity is lost, not carried)."""
    drops = [
        (rows[k - 1].cosine - rows[k].cosine if k else 1.0 - rows[0].cosine, rows[k])
        for k in range(len(rows))
    ]
    drops.sort(key=lambda item: -item[0])
    return sorted((row for _, row in drops[:count]), key=lambda row: row.index)


def summary(rows: list[LayerFidelity], count: int = 5) -> dict[str, Any]:
    """A card section: the worst ops by accumulated cosine and by cosine lost, in execution order."""
    worst = sorted(sorted(rows, key=lambda row: row.cosine)[:count], key=lambda row: row.index)
    return {
        "method": "float32 vs dequantised int8 activations at each op output, mean cosine over the held-out "
        "crops, both run with the reference kernels (edgeface_tools.export.layerwise)",
        "ops": len(rows),
        "worst": [row.card_entry() for row in worst],
        "largest_drops": [row.card_entry() for row in largest_drops(rows, count)],
    }


def describe(rows: list[LayerFidelity], count: int = 5) -> str:
    """One line per op that loses the most cosine, for an error message."""
    return "; ".join(
        f"#{row.index} {row.op} {short_name(row.tensor)}: cosine {row.cosine:.4f} "
        f"(float range {row.float_range[0]:.3g}..{row.float_range[1]:.3g}, int8 step {row.scale:.3g})"
        for row in largest_drops(rows, count)
    )

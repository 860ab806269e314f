"""Model cards (docs/design.md §3) for exported embedders: what the device needs to run a file, and its
provenance."""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgeface.vision.modelcard import CARD_FORMAT, AlignSpec, InputSpec, sha256_file, write_card
from edgeface.vision.runtime import TFLiteModel, load_interpreter_class

log = logging.getLogger(__name__)

ALIGN_POINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center")


@dataclass(frozen=True, slots=True)
class EmbedderSpec:
    """A network's contract, independent of its file: input, alignment template, output, provenance."""

    name: str
    size: tuple[int, int]  # (H, W)
    color: str  # "RGB" | "BGR"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    template: tuple[tuple[float, float], ...]  # one (x, y) per ALIGN_POINTS entry, crop pixels
    dim: int
    normalized: bool
    source: dict[str, Any] = field(default_factory=dict)

    def input_spec(self, dtype: str = "float32") -> InputSpec:
        return InputSpec(size=self.size, color=self.color, mean=self.mean, std=self.std, dtype=dtype)

    def align_spec(self) -> AlignSpec:
        return AlignSpec(template=np.asarray(self.template, np.float64), points=ALIGN_POINTS)


def host_description() -> str:
    """CPU model and usable core count of this machine, for speed figures."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return f"{model} ({platform.machine()}, {cpus} cpus)"


def model_card(spec: EmbedderSpec, model_path: Path, **sections: Any) -> dict[str, Any]:
    """The card of one .tflite file; dtype and input quantisation are read from the file itself."""
    with TFLiteModel(model_path, num_threads=1) as model:
        detail = model.inputs[0]
        dtype = np.dtype(detail["dtype"]).name
        output_dim = int(model.outputs[0]["shape"][-1])
    scale, zero_point = detail["quantization"]
    input_section: dict[str, Any] = {
        "size": list(spec.size),
        "color": spec.color,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "dtype": dtype,
    }
    if dtype != "float32":
        input_section["quant"] = {"scale": float(scale), "zero_point": int(zero_point)}
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "kind": "embedder",
        "name": spec.name,
        "file": model_path.name,
        "sha256": sha256_file(model_path),
        "input": input_section,
        "align": {"template": [list(p) for p in spec.template], "points": list(ALIGN_POINTS)},
        "output": {"dim": output_dim, "normalized": spec.normalized},
        "source": spec.source,
    }
    card.update(sections)
    card["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    return card


def write_model_card(spec: EmbedderSpec, model_path: Path, **sections: Any) -> Path:
    """Write `<model>.json` beside the model file and return its path."""
    card_path = model_path.with_suffix(".json")
    write_card(card_path, model_card(spec, model_path, **sections))
    return card_path


def compute_section(model: Any) -> dict[str, Any]:
    """Parameters and multiply-accumulates per face of the Keras model (convolutions and dense layers)."""
    macs = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Conv2D", "DepthwiseConv2D"):
            height, width = (int(d) for d in layer.output.shape[1:3])
            macs += height * width * int(np.prod(layer.kernel.shape))
        elif kind == "Dense":
            macs += int(np.prod(layer.kernel.shape))
    return {"params": int(model.count_params()), "macs_millions": round(macs / 1e6, 1)}


def speed_section(
    int8_path: Path, float_path: Path, sample: np.ndarray, command: str, runs: int = 200
) -> dict[str, Any]:
    """ms/face of int8 and float32 measured side by side, and what XNNPACK leaves undelegated in each.

    The top-level figures use 2 threads (the device default, `embedder.num_threads`); `by_threads` also has
    1 thread. For a net as small as GhostFaceNet W0.5 (0.4 ms) the second thread mostly adds per-op
    synchronisation, which costs int8 and float32 alike, so their 2-thread times can tie on a busy host.
    """
    from edgeface_tools.export import fidelity, quantize

    partitions = {}
    for label, path in (("int8", int8_path), ("float32", float_path)):
        count, leftovers = quantize.delegate_partitions(path)
        partitions[label] = {"partitions": count, "not_delegated": leftovers}
        if leftovers:
            log.warning("%s: ops outside the XNNPACK delegate: %s", path.name, leftovers)
    paths = {"int8": int8_path, "float32": float_path}
    by_threads = {
        threads: fidelity.compare_speed(paths, sample, runs=runs, num_threads=threads) for threads in (1, 2)
    }
    timings = by_threads[2]
    _, runtime = load_interpreter_class()
    return {
        "int8_ms": round(timings["int8"].ms_median, 3),
        "float32_ms": round(timings["float32"].ms_median, 3),
        "int8_ms_p95": round(timings["int8"].ms_p95, 3),
        "float32_ms_p95": round(timings["float32"].ms_p95, 3),
        "runs": runs,
        "batch": 1,
        "threads": 2,
        "by_threads": {
            str(threads): {label: round(t.ms_median, 3) for label, t in found.items()}
            for threads, found in by_threads.items()
        },
        "runtime": f"{runtime} with the default XNNPACK delegate, runs of both models interleaved",
        "host": host_description(),
        "command": command,
        "xnnpack": partitions,
    }

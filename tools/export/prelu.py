"""Rewrite a Keras model into an exactly equivalent graph whose int8 TFLite model XNNPACK fully delegates.

Measured here (ai-edge-litert 2.3.0, x86, single-op probes): in int8, XNNPACK leaves PRELU, MAXIMUM,
MINIMUM, NEG and a standalone RELU/RELU6 (one whose input is also used elsewhere, so it cannot fuse into the
op before it) to the TFLite kernels. The delegate's visitors for these ops accept float32 tensors only
(`CheckTensorFloat32Type` in `xnnpack_delegate.cc`), whereas a *fused* activation of CONV_2D / MUL / ADD
becomes the output clamp of a delegated int8 op. `Reshape` after global pooling and `Flatten` also add
SHAPE/STRIDED_SLICE/PACK ops (dynamic batch) that split the graph even in float. GhostFaceNet W1.3 S2 int8
came out as 57 XNNPACK partitions and ran about 3-7x slower than its float32 model. The rewrite:

- `PReLU`            -> z + relu((a-1)*z)              (MUL with fused RELU, ADD)
- Keras 2 hard-sigmoid clip(0.2z+0.5, 0, 1) -> relu6(1.2z+3)/6  (folds/fuses into the conv before it)
- `GlobalAveragePooling2D` + `Reshape((1,1,C))` -> pooling with keepdims (a static MEAN)
- `Flatten` of a (1, 1, C) map -> a static squeeze (no SHAPE/STRIDED_SLICE/PACK ops)

Result: one partition in int8 and float32. A PReLU becomes two int8 ops (the relu branch and the sum are
requantised, PRELU requantises once), which costs a little int8 fidelity: random-weight W1.3 S2 on faces5
crops gave mean cosine to float 0.824 rewritten vs 0.838 original (an untrained net is a poor proxy; the
fidelity gate decides for a real checkpoint).
Layers that are not rewritten are shared with the original model (same weights, no copy).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgeface_tools.export import ExportError

log = logging.getLogger(__name__)


def _alpha_per_channel(layer: Any) -> list[float]:
    import numpy as np

    alpha = np.asarray(layer.get_weights()[0], "float32")
    if alpha.ndim > 1 and any(d != 1 for d in alpha.shape[:-1]):
        raise ExportError(
            f"{layer.name}: PReLU alpha of shape {alpha.shape} is not per channel; the delegate-friendly "
            "rewrite needs PReLU(shared_axes=[1, 2])"
        )
    return [float(a) for a in alpha.reshape(-1)]


def _pooled_reshape(layer: Any) -> bool:
    """True for a Reshape to (1, 1, C) fed by GlobalAveragePooling2D (the squeeze-excite pattern)."""
    import keras

    if not isinstance(layer, keras.layers.Reshape) or len(layer.target_shape) != 3:
        return False
    source = layer.input._keras_history.operation
    return isinstance(source, keras.layers.GlobalAveragePooling2D) and tuple(layer.target_shape[:2]) == (1, 1)


def make_delegate_friendly(model: Any) -> Any:
    """An exactly equivalent Keras 3 model whose int8 conversion has only XNNPACK-delegated ops."""
    import keras
    from edgeface_tools.export.ghostfacenet_layers import (
        AffineReluPReLU,
        Keras2HardSigmoid,
        Relu6HardSigmoid,
        SqueezeSpatial,
    )

    pooled = {layer.name for layer in model.layers if _pooled_reshape(layer)}
    rewritten: list[str] = []

    def replace(layer: Any) -> Any:
        if isinstance(layer, keras.layers.PReLU):
            new: Any = AffineReluPReLU(_alpha_per_channel(layer), name=layer.name)
        elif isinstance(layer, Keras2HardSigmoid):
            new = Relu6HardSigmoid(name=layer.name)
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D) and not layer.keepdims:
            if not all(n in pooled for n in _consumers(model, layer)):
                return layer
            new = keras.layers.GlobalAveragePooling2D(keepdims=True, name=layer.name)
        elif layer.name in pooled:
            new = keras.layers.Identity(name=layer.name)
        elif isinstance(layer, keras.layers.Flatten) and tuple(layer.input.shape[1:3]) == (1, 1):
            new = SqueezeSpatial(name=layer.name)
        else:
            return layer
        rewritten.append(type(layer).__name__)
        return new

    inputs = keras.layers.Input(model.inputs[0].shape[1:], name=model.inputs[0].name)
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=replace)
    log.info("delegate-friendly rewrite of %s: %d layers replaced", model.name, len(rewritten))
    return keras.Model(clone.inputs, clone.outputs, name=f"{model.name}_xnnpack")


def _consumers(model: Any, layer: Any) -> list[str]:
    """Names of the layers that take `layer`'s output as an input."""
    names = []
    for other in model.layers:
        for node in other._inbound_nodes:
            if any(t._keras_history.operation is layer for t in node.input_tensors):
                names.append(other.name)
    return names


def delegate_partitions(path: Path, num_threads: int = 1) -> int:
    """How many XNNPACK partitions the runtime makes of a .tflite file (1 = fully delegated, 0 = none).

    Every op XNNPACK cannot run splits the graph; ai-edge-litert lists one DELEGATE node per partition.
    """
    from edgeface.vision.runtime import load_interpreter_class

    interpreter_class, _ = load_interpreter_class()
    interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return sum(1 for op in interpreter._get_ops_details() if op["op_name"] == "DELEGATE")

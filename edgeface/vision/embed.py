"""Face embedder: aligned crops in, L2-normalised float32 embeddings out, for any model with a valid card."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeface.errors import ModelError
from edgeface.util.vectors import l2_normalize
from edgeface.vision.modelcard import AlignSpec, ModelCard, load_card
from edgeface.vision.runtime import TFLiteModel


class Embedder:
    """`embed(crops) -> (N, D)`; crops are BGR uint8 at the card's size, as `align_face` makes them."""

    def __init__(self, card_path: str | Path, num_threads: int = 2, max_batch: int = 8) -> None:
        self.card: ModelCard = load_card(card_path)
        if self.card.kind != "embedder":
            raise ModelError(f"{card_path}: card kind is {self.card.kind!r}, expected 'embedder'")
        if self.card.align is None:
            raise ModelError(f"{card_path}: an embedder card needs an 'align' template")
        self.align: AlignSpec = self.card.align
        self.card.verify_file()
        self._model = TFLiteModel(self.card.file, num_threads=num_threads)
        output_dim = int(self._model.outputs[0]["shape"][-1])
        self.card.verify_tensors(self._model.input_shape, self._model.input_dtype, output_dim)
        self.max_batch = max_batch

    @property
    def dim(self) -> int:
        return self.card.output_dim

    @property
    def crop_size(self) -> tuple[int, int]:
        return self.card.input.size

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def sha256(self) -> str:
        return self.card.sha256

    def embed(self, crops: list[np.ndarray] | np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        batch = np.stack(list(crops))
        if batch.shape[1:] != (*self.crop_size, 3):
            raise ModelError(
                f"{self.card.file.name}: crops must be {self.crop_size}x3, got {batch.shape[1:]}"
            )
        if self.card.input.color == "RGB":
            batch = batch[..., ::-1]
        inputs = self.card.input.normalize(batch)
        outputs = [
            self._model.run(inputs[i : i + self.max_batch])[0] for i in range(0, len(inputs), self.max_batch)
        ]
        return l2_normalize(np.concatenate(outputs).reshape(len(inputs), -1))

    def close(self) -> None:
        self._model.close()

"""The embedder card's fallback decision, measured on several labelled populations (docs/design.md §5).

A gallery too small to calibrate itself uses the card's impostor model: the tail shape measured on the
largest population, at the highest impostor location of all of them, so the fallback is the most
conservative the measured populations support. Each population is encoded through the device's own
photo face path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeface.identity.calibration import identity_vectors, measure_shape
from edgeface.vision.encoder import FaceEncoder
from edgeface.vision.photos import identity_folders, read_image


def encode_population(encoder: FaceEncoder, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the largest face of every photo that has one, and their identity labels."""
    embeddings, labels = [], []
    for label, (_, files) in enumerate(identity_folders(root).items()):
        for path in files:
            faces = encoder.encode(read_image(path))
            if faces:
                embeddings.append(faces[0].embedding)
                labels.append(label)
    return np.stack(embeddings), np.asarray(labels, np.int64)


def card_decision(encoder: FaceEncoder, populations: list[Path]) -> dict[str, Any]:
    measured = []
    for root in populations:
        embeddings, labels = encode_population(encoder, root)
        count = int(labels.max()) + 1
        location, shape, _ = measure_shape(embeddings, labels, identity_vectors(embeddings, labels, count))
        measured.append((root, count, len(labels), location, shape))
    largest = max(measured, key=lambda m: m[1])
    return {
        "location": round(max(m[3] for m in measured), 6),
        "shape": largest[4].as_dict(),
        "margin": 0.0,
        "chosen_by": "python models/recipe.py card-prior: tail shape of the population with the most identities, "
        "at the highest impostor location of all populations (Fisher z)",
        "populations": [
            {"set": root.name, "identities": count, "photos": photos, "location": round(location, 6)}
            for root, count, photos, location, _ in measured
        ],
    }

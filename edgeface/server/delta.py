"""The smallest delta between two galleries (server side; devices apply it with `edgeface.sync.delta`)."""

from __future__ import annotations

import numpy as np

from edgeface.identity.gallery import Gallery
from edgeface.sync.delta import Delta

VECTOR_TOLERANCE = 1e-6


def compute_delta(base: Gallery, new: Gallery) -> Delta:
    """The smallest remove/upsert set that turns `base` into a gallery with `new`'s identities."""
    base_rows = {i: k for k, i in enumerate(base.ids)}
    new_ids = set(new.ids)
    remove = tuple(i for i in base.ids if i not in new_ids)
    row = np.asarray([base_rows.get(i, -1) for i in new.ids], np.int64)
    known = row >= 0
    moved = np.ones(len(new), bool)
    if known.any():  # float noise from re-normalising is not a change
        diff = np.abs(base.vectors[row[known]] - new.vectors[known]).max(axis=1)
        moved[known] = diff > VECTOR_TOLERANCE
    changed = [
        k
        for k in range(len(new))
        if moved[k] or base.names[row[k]] != new.names[k] or base.samples[row[k]] != new.samples[k]
    ]
    pick = np.asarray(changed, np.int64)
    upsert = Gallery(
        tuple(new.ids[k] for k in changed),
        tuple(new.names[k] for k in changed),
        tuple(new.samples[k] for k in changed),
        np.ascontiguousarray(new.vectors[pick].reshape(len(changed), new.dim), np.float32),
        new.model_sha256,
        new.version,
    )
    return Delta(remove, upsert)

"""Gallery deltas on a device: which identities to remove and which to add or update, and applying them.

Applying is deterministic so server and device agree on the result byte for byte: removed identities are
dropped, updated ones keep their position, new ones are appended in the delta's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeface.identity.gallery import Gallery
from edgeface.sync.bundle import Rows, rows_gallery
from edgeface.sync.manifest import Manifest


@dataclass(frozen=True, slots=True)
class Delta:
    remove: tuple[str, ...]
    upsert: Gallery  # the added or changed identities, with their vectors


def delta_of(manifest: Manifest, rows: Rows) -> Delta:
    """The delta a verified delta bundle carries."""
    return Delta(manifest.remove, rows_gallery(manifest, rows))


def apply_delta(base: Gallery, delta: Delta, version: int) -> Gallery:
    """`base` with `delta` applied, as gallery `version` (no sums: bundles carry aggregated vectors)."""
    removed = set(delta.remove)
    keep = np.asarray([k for k, i in enumerate(base.ids) if i not in removed], np.int64)
    ids = [base.ids[k] for k in keep]
    names = [base.names[k] for k in keep]
    samples = [base.samples[k] for k in keep]
    position = {identity: n for n, identity in enumerate(ids)}
    updates: list[tuple[int, int]] = []  # (row in result, row in delta)
    appended: list[int] = []
    for k, identity in enumerate(delta.upsert.ids):
        row = position.get(identity)
        if row is None:
            ids.append(identity)
            names.append(delta.upsert.names[k])
            samples.append(delta.upsert.samples[k])
            appended.append(k)
        else:
            names[row], samples[row] = delta.upsert.names[k], delta.upsert.samples[k]
            updates.append((row, k))
    new_rows = delta.upsert.vectors[np.asarray(appended, np.int64)].reshape(-1, base.dim)
    out = np.concatenate([base.vectors[keep].reshape(-1, base.dim), new_rows]).astype(np.float32)
    for row, k in updates:
        out[row] = delta.upsert.vectors[k]
    return Gallery(
        tuple(ids),
        tuple(names),
        tuple(samples),
        np.ascontiguousarray(out, np.float32),
        base.model_sha256,
        version,
    )

"""The decision rule (docs/design.md §5): match only if the best score clears the threshold AND beats the
runner-up by the margin; otherwise unknown."""

from __future__ import annotations

import numpy as np

from edgeface.identity.index import GalleryIndex
from edgeface.identity.rule import MatchRule
from edgeface.types import Identity, Match
from edgeface.util.vectors import l2_normalize


def decide(index: GalleryIndex, rule: MatchRule, embeddings: np.ndarray) -> Match:
    """Decide on one face from one or more of its embeddings (averaged, as for a track)."""
    query = l2_normalize(np.atleast_2d(embeddings).mean(0))
    hits = index.search(query, k=2)[0]
    if not hits:
        return Match("unknown", None, 0.0, 0.0, rule.threshold)
    best = hits[0]
    second = hits[1].score if len(hits) > 1 else -1.0
    margin = best.score - second
    if best.score >= rule.threshold and margin >= rule.margin:
        gallery = index.gallery
        identity = Identity(gallery.ids[best.index], gallery.names[best.index])
        return Match("match", identity, best.score, margin, rule.threshold)
    return Match("unknown", None, best.score, margin, rule.threshold)

"""The decision rule (docs/design.md §5): match only if the best score clears the threshold AND beats the
runner-up by the margin; otherwise unknown."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeface.identity.index import GalleryIndex
from edgeface.types import Identity, Match
from edgeface.util.vectors import l2_normalize


@dataclass(frozen=True, slots=True)
class MatchSettings:
    threshold: float
    margin: float = 0.0


class Matcher:
    def __init__(self, settings: MatchSettings) -> None:
        self.settings = settings

    def decide(self, index: GalleryIndex, embeddings: np.ndarray) -> Match:
        """Decide on one face from one or more of its embeddings (averaged, as for a track)."""
        query = l2_normalize(np.atleast_2d(embeddings).mean(0))
        hits = index.search(query, k=2)[0]
        threshold = self.settings.threshold
        if not hits:
            return Match("unknown", None, 0.0, 0.0, threshold)
        best = hits[0]
        second = hits[1].score if len(hits) > 1 else -1.0
        margin = best.score - second
        if best.score >= threshold and margin >= self.settings.margin:
            gallery = index.gallery
            identity = Identity(gallery.ids[best.index], gallery.names[best.index])
            return Match("match", identity, best.score, margin, threshold)
        return Match("unknown", None, best.score, margin, threshold)

"""The one way a gallery goes live: its index and its decision rule together, in one assignment.

Reload, a synced full bundle, a synced delta and an enrolment (which reaches a running daemon by reload) all
call `GoLive.publish`. It builds the new index beside the live one (`GalleryIndex.updated`), resolves the
decision rule for the new gallery, and only then replaces `current` with one immutable `LiveGallery`. A
reader takes `current` once per decision and uses that value's index and rule, so no decision is ever made
with one gallery's index and another's threshold. Writers (the sync worker, a reload on the main thread)
are serialised by a lock; readers never take it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeface.identity.decision import DecisionRule
from edgeface.identity.gallery import Gallery
from edgeface.identity.index import GalleryIndex, IndexSettings
from edgeface.identity.match import Matcher, MatchSettings
from edgeface.types import Match

log = logging.getLogger(__name__)

RuleFor = Callable[[Gallery], DecisionRule]


@dataclass(frozen=True, slots=True)
class LiveGallery:
    """A gallery's index and the rule its matches are judged by; replaced whole, never modified."""

    index: GalleryIndex
    rule: DecisionRule

    @property
    def gallery(self) -> Gallery:
        return self.index.gallery

    @property
    def version(self) -> int:
        return self.index.gallery.version

    @property
    def matcher(self) -> Matcher:
        return Matcher(MatchSettings(self.rule.threshold, self.rule.margin))

    def decide(self, embeddings: np.ndarray) -> Match:
        """Match one face (one or more embeddings of it) against this gallery by this gallery's rule."""
        return self.matcher.decide(self.index, embeddings)


class GoLive:
    """Holds the `LiveGallery` recognition uses now and is the only thing that replaces it."""

    def __init__(self, gallery: Gallery, rule_for: RuleFor, settings: IndexSettings | None = None) -> None:
        self._rule_for = rule_for
        self._lock = threading.Lock()
        index = GalleryIndex(gallery, settings or IndexSettings())
        self._live = LiveGallery(index, rule_for(gallery))

    @property
    def current(self) -> LiveGallery:
        return self._live

    def publish(
        self, gallery: Gallery, rule_for: RuleFor | None = None, settings: IndexSettings | None = None
    ) -> LiveGallery:
        """Make `gallery` live (with a new rule source or index settings, e.g. after a reload). If building
        the index or resolving the rule fails, nothing changes and the error propagates."""
        with self._lock:
            started = time.perf_counter()
            previous = self._live
            chosen = rule_for or self._rule_for
            index = previous.index.updated(gallery, settings or previous.index.settings)
            live = LiveGallery(index, chosen(gallery))
            self._live, self._rule_for = live, chosen
        log.info(
            "gallery v%d live (%d identities, %s index%s, threshold %.4f from %s) after %.3f s",
            live.version,
            len(gallery),
            index.kind,
            " patched" if index.patched else "",
            live.rule.threshold,
            live.rule.source,
            time.perf_counter() - started,
        )
        return live

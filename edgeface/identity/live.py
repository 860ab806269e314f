"""The one way a gallery goes live: its index and its decision rule together, in one assignment.

Reload, a synced full bundle, a synced delta and an enrolment (which reaches a running daemon by reload) all
call `GoLive.publish`. It builds the new index beside the live one (`GalleryIndex.updated`), resolves the
decision rule for the new gallery, and only then replaces `current` with one immutable `LiveGallery`. A
reader takes `current` once per decision and uses that value's index and rule, so no decision is ever made
with one gallery's index and another's threshold. Writers (the sync worker, a reload on the main thread)
are serialised by a lock; readers never take it.

An HNSW index goes live with no standby graph; `GoLive` gives it one on a background thread right after
(`GalleryIndex.prepare_standby`: the replaced graph caught up with the same delta, or a second build), so
the next delta patches a graph no reader uses. The next publish waits for that thread; if it failed, the
next delta patches a copy of the live graph instead (correct, but the copy stalls recognition briefly).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeface.identity.gallery import Gallery
from edgeface.identity.index import GalleryIndex, IndexSettings
from edgeface.identity.match import decide
from edgeface.identity.rule import MatchRule
from edgeface.types import Match

log = logging.getLogger(__name__)

RuleFor = Callable[[Gallery], MatchRule]


@dataclass(frozen=True, slots=True)
class LiveGallery:
    """A gallery's index and the rule its matches are judged by; replaced whole, never modified."""

    index: GalleryIndex
    rule: MatchRule

    @property
    def gallery(self) -> Gallery:
        return self.index.gallery

    @property
    def version(self) -> int:
        return self.index.gallery.version

    def decide(self, embeddings: np.ndarray) -> Match:
        """Match one face (one or more embeddings of it) against this gallery by this gallery's rule."""
        return decide(self.index, self.rule, embeddings)


class GoLive:
    """Holds the `LiveGallery` recognition uses now and is the only thing that replaces it."""

    def __init__(self, gallery: Gallery, rule_for: RuleFor, settings: IndexSettings | None = None) -> None:
        self._rule_for = rule_for
        self._lock = threading.Lock()
        index = GalleryIndex(gallery, settings or IndexSettings())
        self._live = LiveGallery(index, rule_for(gallery))
        self._standby: threading.Thread | None = None
        self._start_standby(index, None)

    @property
    def current(self) -> LiveGallery:
        return self._live

    def publish(
        self, gallery: Gallery, rule_for: RuleFor | None = None, settings: IndexSettings | None = None
    ) -> LiveGallery:
        """Make `gallery` live (with a new rule source or index settings, e.g. after a reload). If building
        the index or resolving the rule fails, nothing changes and the error propagates."""
        with self._lock:
            self.wait_for_standby()
            started = time.perf_counter()
            previous = self._live
            chosen = rule_for or self._rule_for
            try:
                index = previous.index.updated(gallery, settings or previous.index.settings)
                live = LiveGallery(index, chosen(gallery))
            except Exception:
                self._start_standby(previous.index, None)  # the failed update may have used its standby up
                raise
            self._live, self._rule_for = live, chosen
            self._start_standby(index, previous.index if index.patched else None)
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

    def wait_for_standby(self, timeout: float | None = None) -> bool:
        """Wait until the live index has its standby graph (or needs none); False on timeout."""
        thread = self._standby
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _start_standby(self, index: GalleryIndex, previous: GalleryIndex | None) -> None:
        if index.kind != "hnsw":
            self._standby = None
            return
        self._standby = threading.Thread(
            target=_prepare_standby, args=(index, previous), name="gallery-standby", daemon=True
        )
        self._standby.start()


def _prepare_standby(index: GalleryIndex, previous: GalleryIndex | None) -> None:
    started = time.perf_counter()
    try:
        how = index.prepare_standby(previous)
    except Exception as error:  # the live index is whole; the next delta patches a copy instead
        log.warning("gallery v%d: no standby graph (%s)", index.gallery.version, error)
        return
    log.info(
        "gallery v%d: standby graph %s in %.3f s", index.gallery.version, how, time.perf_counter() - started
    )

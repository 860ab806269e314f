"""Rebuild the search index off the hot path and swap it in one assignment (recognition never pauses).

`IndexUpdater.apply` runs on the gallery-sync worker thread: the old index keeps serving searches
while the new one is built.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edgeface.identity.gallery import Gallery
from edgeface.identity.index import GalleryIndex, IndexHolder, IndexSettings

log = logging.getLogger(__name__)


class IndexUpdater:
    """Builds a `GalleryIndex` for each new gallery and swaps it into `holder`."""

    def __init__(
        self,
        holder: IndexHolder,
        settings: IndexSettings | None = None,
        on_swapped: Callable[[GalleryIndex, float], None] | None = None,
    ) -> None:
        self.holder = holder
        self.settings = settings or IndexSettings()
        self.on_swapped = on_swapped

    def apply(self, gallery: Gallery) -> GalleryIndex:
        started = time.perf_counter()
        index = GalleryIndex(gallery, self.settings)
        self.holder.swap(index)
        seconds = time.perf_counter() - started
        log.info(
            "index for gallery %d (%d identities, %s) live after %.3f s",
            gallery.version,
            len(gallery),
            index.kind,
            seconds,
        )
        if self.on_swapped is not None:
            self.on_swapped(index, seconds)
        return index

"""A synced gallery goes live through `GoLive.publish` (index and decision rule together) on the sync worker.

The old gallery keeps serving recognition while the new index is built or patched beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edgeface.identity.gallery import Gallery
from edgeface.identity.live import GoLive, LiveGallery


class IndexUpdater:
    """Publishes each gallery the sync client applied; `on_live` hears of it with the seconds it took."""

    def __init__(self, live: GoLive, on_live: Callable[[LiveGallery, float], None] | None = None) -> None:
        self.live = live
        self.on_live = on_live

    def apply(self, gallery: Gallery) -> LiveGallery:
        started = time.perf_counter()
        live = self.live.publish(gallery)
        if self.on_live is not None:
            self.on_live(live, time.perf_counter() - started)
        return live

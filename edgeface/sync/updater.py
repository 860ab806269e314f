"""Rebuild the search index off the hot path and swap it in one assignment (recognition never pauses)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edgeface.gallery import Gallery
from edgeface.index import GalleryIndex, IndexHolder, IndexSettings

log = logging.getLogger(__name__)


class IndexUpdater:
    """Builds a `GalleryIndex` for each new gallery and swaps it into `holder`.

    `apply(gallery)` builds in the calling thread (use it from the sync worker, which is already off the
    hot path); `submit(gallery)` hands the build to this updater's own worker thread, newest gallery wins.
    """

    def __init__(
        self,
        holder: IndexHolder,
        settings: IndexSettings | None = None,
        on_swapped: Callable[[GalleryIndex, float], None] | None = None,
    ) -> None:
        self.holder = holder
        self.settings = settings or IndexSettings()
        self.on_swapped = on_swapped
        self._pending: Gallery | None = None
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

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

    def submit(self, gallery: Gallery) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("IndexUpdater is closed")
            self._pending = gallery
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="index-updater", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                gallery, self._pending, self._busy = self._pending, None, True
            try:
                self.apply(gallery)  # type: ignore[arg-type]
            except Exception:
                log.exception(
                    "building the index for gallery %d failed; keeping the old index", gallery.version
                )
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> IndexUpdater:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

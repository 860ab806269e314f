"""edgeface: face recognition for door units (int8 TFLite, hnswlib, MQTT).

The public types are importable from here (`from edgeface import Event, Match`). They are loaded on first
use, so `import edgeface` (and `import edgeface.config`) does no work and pulls in no cv2, hnswlib or paho.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from edgeface.version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Frame": "edgeface.types",
    "Detection": "edgeface.types",
    "Identity": "edgeface.types",
    "Match": "edgeface.types",
    "MatchDecision": "edgeface.types",
    "SearchHit": "edgeface.types",
    "Track": "edgeface.types",
    "Event": "edgeface.pipeline.events",
    "FrameSource": "edgeface.camera.base",
    "CameraStatus": "edgeface.camera.base",
    "Gallery": "edgeface.identity.gallery",
    "GalleryStore": "edgeface.identity.gallery",
    "Recognition": "edgeface.pipeline.recognize",
    "Recognizer": "edgeface.pipeline.recognize",
    "Parts": "edgeface.daemon.parts",
    "build_parts": "edgeface.daemon.parts",
    "Config": "edgeface.config",
    "load_config": "edgeface.config",
    "EdgefaceError": "edgeface.errors",
    "ConfigError": "edgeface.errors",
    "ModelError": "edgeface.errors",
    "ImageError": "edgeface.errors",
    "NoFaceError": "edgeface.errors",
    "GalleryError": "edgeface.errors",
    "BundleError": "edgeface.errors",
}

__all__ = [
    "BundleError",
    "CameraStatus",
    "Config",
    "ConfigError",
    "Detection",
    "EdgefaceError",
    "Event",
    "Frame",
    "FrameSource",
    "Gallery",
    "GalleryError",
    "GalleryStore",
    "Identity",
    "ImageError",
    "Match",
    "MatchDecision",
    "ModelError",
    "NoFaceError",
    "Parts",
    "Recognition",
    "Recognizer",
    "SearchHit",
    "Track",
    "__version__",
    "build_parts",
    "load_config",
]

if TYPE_CHECKING:
    from edgeface.camera.base import CameraStatus, FrameSource
    from edgeface.config import Config, load_config
    from edgeface.daemon.parts import Parts, build_parts
    from edgeface.errors import (
        BundleError,
        ConfigError,
        EdgefaceError,
        GalleryError,
        ImageError,
        ModelError,
        NoFaceError,
    )
    from edgeface.identity.gallery import Gallery, GalleryStore
    from edgeface.pipeline.events import Event
    from edgeface.pipeline.recognize import Recognition, Recognizer
    from edgeface.types import Detection, Frame, Identity, Match, MatchDecision, SearchHit, Track


# old public name -> new one (0.2.0); still importable, with a DeprecationWarning
_RENAMED = {"Decision": "Recognition"}


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        warnings.warn(f"edgeface.{name} is now edgeface.{_RENAMED[name]}", DeprecationWarning, stacklevel=2)
        return __getattr__(_RENAMED[name])
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeface' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

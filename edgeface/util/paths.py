"""Where model files are looked for when a command is not told."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

DEFAULT_EMBEDDER_CARD = "sface.int8.json"


def default_models_dir() -> Path:
    """$EDGEFACE_MODELS, else the models installed with the package (`edgeface.models`, = models/ here)."""
    if env := os.environ.get("EDGEFACE_MODELS"):
        return Path(env)
    return Path(str(resources.files("edgeface.models")))

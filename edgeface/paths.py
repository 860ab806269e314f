"""Where model files are looked for when a command is not told."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_EMBEDDER_CARD = "facerec128.int8.json"


def default_models_dir() -> Path:
    """$EDGEFACE_MODELS, else the source checkout's models/, else the packaged system location."""
    if env := os.environ.get("EDGEFACE_MODELS"):
        return Path(env)
    checkout = Path(__file__).resolve().parents[1] / "models"
    if checkout.is_dir():
        return checkout
    return Path("/usr/share/edgeface/models")

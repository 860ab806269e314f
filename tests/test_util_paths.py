"""Where model files are looked for: $EDGEFACE_MODELS wins, else the models installed with the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeface.util.paths import DEFAULT_EMBEDDER_CARD, default_models_dir


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEFACE_MODELS", str(tmp_path))
    assert default_models_dir() == tmp_path


def test_installed_models_hold_the_default_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEFACE_MODELS", raising=False)
    assert (default_models_dir() / DEFAULT_EMBEDDER_CARD).is_file()

"""The package's public surface: `__all__` names what `edgeface` exports, each loaded on first use."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import edgeface


def test_every_public_name_resolves_to_its_defining_module() -> None:
    names = set(edgeface.__all__) - {"__version__"}
    assert names == set(edgeface._EXPORTS)
    for name in sorted(names):
        module = importlib.import_module(edgeface._EXPORTS[name])
        assert getattr(edgeface, name) is getattr(module, name), name


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = edgeface.Nope  # type: ignore[attr-defined]


def test_import_does_no_work() -> None:
    code = "import sys, edgeface; print(sorted(m for m in ('numpy', 'cv2', 'hnswlib', 'paho') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_exported_types_are_the_modules_own() -> None:
    from edgeface.pipeline.events import Event
    from edgeface.types import Match

    assert edgeface.Event is Event and edgeface.Match is Match


def test_a_renamed_public_name_still_resolves_with_a_deprecation_warning() -> None:
    from edgeface.pipeline.recognize import Recognition

    with pytest.warns(DeprecationWarning, match=r"edgeface\.Decision is now edgeface\.Recognition"):
        assert edgeface.Decision is Recognition  # type: ignore[attr-defined]

"""The version is written once (edgeface/version.py); the installed metadata and the changelog agree with it."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import edgeface
from edgeface.version import __version__

ROOT = Path(__file__).resolve().parent.parent
_RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", re.MULTILINE)


def newest_changelog_version(text: str) -> str:
    """The first released version heading (`## [X.Y.Z] - date`); `## [Unreleased]` is not one."""
    found = _RELEASE.search(text)
    if found is None:
        raise AssertionError("CHANGELOG.md: no '## [X.Y.Z] - YYYY-MM-DD' heading")
    return found.group(1)


def test_package_exports_the_version_module_s_value() -> None:
    assert edgeface.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_installed_metadata_has_the_package_version() -> None:
    assert importlib.metadata.version("edgeface") == __version__


def test_changelog_newest_release_is_the_package_version() -> None:
    assert newest_changelog_version((ROOT / "CHANGELOG.md").read_text()) == __version__


def test_changelog_parser_skips_unreleased_and_takes_the_first_release() -> None:
    text = "# Changelog\n\n## [Unreleased]\n\n## [1.2.3] - 2026-01-02\n\n## [1.2.2] - 2025-12-01\n"
    assert newest_changelog_version(text) == "1.2.3"


def test_pyproject_reads_the_version_instead_of_writing_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "edgeface.version.__version__"}

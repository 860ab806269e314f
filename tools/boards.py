"""Can the boards install edgeface's device dependencies? Resolve them for a board's platform with pip.

    python tools/boards.py [--out docs/boards.json]

For each target (Raspberry Pi OS 64-bit / Jetson: linux aarch64; Raspberry Pi OS 32-bit: linux armv7l) and
Python 3.11, every device dependency is resolved with `pip download --platform ... --only-binary=:all:`,
one package at a time and then as one set. A package with no binary wheel for the target is reported as
"needs a compiler on the board" (pip then builds it from its sdist there). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.11"


@dataclass(frozen=True, slots=True)
class Target:
    boards: str
    platforms: list[str]  # manylinux tags pip should accept, newest glibc first (bookworm has glibc 2.36)
    runtime: str
    note: str


TARGETS = {
    "linux_aarch64": Target(
        boards="Raspberry Pi OS 64-bit (bookworm), Jetson (JetPack 6, Ubuntu 22.04)",
        platforms=[f"manylinux_2_{minor}_aarch64" for minor in (35, 34, 31, 28, 27, 17)]
        + ["manylinux2014_aarch64", "linux_aarch64"],
        runtime="ai-edge-litert",
        note="hnswlib ships no aarch64 wheel: pip compiles it on the board, so install build-essential "
        "and python3-dev first (about 2 minutes on a Pi 4).",
    ),
    "linux_armv7l": Target(
        boards="Raspberry Pi OS 32-bit (bookworm)",
        platforms=[f"manylinux_2_{minor}_armv7l" for minor in (35, 31, 28, 17)]
        + ["manylinux2014_armv7l", "linux_armv7l"],
        runtime="tflite-runtime",
        note="ai-edge-litert has no 32-bit build, so the runtime is tflite-runtime 2.14, which needs numpy<2. "
        "PyPI itself has no armv7l wheels for most of the set; Raspberry Pi OS's pip is configured for "
        "piwheels.org, which builds them (not reachable from this host, so not resolved here), and Debian's "
        "python3-numpy, python3-opencv and python3-cryptography can be used through a venv made with "
        "--system-site-packages. tflite-runtime delegates no int8 op to XNNPACK (bench/embedder_runtimes.py).",
    ),
}


def device_requirements(runtime: str) -> list[str]:
    """pyproject's device dependencies with the TFLite runtime the target uses (markers dropped)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = []
    for line in project["dependencies"]:
        requirement = line.split(";")[0].strip()
        if re.match(r"ai-edge-litert\b", requirement):
            requirement = requirement if runtime == "ai-edge-litert" else "tflite-runtime>=2.14"
        requirements.append(requirement)
    if runtime == "tflite-runtime":
        requirements = [("numpy<2" if r.startswith("numpy") else r) for r in requirements]
    return requirements


def pip_download(requirements: list[str], platforms: list[str], dest: Path) -> tuple[bool, list[str], str]:
    """(resolved, wheel file names, pip's last error line) for binary-only wheels on the platforms."""
    command = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(dest)]
    command += ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    command += ["--abi", "cp311", "--abi", "abi3", "--abi", "none"]
    for tag in platforms:
        command += ["--platform", tag]
    done = subprocess.run([*command, *requirements], capture_output=True, text=True)
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    wheels = sorted(p.name for p in dest.glob("*.whl"))
    return done.returncode == 0, wheels, errors[0] if errors else ""


def resolve_target(target: Target) -> dict[str, Any]:
    platforms = target.platforms
    requirements = device_requirements(target.runtime)
    packages: dict[str, dict[str, Any]] = {}
    for requirement in requirements:
        with tempfile.TemporaryDirectory() as tmp:
            ok, wheels, error = pip_download([requirement], platforms, Path(tmp))
        packages[requirement] = (
            {"binary_wheel": True, "wheels": wheels}
            if ok
            else {"binary_wheel": False, "needs_compiler": True, "pip": error}
        )
    binary = [r for r in requirements if packages[r]["binary_wheel"]]
    with tempfile.TemporaryDirectory() as tmp:
        ok, wheels, error = pip_download(binary, platforms, Path(tmp))
    return {
        "boards": target.boards,
        "python": PYTHON_VERSION,
        "runtime": target.runtime,
        "note": target.note,
        "packages": packages,
        "needs_compiler": [r for r in requirements if r not in binary],
        "binary_set_resolves_together": ok,
        "binary_set": wheels if ok else error,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    report = {
        "bench": "boards",
        "host": platform.machine(),
        "resolved_at": datetime.now(UTC).strftime("%Y-%m-%d"),
        "targets": {name: resolve_target(target) for name, target in TARGETS.items()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

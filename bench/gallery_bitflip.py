"""Every single-bit flip of a stored gallery version, loaded as the daemon loads it (issue 22 item 1).

Each flip is written to disk, the version is read with `read_gallery_dir`, and the file restored. An outcome
is `detected` (GalleryError: the version would be set aside), `harmless` (loads exactly as before),
`silent` (loads, but some id, name, count, version, model, calibration or vector changed) or `crash` (any
other exception). Every bit of gallery.json, identities.json and SHA256SUMS is flipped, and `--vector-bits`
sampled bits of vectors.npy (seeded).

    python bench/gallery_bitflip.py --quick
    python bench/gallery_bitflip.py --out bench/results/gallery_bitflip.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import emit

from edgeface.errors import GalleryError
from edgeface.identity.calibration import Calibration
from edgeface.identity.gallery import Gallery, GalleryStore, read_gallery_dir

CALIBRATION = Calibration(0.970173, 0.0, 0.01, 0.0087, 0.91, 1200, 40, 12, "pairs")


def _gallery(identities: int) -> Gallery:
    vectors = np.random.default_rng(0).standard_normal((identities, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = tuple(f"id{i:06d}" for i in range(identities))
    names = tuple(f"Person {i}" for i in range(identities))
    return replace(Gallery(ids, names, (3,) * identities, vectors, "ab" * 32, 1), calibration=CALIBRATION)


def _same(a: Gallery, b: Gallery) -> bool:
    fields = ("ids", "names", "samples", "version", "model_sha256", "calibration")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and np.array_equal(a.vectors, b.vectors)


def sweep(directory: Path, name: str, bits: list[int], reference: Gallery) -> dict[str, int]:
    original = (directory / name).read_bytes()
    counts = dict.fromkeys(("detected", "harmless", "silent", "crash"), 0)
    for bit in bits:
        data = bytearray(original)
        data[bit // 8] ^= 1 << (bit % 8)
        (directory / name).write_bytes(bytes(data))
        try:
            loaded = read_gallery_dir(directory)
        except GalleryError:
            counts["detected"] += 1
            continue
        except Exception:
            counts["crash"] += 1
            continue
        finally:
            (directory / name).write_bytes(original)
        counts["harmless" if _same(loaded, reference) else "silent"] += 1
    return counts | {"flips": len(bits)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=4)
    parser.add_argument("--vector-bits", type=int, default=4000)
    parser.add_argument("--quick", action="store_true", help="200 vector bits")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    vector_bits = 200 if args.quick else args.vector_bits
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        directory = GalleryStore(tmp).save(_gallery(args.identities))
        reference = read_gallery_dir(directory)
        results: dict[str, dict[str, int]] = {}
        for name in ("gallery.json", "identities.json", "SHA256SUMS"):
            if (directory / name).exists():
                results[name] = sweep(
                    directory, name, list(range((directory / name).stat().st_size * 8)), reference
                )
        size = (directory / "vectors.npy").stat().st_size * 8
        sample = np.random.default_rng(22).choice(size, min(vector_bits, size), replace=False).tolist()
        results["vectors.npy (sample)"] = sweep(directory, "vectors.npy", sample, reference)
    total = {
        k: sum(r[k] for r in results.values()) for k in ("flips", "detected", "harmless", "silent", "crash")
    }
    params = {"identities": args.identities, "vector_bits": vector_bits, "quick": args.quick}
    emit(
        "gallery_bitflip",
        params,
        {"files": results, "total": total, "seconds": round(time.monotonic() - started, 1)},
        args.out,
    )
    return 0 if total["silent"] == 0 and total["crash"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

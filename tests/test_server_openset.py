"""Open-set evaluation on synthetic embeddings: the split is disjoint, and DIR/FPIR come out as constructed."""

from __future__ import annotations

import json

import numpy as np

from edgeface.identity.rule import CardFallback
from edgeface.server.openset import open_set, open_set_split, rates
from tests.conftest import MODELS
from tests.factories import unit_vectors


def test_split_keeps_enrolled_and_strangers_apart() -> None:
    labels = np.repeat(np.arange(6), 5)
    enrolled, enrol_rows, probes, strangers = open_set_split(labels, seed=1, k=2)
    assert len(enrolled) == 3 and all(len(r) == 2 for r in enrol_rows)
    enrol = np.concatenate(enrol_rows)
    assert not set(enrol) & set(probes) and not set(enrol) & set(strangers)
    assert set(labels[probes]) == set(enrolled) and not set(labels[strangers]) & set(enrolled)
    assert len(enrol) + len(probes) + len(strangers) == len(labels)


def test_rates_golden() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.7], [0.4, 0.3]])
    assert rates(scores, np.array([0, 0, 0]), 0.5) == 1 / 3  # right identity above threshold: row 0 only
    assert rates(scores, None, 0.5) == 2 / 3  # anyone above threshold


def test_tight_identities_are_found_and_strangers_refused() -> None:
    centres = unit_vectors(20, 64, seed=5)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(20), 6)
    noisy = centres[labels] + 0.05 * rng.standard_normal((len(labels), 64)).astype(np.float32)
    embeddings = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    raw = json.loads((MODELS / "facerec128.int8.json").read_text())["decision"]
    card = CardFallback.from_dict(raw, "facerec128.int8.json")  # as `edgeface eval` passes it
    report = open_set(embeddings, labels, card=card, k=3, seeds=range(3), fixed=(0.5,))
    assert report["splits"] == 3 and report["default_rule"]["sources"] == {"gallery": 3}
    fixed = report["rules"]["fixed 0.5"]
    assert fixed["dir"] == 1.0 and fixed["fpir"] == 0.0
    assert report["rules"]["default"]["dir"] > 0.9 and report["rules"]["default"]["fpir_max"] <= 0.1

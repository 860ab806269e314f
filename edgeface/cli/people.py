"""`edgeface gallery list|remove|rename|events`: who a door knows, and what it kept of its visitors.

`remove` is erasure: a new re-calibrated version without the person, and every other stored version (and
set-aside copy) that holds them deleted; with `--state-dir`, the visitor crops kept of them go too. Send the
daemon SIGHUP (`systemctl reload edgeface`) to use the new version; its Home Assistant entities follow.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeface.errors import GalleryError
from edgeface.identity.calibration import DEFAULT_TARGET_FPIR
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.identity.rule import CardFallback, resolve_rule
from edgeface.util.logsafe import printable

if TYPE_CHECKING:
    from edgeface.vision.modelcard import ModelCard

log = logging.getLogger(__name__)
RELOAD_HINT = "the daemon uses it after a reload (systemctl reload edgeface, or SIGHUP)"


def _store(path: Path) -> GalleryStore:
    store = GalleryStore(path)
    if not store.exists():
        raise GalleryError(f"{path}: no gallery here (enroll someone or apply a bundle first)")
    return store


def _model_card(args: argparse.Namespace) -> ModelCard:
    from edgeface.cli.common import photo_config
    from edgeface.daemon.parts import models_dir
    from edgeface.vision.modelcard import load_card

    config = photo_config(args)
    return load_card(models_dir(config) / config.embedder.card)


def _card(args: argparse.Namespace) -> CardFallback | None:
    return CardFallback.of_card(_model_card(args))


def _recalibrate(args: argparse.Namespace) -> Callable[[Gallery], Gallery]:
    card = _card(args)

    def recalibrate(gallery: Gallery) -> Gallery:
        """As enrolment does; a gallery without enrolment photos (from a fleet) keeps its calibration."""
        if gallery.enrolment is None or not len(gallery.enrolment):
            return gallery
        return gallery.calibrated_with_card(args.target_fpir, card)

    return recalibrate


def listing(gallery: Gallery, model: ModelCard) -> dict[str, Any]:
    rule = resolve_rule(threshold=None, margin=None, calibration=gallery.calibration,
                            card=CardFallback.of_card(model), identities=len(gallery))  # fmt: skip
    fits = model.sha256 == gallery.model_sha256
    people = [{"id": i, "name": n, "samples": s} for i, n, s in zip(gallery.ids, gallery.names, gallery.samples,
                                                                   strict=True)]  # fmt: skip
    return {
        "version": gallery.version,
        "model_sha256": gallery.model_sha256,
        "model": model.name if fits else None,  # None: not the installed embedder's gallery
        "count": len(gallery),
        "threshold": rule.threshold,
        "threshold_source": rule.source,
        "threshold_detail": rule.detail,
        "people": people,
    }


def _list(args: argparse.Namespace) -> int:
    info = listing(_store(args.gallery).load(), _model_card(args))
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
        return 0
    print(f"gallery {args.gallery}: version {info['version']}, {info['count']} people, "
          f"model {info['model'] or 'not the installed embedder'} ({info['model_sha256'][:12]})")  # fmt: skip
    print(
        f"threshold {info['threshold']:.4f} (source: {info['threshold_source']}: {info['threshold_detail']})"
    )
    for person in info["people"]:
        print(f"  {printable(person['id'])}\t{printable(person['name'])}\t{person['samples']} photos/samples")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from edgeface.identity.erasure import remove_person

    store = _store(args.gallery)
    erasure = remove_person(store, args.identity, _recalibrate(args))
    print(erasure.summary())
    if args.state_dir is not None:
        from edgeface.pipeline.visitor_settings import VisitorSettings
        from edgeface.pipeline.visitors import VisitorStore

        gone = VisitorStore(args.state_dir, VisitorSettings()).forget(args.identity)
        print(f"kept visitor crops matched to them deleted: {gone}")
    print(f"gallery {args.gallery}: version {erasure.new_version}; {RELOAD_HINT}")
    return 0


def _rename(args: argparse.Namespace) -> int:
    from edgeface.identity.erasure import rename_person

    gallery = rename_person(_store(args.gallery), args.identity, args.name, _recalibrate(args))
    print(f"renamed {printable(args.identity)} to {printable(args.name)}: gallery {args.gallery} version "
          f"{gallery.version}; {RELOAD_HINT}")  # fmt: skip
    return 0


def _events(args: argparse.Namespace) -> int:
    from edgeface.pipeline.visitor_settings import VisitorSettings
    from edgeface.pipeline.visitors import VisitorStore

    kept = VisitorStore(args.state_dir, VisitorSettings(max_events=500, max_age_h=720.0)).kept()
    rows = [{"event_id": v.event_id, "ts": v.ts, "decision": v.decision, "identity": v.identity,
             "score": round(v.score, 4), "crops": v.crops} for v in kept]  # fmt: skip
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print(f"{args.state_dir}: no visitor crops kept ([visitors] keep is off by default)")
    for row in rows:
        who = printable(row["identity"]) if row["identity"] else "unknown"
        print(f"{row['event_id']}  {row['ts']}  {who}  score {row['score']:.3f}  {row['crops']} crops")
    return 0


def add_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from edgeface.cli.common import add_model_options, target_fpir

    p = verbs.add_parser("list", help="who is enrolled: people, photo counts, model, version, threshold")
    p.add_argument("--gallery", type=Path, required=True, help="gallery folder (<state_dir>/gallery)")
    p.add_argument("--json", action="store_true")
    add_model_options(p)
    p.set_defaults(func=_list)

    for verb, text in (("remove", "erase a person: a new version without them, older copies deleted"),
                       ("rename", "give a person another display name (their id stays)")):  # fmt: skip
        p = verbs.add_parser(verb, help=text)
        p.add_argument("--gallery", type=Path, required=True, help="gallery folder (<state_dir>/gallery)")
        p.add_argument("--id", dest="identity", required=True)
        if verb == "rename":
            p.add_argument("--name", required=True)
        else:
            p.add_argument("--state-dir", type=Path, help="also delete the visitor crops kept of this person")
        p.add_argument("--target-fpir", type=target_fpir, default=DEFAULT_TARGET_FPIR,
                       help="share of strangers the re-calibrated threshold may match (default 0.01)")  # fmt: skip
        add_model_options(p)
        p.set_defaults(func=_remove if verb == "remove" else _rename)

    p = verbs.add_parser("events", help="the visitor decisions whose face crops the door kept")
    p.add_argument("--state-dir", type=Path, required=True, help="the daemon's [device] state_dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_events)

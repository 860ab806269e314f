"""`edgeface doctor --config FILE`: checks config, models, gallery, camera and broker; says what is wrong."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from edgeface.cli.argtypes import seconds
from edgeface.config import DEFAULT_PATH, Config, load_config
from edgeface.errors import EdgefaceError
from edgeface.util.logsafe import printable


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check a door unit's config, models, gallery, camera, broker"
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_PATH, help=f"TOML config (default {DEFAULT_PATH})"
    )
    parser.add_argument("--timeout", type=seconds, default=5.0, help="seconds to wait for camera and broker")
    parser.set_defaults(func=run)


def check_models(config: Config, timeout: float) -> str:
    from edgeface.daemon.parts import build_encoder

    encoder = build_encoder(config)
    try:
        card = encoder.embedder.card
        return (
            f"{card.name} ({card.sha256[:12]}), detector {config.detector.model}, flip {config.embedder.flip}"
        )
    finally:
        encoder.close()


def check_gallery(config: Config, timeout: float) -> str:
    from edgeface.daemon.parts import build_parts
    from edgeface.daemon.startup import stored_gallery_problems
    from edgeface.identity.gallery import GalleryStore, is_sealed

    problems = stored_gallery_problems(config)  # reads only: the daemon is the one that sets aside
    if problems:
        raise EdgefaceError(problems)
    parts = build_parts(config)
    try:
        gallery, rule = parts.gallery, parts.rule
        if len(gallery) == 0:
            raise EdgefaceError(f"{config.gallery_dir}: empty or missing; every face will be 'unknown'")
        store = GalleryStore(config.gallery_dir)
        unsealed = store.exists() and not is_sealed(store.current_link.resolve())
        note = "; written before SHA256SUMS existed: enrol or sync once to seal it" if unsealed else ""
        return f"version {gallery.version}, {len(gallery)} identities, threshold {rule.threshold:.4f} ({rule.source}){note}"
    finally:
        parts.close()


def check_camera(config: Config, timeout: float) -> str:
    from edgeface.camera import open_source

    # No reconnect wrapper here: doctor wants the camera's own error, not "no frame yet".
    camera = config.require_camera()
    with open_source(replace(camera, reconnect=False)) as source:
        frame = source.read(timeout=timeout)
        if frame is None:
            raise EdgefaceError(f"camera {camera.name}: no frame within {timeout:g} s")
        return f"{frame.image.shape[1]}x{frame.image.shape[0]} frames"


def check_credentials(config: Config, timeout: float) -> str:
    from edgeface.mqtt.settings import read_credentials

    if config.mqtt.credentials_file is None:
        return "none configured (anonymous)"
    credentials = read_credentials(config.mqtt.credentials_file)
    return f"{config.mqtt.credentials_file}: user {printable(credentials.username, 80)}"


def check_tls(config: Config, timeout: float) -> str:
    from edgeface.mqtt.tls import tls_context

    tls = config.mqtt.tls
    if tls is None:
        return "off"
    tls_context(tls)
    trusted = tls.ca_file or "the system CA store"
    client = f", client certificate {tls.cert_file}" if tls.cert_file else ""
    return f"verifying the broker against {trusted}{client}"


def check_sync_key(config: Config, timeout: float) -> str:
    from edgeface.sync.signing import load_public_key

    if not config.sync.enabled:
        return "gallery sync off"
    if config.sync.root_key is not None:  # the offline root that certifies the signing keys
        load_public_key(config.sync.root_key)
        return f"{config.sync.root_key}: Ed25519 root public key (signing keys it certifies are trusted)"
    if config.sync.public_key is None:
        return "gallery sync off"
    load_public_key(config.sync.public_key)
    return f"{config.sync.public_key}: Ed25519 public key"


def check_broker(config: Config, timeout: float) -> str:
    from edgeface.mqtt.probe import probe_broker

    return probe_broker(config.mqtt, timeout)


CHECKS: tuple[tuple[str, Callable[[Config, float], str]], ...] = (
    ("models", check_models),
    ("gallery", check_gallery),
    ("camera", check_camera),
    ("credentials", check_credentials),
    ("tls", check_tls),
    ("sync key", check_sync_key),
    ("broker", check_broker),
)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except EdgefaceError as exc:
        print(f"FAIL config: {exc}")
        return 1
    print(f"ok   config: {args.config}")
    failures = 0
    for name, check in CHECKS:
        try:
            print(f"ok   {name}: {check(config, args.timeout)}")
        except EdgefaceError as exc:
            failures += 1
            print(f"FAIL {name}: {exc}")
    return 1 if failures else 0

"""Every verb with the bad arguments of issue 22 (items 11-14), run as the real CLI in a fresh interpreter:
a non-zero exit, exactly one line that names the problem, and no traceback anywhere.

Each run gets a 4 GiB address-space limit (reading /dev/zero whole would otherwise fill the machine) and a
timeout (a FIFO read the usual way would block forever): exceeding either fails the case."""

from __future__ import annotations

import os
import re
import resource
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.server.build import build_bundle
from edgeface.sync.signing import load_public_key
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.embed import Embedder
from tests.conftest import PasswordBroker
from tests.factories import make_keys, png_header

# Lines the verbs print on stderr on their way to the error: TFLite's greeting, identify's threshold line,
# and log records below ERROR.
NOISE = re.compile(r"INFO: Created TensorFlow Lite|threshold |\d{4}-\d\d-\d\d [\d:,]+ (INFO|WARNING) ")


@dataclass(frozen=True)
class Files:
    root: Path
    gallery: Path  # an enrolled gallery of the shipped embedder
    photos: Path  # two identities, two photos each
    thin: Path  # a 30000x1 PNG
    private: Path
    public: Path
    bundle: Path  # a valid signed bundle of `gallery`
    garbage: Path
    directory: Path
    loop: Path
    fifo: Path
    deep: Path
    seed: Path
    device: Path  # a private /dev/null (root) or a FIFO: an output target that must survive


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def edgeface(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    code = "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_limited,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"edgeface {' '.join(argv)}: still running after {timeout:g} s (blocked on a FIFO?)")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, faces5: Path, models_dir: Path) -> Files:
    root = tmp_path_factory.mktemp("bad-arguments")
    embedder = Embedder(models_dir / DEFAULT_EMBEDDER_CARD)  # the gallery the photo verbs run with
    try:
        dim, sha = embedder.dim, embedder.sha256
    finally:
        embedder.close()
    gallery = root / "gallery"
    people = Gallery.empty(dim, sha).enroll("ann", "Ann", np.eye(dim, dtype=np.float32)[:2])
    GalleryStore(gallery).save(
        people.enroll("bob", "Bob", np.eye(dim, dtype=np.float32)[2:4]).with_version(1)
    )
    photos = root / "photos"
    for person in ("baejun", "chipu"):
        (photos / person).mkdir(parents=True)
        for source in sorted((faces5 / person).iterdir())[:2]:
            (photos / person / source.name).write_bytes(source.read_bytes())
    (root / "thin.png").write_bytes(png_header(30000, 1))
    keys = make_keys(root / "keys")
    bundle = build_bundle(GalleryStore(gallery).load(), fleet="f", version=1, key=keys.private)
    (root / "v1.bundle").write_bytes(bundle)
    (root / "garbage.pem").write_text("garbage\n")
    (root / "dir").mkdir()
    (root / "loop").symlink_to(root / "loop")
    os.mkfifo(root / "fifo")
    (root / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    for name, line in (("credentials", 'credentials_file = "{fifo}"'), ("public-key", "")):
        sync = f'[sync]\nenabled = true\npublic_key = "{root / "fifo"}"\n' if not line else ""
        (root / f"{name}-fifo.toml").write_text(
            f'[device]\nstate_dir = "{root / name}"\n[embedder]\nmodels_dir = "{models_dir}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = 1\n{line.format(fifo=root / "fifo")}\n{sync}'
        )
    (root / "seed.toml").write_text(f'[camera]\nkind = "emulated"\nfaces = "{faces5}"\nseed = -1\n')
    device = root / "null"
    if os.geteuid() == 0:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        os.mkfifo(device)
    return Files(
        root,
        gallery,
        photos,
        root / "thin.png",
        keys.private_path,
        keys.public_path,
        root / "v1.bundle",
        root / "garbage.pem",
        root / "dir",
        root / "loop",
        root / "fifo",
        root / "deep.toml",
        root / "seed.toml",
        device,
    )


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[Files], list[str]]
    says: str  # what the one line must contain
    stdout: bool = False  # doctor reports a bad config as its FAIL line on stdout


def _build(f: Files, *extra: str) -> list[str]:
    return ["gallery", "build", "--gallery", str(f.gallery), "--fleet", "f", "--version", "1", *extra]


def _publish(*extra: str) -> list[str]:
    return ["gallery", "publish", "--fleet", "f", *extra]


CASES = [
    # --config that is not a readable regular TOML file (item 11)
    Case("run-config-directory", lambda f: ["run", "--config", str(f.directory)], "is a directory"),
    Case(
        "run-config-symlink-loop", lambda f: ["run", "--config", str(f.loop)], "Too many levels of symbolic"
    ),
    Case("run-config-dev-zero", lambda f: ["run", "--config", "/dev/zero"], "/dev/zero: is a device"),
    Case("run-config-fifo", lambda f: ["run", "--config", str(f.fifo)], "is a FIFO"),
    Case("run-config-deep-toml", lambda f: ["run", "--config", str(f.deep)], "nested too deeply"),
    # files the daemon reads at start: a FIFO there once hung `run`, deaf to SIGTERM (item 12)
    Case(
        "run-credentials-fifo",
        lambda f: ["run", "--config", str(f.root / "credentials-fifo.toml")],
        "mqtt.credentials_file: credentials file",
    ),
    Case(
        "run-public-key-fifo",
        lambda f: ["run", "--config", str(f.root / "public-key-fifo.toml")],
        "public key",
    ),
    Case(
        "run-camera-seed-negative", lambda f: ["run", "--config", str(f.seed)], "camera.seed: must be in [0"
    ),
    Case(
        "doctor-config-directory", lambda f: ["doctor", "--config", str(f.directory)], "is a directory", True
    ),
    Case("doctor-config-dev-zero", lambda f: ["doctor", "--config", "/dev/zero"], "is a device", True),
    Case("doctor-config-fifo", lambda f: ["doctor", "--config", str(f.fifo)], "is a FIFO", True),
    Case("doctor-config-loop", lambda f: ["doctor", "--config", str(f.loop)], "symbolic links", True),
    Case("doctor-deep-toml", lambda f: ["doctor", "--config", str(f.deep)], "nested too deeply", True),
    Case("doctor-seed", lambda f: ["doctor", "--config", str(f.seed)], "camera.seed", True),
    # meaningless numbers (items 11, 14)
    Case("doctor-timeout-nan", lambda f: ["doctor", "--timeout", "nan"], "--timeout: must be a finite"),
    Case("doctor-timeout-negative", lambda f: ["doctor", "--timeout", "-1"], "--timeout: must be in (0"),
    Case("eval-seeds-0", lambda f: ["eval", "--folders", str(f.photos), "--seeds", "0"], "--seeds: must be"),
    Case(
        "eval-far-2", lambda f: ["eval", "--folders", str(f.photos), "--far", "2"], "--far: must be between"
    ),
    Case("eval-far-nan", lambda f: ["eval", "--folders", str(f.photos), "--far", "nan"], "--far: must be a"),
    Case("demo-strangers-negative", lambda f: ["demo", "--strangers", "-1"], "--strangers: must be"),
    Case("demo-seconds-inf", lambda f: ["demo", "--seconds", "inf"], "--seconds: must be a finite"),
    Case(
        "identify-threshold-nan",
        lambda f: ["identify", "--gallery", str(f.gallery), "--threshold", "nan", str(f.thin)],
        "--threshold: must be a finite",
    ),
    Case(
        "publish-state-wait-nan",
        lambda f: _publish("--broker", "h:1", "--state-wait", "nan", str(f.garbage)),
        "--state-wait: must be a finite",
    ),
    Case(
        "publish-broker-no-port", lambda f: _publish("--broker", "host", str(f.garbage)), "--broker: expected"
    ),
    Case(
        "publish-broker-bare-ipv6", lambda f: _publish("--broker", "::1:1883", str(f.garbage)), "in brackets"
    ),
    # files that are not what they should be (items 11, 12)
    Case(
        "identify-models-dev-null",
        lambda f: ["identify", "--models", "/dev/null", "--gallery", str(f.gallery), str(f.thin)],
        "/dev/null/",
    ),
    Case("identify-thin-png", lambda f: ["identify", "--gallery", str(f.gallery), str(f.thin)], "30000x1"),
    Case(
        "verify-dev-zero",
        lambda f: ["gallery", "verify", "--public", str(f.public), "/dev/zero"],
        "is a device",
    ),
    Case(
        "verify-public-fifo", lambda f: ["gallery", "verify", "--public", str(f.fifo), str(f.bundle)], "FIFO"
    ),
    Case("inspect-dev-zero", lambda f: ["gallery", "inspect", "/dev/zero"], "/dev/zero: is a device"),
    Case("inspect-fifo", lambda f: ["gallery", "inspect", str(f.fifo)], "is a FIFO"),
    Case(
        "build-key-dev-zero", lambda f: _build(f, "--key", "/dev/zero", "--out", str(f.root / "o")), "device"
    ),
    Case(
        "build-key-fifo", lambda f: _build(f, "--key", str(f.fifo), "--out", str(f.root / "o")), "is a FIFO"
    ),
    Case(
        "publish-tls-ca-garbage",
        lambda f: _publish("--broker", "127.0.0.1:1", "--tls-ca", str(f.garbage), str(f.garbage)),
        "holds no CA certificate",
    ),
    Case(
        "verify-public-is-private",
        lambda f: ["gallery", "verify", "--public", str(f.private), str(f.bundle)],
        "holds a private key",
    ),
    Case("publish-bundle-fifo", lambda f: _publish("--broker", "127.0.0.1:1", str(f.fifo)), "is a FIFO"),
    Case(
        "enroll-unwritable-gallery",
        lambda f: ["enroll", "--gallery", "/dev/null/gallery", "--id", "a", str(f.thin)],
        "/dev/null is not a folder",
    ),
    Case(
        "enroll-gallery-in-procfs",
        lambda f: ["enroll", "--gallery", "/proc/gallery", "--id", "a", str(f.thin)],
        "cannot write in /proc",
    ),
    # output paths (items 11, 13)
    Case(
        "eval-plot-missing-folder",
        lambda f: ["eval", "--folders", str(f.photos), "--plot", str(f.root / "no" / "roc.png")],
        "does not exist",
    ),
    Case(
        "keygen-missing-folder",
        lambda f: [
            "gallery",
            "keygen",
            "--private",
            str(f.root / "no" / "k"),
            "--public",
            str(f.root / "no" / "k.pub"),
        ],
        "does not exist",
    ),
    Case(
        "keygen-same-path",
        lambda f: ["gallery", "keygen", "--private", str(f.root / "same"), "--public", str(f.root / "same")],
        "are the same file",
    ),
    Case(
        "build-out-device",
        lambda f: _build(f, "--key", str(f.private), "--out", str(f.device)),
        "refusing to replace it",
    ),
    Case(
        "build-out-fifo",
        lambda f: _build(f, "--key", str(f.private), "--out", str(f.fifo)),
        "a FIFO; refusing",
    ),
    Case(
        "build-out-directory",
        lambda f: _build(f, "--key", str(f.private), "--out", str(f.directory)),
        "a directory; refusing",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_argument_is_one_line_and_no_traceback(files: Files, case: Case) -> None:
    device_before = files.device.lstat()
    done = edgeface(*case.argv(files))
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    if case.stdout:
        failing = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
        assert len(failing) == 1 and failing[0].startswith("FAIL config:"), done.stdout
        line = failing[0]
        assert not done.stderr.strip(), done.stderr
    else:
        lines = [line for line in done.stderr.splitlines() if line.strip() and not NOISE.match(line)]
        assert len(lines) == 1, done.stderr
        line = lines[0]
    assert case.says in line, line
    after = files.device.lstat()
    assert (after.st_mode, after.st_ino, after.st_rdev) == (
        device_before.st_mode,
        device_before.st_ino,
        device_before.st_rdev,
    )


def test_keygen_refuses_a_public_key_that_is_a_link_to_the_private_one(tmp_path: Path) -> None:
    private = tmp_path / "fleet.pem"
    (tmp_path / "fleet.pub").symlink_to(private)
    done = edgeface("gallery", "keygen", "--private", str(private), "--public", str(tmp_path / "fleet.pub"))
    assert done.returncode == 2 and "are the same file" in done.stderr and "Traceback" not in done.stderr
    assert not private.exists()


def test_keygen_still_writes_a_working_pair(tmp_path: Path) -> None:
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    assert edgeface("gallery", "keygen", "--private", str(private), "--public", str(public)).returncode == 0
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    load_public_key(public)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem", "k.pub"]  # no temporary left behind


def test_publish_to_a_broker_that_refuses_us_says_refused_authentication_not_timeout(
    tmp_path: Path, files: Files, password_broker: PasswordBroker
) -> None:
    broker = password_broker.broker
    done = edgeface(*_publish("--broker", f"{broker.host}:{broker.port}", str(files.bundle)))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused authentication (Not authorized)" in lines[0], done.stderr
    assert "within 10 s" not in lines[0]


def test_an_ipv6_broker_address_is_host_and_port() -> None:
    import argparse

    from edgeface.cli.argtypes import broker_address

    assert broker_address("[::1]:1") == ("::1", 1)
    assert broker_address("broker.lan:8883") == ("broker.lan", 8883)
    assert broker_address("10.0.0.2:1883") == ("10.0.0.2", 1883)
    for bad in ("[::1]", "::1:1883", "[]:1", "host:0", "host:65536", "host:", ":1883", "host:１"):
        with pytest.raises(argparse.ArgumentTypeError):
            broker_address(bad)


def test_a_photo_verb_finishes_normally_with_good_arguments(files: Files, tmp_path: Path) -> None:
    """The checks above refuse only what is wrong: a real photo identifies, a plot is written."""
    photo = next((files.photos / "baejun").iterdir())
    done = edgeface("identify", "--gallery", str(files.gallery), str(photo))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert cv2.imread(str(photo)) is not None


def test_an_unreadable_config_is_one_line_for_a_user_who_is_not_root() -> None:
    """As root every file is readable, so a forked child drops to `nobody` before running `edgeface run`."""
    folder = Path("/tmp") / f"edgeface-unreadable-cli-{os.getpid()}"
    folder.mkdir(mode=0o755)
    config = folder / "edgeface.toml"
    config.write_text("[device]\n")
    config.chmod(0)
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe and its exit code
            os.close(read_end)
            sys.stderr = open(write_end, "w", buffering=1)  # noqa: SIM115 - the child's stderr until _exit
            code = 99
            try:
                from edgeface.cli import main

                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                code = main(["run", "--config", str(config)])
            except BaseException as exc:
                sys.stderr.write(f"Traceback-like escape: {type(exc).__name__}: {exc}\n")
            sys.stderr.flush()
            os._exit(code)
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read_end, "rb") as pipe:
            err = pipe.read().decode()
    finally:
        config.unlink()
        folder.rmdir()
    assert os.waitstatus_to_exitcode(status) == 2
    assert err == f"edgeface run: error: {config}: cannot read (Permission denied)\n"


def test_publish_reaches_a_broker_at_an_ipv6_address_in_brackets(tmp_path: Path, files: Files) -> None:
    """`--broker [::1]:PORT` is host ::1 and PORT (it was once looked up as the host name "[::1]")."""
    from edgeface.demo.localbroker import free_port
    from tests.conftest import make_broker

    v6_port = free_port()
    broker = make_broker(tmp_path, f"listener {v6_port} ::1\n")
    broker.start()
    try:
        done = edgeface(*_publish("--broker", f"[::1]:{v6_port}", "--state-wait", "0.2", str(files.bundle)))
    finally:
        broker.stop()
    assert done.returncode == 0, done.stderr
    assert "published full v1" in done.stderr

"""Runs the real daemon from a config FILE on the end-to-end scenario (SIGHUP reloads it, SIGTERM stops it).

python tests/daemon_config_child.py CONFIG FACES_DIR SHOWN_PER_PERSON FPS LOOP(0|1)
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from edgeface.camera.emulated import EmulatedSource
from edgeface.config import load_config
from edgeface.daemon.service import Daemon
from edgeface.demo.scenario import build_scenario
from edgeface.util.paths import default_models_dir
from edgeface.vision.detect import FaceDetector


def main() -> int:
    path, faces, shown, fps, loop = (
        Path(sys.argv[1]),
        Path(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
        sys.argv[5] == "1",
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    scenario = build_scenario(faces, FaceDetector(default_models_dir()), shown_per_person=shown)
    source = EmulatedSource(scenario.scene, fps=fps, realtime=True, loop=loop, name="door")
    daemon = Daemon(load_config(path), config_path=path, source=source)
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())

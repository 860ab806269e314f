"""Runs the real daemon on the end-to-end scenario, as a separate process the tests can SIGKILL.

python tests/daemon_child.py STATE_DIR BROKER_PORT FACES_DIR SHOWN_PER_PERSON FPS
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from edgeface.camera.emulated import EmulatedSource
from edgeface.config import parse_config
from edgeface.daemon.service import Daemon
from edgeface.demo.scenario import build_scenario
from edgeface.util.paths import default_models_dir
from edgeface.vision.detect import FaceDetector


def main() -> int:
    state, port, faces, shown, fps = (
        Path(sys.argv[1]),
        int(sys.argv[2]),
        Path(sys.argv[3]),
        int(sys.argv[4]),
        float(sys.argv[5]),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    scenario = build_scenario(faces, FaceDetector(default_models_dir()), shown_per_person=shown)
    config = parse_config(
        {
            "device": {"id": "e2e-door", "state_dir": str(state)},
            "camera": {"kind": "emulated", "faces": str(faces)},
            "mqtt": {"host": "127.0.0.1", "port": port},
        }
    )
    daemon = Daemon(config, source=EmulatedSource(scenario.scene, fps=fps, realtime=True, name="door"))
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())

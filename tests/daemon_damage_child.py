"""The real daemon on a looping emulated door scene, with its config read from a file (so SIGHUP reloads).

python tests/daemon_damage_child.py CONFIG FACES_DIR FPS [once]

With `once` the scene is shown one time and the daemon exits at its end.
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

VISIT_S, GAP_S = 1.6, 0.4  # short visits: every enrolled person comes back within ~10 s


def main() -> int:
    config_path, faces, fps = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    scenario = build_scenario(
        faces, FaceDetector(default_models_dir()), seconds_per_visit=VISIT_S, gap_s=GAP_S
    )
    loop = sys.argv[4:] != ["once"]
    source = EmulatedSource(scenario.scene, fps=fps, realtime=True, loop=loop, name="door")
    daemon = Daemon(load_config(config_path), config_path=config_path, source=source)
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())

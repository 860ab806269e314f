import pytest

from edgeface.config import load_config, parse_config
from edgeface.errors import ConfigError


def test_defaults_are_valid() -> None:
    config = parse_config({})
    assert config.match.min_frames == 3 and config.mqtt.prefix == "edgeface"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"match": {"threshold": 2.0}}, "match.threshold: must be in"),
        ({"match": {"min_frames": "3"}}, "match.min_frames: must be an integer"),
        ({"mqtt": {"port": 70000}}, "mqtt.port: must be in"),
        ({"camera": {"kind": "webcam"}}, "camera.kind: must be one of"),
        ({"camera": {"fps": True}}, "camera.fps: must be a number"),
        ({"match": {"treshold": 0.5}}, "match.treshold: unknown key"),
        ({"mqttt": {}}, "mqttt: unknown section"),
        ({"mqtt": "localhost"}, "mqtt: must be a table"),
        ({"sync": {"enabled": True}}, "sync.public_key: required"),
        ({"match": {"min_brightness": 200.0, "max_brightness": 100.0}}, "match.min_brightness"),
    ],
)
def test_bad_config_names_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("[match\nthreshold = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "ok.toml").write_text('[device]\nid = "front"\n[match]\nthreshold = 0.8\n')
    assert load_config(tmp_path / "ok.toml").device.id == "front"


def test_importing_config_pulls_in_no_heavy_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys, edgeface.config; print(sorted(m for m in ('cv2','hnswlib','paho') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_shipped_example_config_is_valid() -> None:
    from pathlib import Path

    example = Path(__file__).parents[1] / "systemd" / "edgeface.toml.example"
    config = load_config(example)
    assert config.camera.kind == "picamera2" and config.mqtt.port == 8883

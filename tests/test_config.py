from pathlib import Path

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
        (
            {"quality": {"min_brightness": 200.0, "max_brightness": 100.0}},
            "quality.min_brightness: must be below",
        ),
        ({"quality": {"max_yaw": 2.0}}, r"quality.max_yaw: must be in \[0, 1\]"),
        ({"quality": {"min_face_px": 40, "colour": 1}}, "quality.colour: unknown key"),
        ({"match": {"min_face_px": 40}}, r"match.min_face_px: moved to \[quality\] min_face_px"),
        ({"mqtt": {"ca_file": "/ca.pem"}}, r"mqtt.ca_file: moved to \[mqtt.tls\] ca_file"),
        (
            {"mqtt": {"tls": {"cert_file": "/c.pem"}}},
            "mqtt.tls: cert_file and key_file must be given together",
        ),
        ({"mqtt": {"tls": {"verify": False}}}, "mqtt.tls.verify: unknown key"),
        ({"mqtt": {"device": "door-2"}}, "mqtt.device: unknown key"),
        ({"mqtt": {"keepalive": 70000}}, r"mqtt.keepalive: must be in \[5, 65535\]"),
        ({"camera": {"kind": "opencv"}}, "exactly one of device, url, pipeline, path; got none"),
        ({"camera": {"device": 1.5}}, "camera.device: must be an integer or a string"),
        ({"camera": {"device": 0, "fps": 0}}, r"camera.fps: must be in \(0, 240\]"),
        ({"camera": {"device": 0, "scene": {}}}, "camera.scene: unknown key"),
        (
            {"homeassistant": {"presence_timeout_s": 0}},
            r"homeassistant.presence_timeout_s: must be in \[1, 86400\]",
        ),
        ({"homeassistant": {"snapshot": "yes"}}, "homeassistant.snapshot: must be true or false"),
        ({"homeassistant": {"snapshot_px": 1024}}, r"homeassistant.snapshot_px: must be in \[32, 256\]"),
        ({"homeassistant": {"snapshot_max_bytes": 10}}, r"homeassistant.snapshot_max_bytes: must be in"),
        ({"homeassistant": {"snapshot_interval_s": 0.1}}, r"homeassistant.snapshot_interval_s: must be in"),
        (
            {"homeassistant": {"configuration_url": "door.local"}},
            "homeassistant.configuration_url: must be empty or",
        ),
        ({"homeassistant": {"presence": 1}}, "homeassistant.presence: unknown key"),
        ({"visitors": {"max_events": 0}}, r"visitors.max_events: must be in \[1, 500\]"),
        ({"visitors": {"max_age_h": 1000}}, r"visitors.max_age_h: must be in \[0.1, 720\]"),
        ({"visitors": {"crops_per_event": 11}}, r"visitors.crops_per_event: must be in \[1, 10\]"),
        ({"visitors": {"keep": 1}}, "visitors.keep: must be true or false"),
    ],
)
def test_bad_config_names_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(raw)
    assert "\n" not in str(caught.value)


def test_home_assistant_snapshot_and_kept_visitors_are_off_by_default() -> None:
    config = parse_config({})
    assert config.mqtt.ha_discovery is False
    assert config.homeassistant.snapshot is False and config.visitors.keep is False
    assert config.homeassistant.presence_timeout_s == 120.0
    on = parse_config({"homeassistant": {"snapshot": True, "presence_timeout_s": 5},
                       "visitors": {"keep": True, "max_events": 3}})  # fmt: skip
    assert on.homeassistant.snapshot and on.homeassistant.presence_timeout_s == 5.0
    assert on.visitors.keep and on.visitors.max_events == 3


def test_sections_parse_into_the_types_their_stages_use(tmp_path) -> None:
    from edgeface.camera.spec import CameraSpec
    from edgeface.mqtt.settings import MqttSettings, TlsSettings
    from edgeface.vision.quality_settings import QualitySettings

    config = parse_config(
        {
            "device": {"id": "front", "state_dir": str(tmp_path)},
            "camera": {"kind": "opencv", "device": "0", "backoff_initial_s": 0.2},
            "quality": {"max_yaw": 0.4},
            "mqtt": {"keepalive": 60, "tls": {"ca_file": "/ca.pem", "insecure": True}},
        }
    )
    assert config.camera == CameraSpec(kind="opencv", device=0, backoff_initial_s=0.2)
    assert config.quality == QualitySettings(max_yaw=0.4)
    assert config.mqtt == MqttSettings(
        device="front",
        keepalive=60,
        tls=TlsSettings(ca_file=Path("/ca.pem"), insecure=True),
        spool_path=tmp_path / "spool.sqlite3",
    )


def test_mqtt_follows_the_device_section(tmp_path) -> None:
    """The client id, topics and spool come from [device], also after a replace() of it."""
    from dataclasses import replace

    from edgeface.config import Config, DeviceConfig

    config = replace(Config(), device=DeviceConfig(id="back", state_dir=tmp_path))
    assert config.mqtt.device == "back" and config.mqtt.spool_path == tmp_path / "spool.sqlite3"
    assert config.mqtt.effective_client_id == "edgeface-back"


def test_a_config_without_a_camera_section_serves_the_cli_but_not_the_daemon() -> None:
    config = parse_config({})
    assert config.camera is None
    with pytest.raises(ConfigError, match=r"camera: the config has no \[camera\] section"):
        config.require_camera()


def test_limits_are_the_same_in_the_file_and_in_code() -> None:
    """One set of limits: a value the file may not hold is refused by the type too, with the same message."""
    from edgeface.camera.spec import CameraSpec
    from edgeface.mqtt.settings import MqttSettings
    from edgeface.vision.quality_settings import QualitySettings

    cases = [
        ("camera", {"kind": "picamera2", "width": 9000}, lambda: CameraSpec(kind="picamera2", width=9000)),
        ("mqtt", {"spool_max_events": 0}, lambda: MqttSettings(device="d", spool_max_events=0)),
        ("quality", {"min_face_px": 4}, lambda: QualitySettings(min_face_px=4)),
    ]
    for section, table, build in cases:
        with pytest.raises(ConfigError) as from_file:
            parse_config({section: table})
        with pytest.raises(ConfigError) as in_code:
            build()
        assert str(from_file.value) == str(in_code.value), (from_file.value, in_code.value)


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

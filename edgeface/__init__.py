"""edgeface: face recognition for door units (int8 TFLite, hnswlib, MQTT)."""

__version__ = "0.1.0"

"""JSON Schemas of the docs/design.md §6 payloads, shared by the MQTT tests and the end-to-end tests.

Use ``validate(kind, payload)`` (raises ``jsonschema.ValidationError``) with kind one of ``SCHEMAS``.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

_TS = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", "format": "date-time"}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_UUID4 = {
    "type": "string",
    "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
}
_VERSION = {"type": ["integer", "null"], "minimum": 0}

EVENT = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edgeface recognition event",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "event_id",
        "ts",
        "device",
        "camera",
        "track",
        "decision",
        "identity",
        "score",
        "margin",
        "threshold",
        "frames",
        "bbox",
        "gallery_version",
        "model_sha256",
        "latency_ms",
    ],
    "properties": {
        "event_id": _UUID4,
        "ts": _TS,
        "device": {"type": "string", "minLength": 1},
        "camera": {"type": "string", "minLength": 1},
        "track": {"type": "integer", "minimum": 0},
        "decision": {"enum": ["match", "unknown"]},
        "identity": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["id", "name"],
                    "properties": {"id": {"type": "string", "minLength": 1}, "name": {"type": "string"}},
                },
            ]
        },
        "score": {"type": "number", "minimum": -1, "maximum": 1},
        "margin": {"type": "number", "minimum": 0, "maximum": 2},
        "threshold": {"type": "number", "minimum": -1, "maximum": 1},
        "frames": {"type": "integer", "minimum": 1},
        "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
        "gallery_version": _VERSION,
        "model_sha256": _SHA256,
        "latency_ms": {"type": "number", "minimum": 0},
        # a match that corrects this track's earlier `unknown` names that event
        "corrects": _UUID4,
    },
    # a match names who; an unknown names nobody
    "allOf": [
        {
            "if": {"properties": {"decision": {"const": "match"}}},
            "then": {"properties": {"identity": {"type": "object"}}},
            "else": {"properties": {"identity": {"type": "null"}}},
        }
    ],
}

STATUS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edgeface device status (retained; 'offline' is the Last Will)",
    "type": "object",
    "additionalProperties": False,
    "required": ["state", "ts", "version", "gallery", "model"],
    "properties": {
        "state": {"enum": ["online", "offline"]},
        "ts": _TS,
        "version": {"type": "string", "minLength": 1},
        "gallery": {
            "type": "object",
            "additionalProperties": False,
            "required": ["version", "count"],
            "properties": {
                "version": _VERSION,
                "count": {"type": "integer", "minimum": 0},
                "expired": {"type": "boolean"},
                "freshness": {  # fleet sync: the newest signed timestamp (docs/design.md §4)
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["stale", "age_s", "version", "expires"],
                    "properties": {
                        "stale": {"type": "boolean"},
                        "age_s": {"type": ["number", "null"], "minimum": 0},
                        "version": {"type": ["integer", "null"]},
                        "expires": {"type": ["string", "null"]},
                    },
                },
            },
        },
        "model": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "sha256"],
            "properties": {"name": {"type": "string"}, "sha256": {"type": "string"}},
        },
        "decision": {  # the threshold in force and where it came from (config, gallery, or card fallback)
            "type": "object",
            "additionalProperties": False,
            "required": ["threshold", "margin", "source", "detail"],
            "properties": {
                "threshold": {"type": "number", "minimum": -1, "maximum": 1},
                "margin": {"type": "number", "minimum": 0},
                "source": {"enum": ["config", "gallery", "card"]},
                "detail": {"type": "string"},
            },
        },
        "spool": {"type": "object"},  # only while the spool is degraded
        "incidents": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind", "detail", "ts"],
                "properties": {
                    "kind": {
                        "enum": [
                            "gallery_set_aside",
                            "gallery_unusable",
                            "reload_refused",
                            "restart_needed",
                            "gallery_expired",
                            "bundle_rejected",
                            "gallery_stale",
                        ]
                    },
                    "detail": {"type": "string"},
                    "ts": _TS,
                },
            },
        },
    },
}

_STAGE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["p50", "p95"],
    "properties": {"p50": {"type": "number", "minimum": 0}, "p95": {"type": "number", "minimum": 0}},
}

METRICS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edgeface metrics (QoS 0, not retained)",
    "type": "object",
    "required": ["ts", "device", "fps", "latency_ms", "queues", "dropped_frames", "uptime_s"],
    "properties": {
        "ts": _TS,
        "device": {"type": "string", "minLength": 1},
        "fps": {"type": "number", "minimum": 0},
        "latency_ms": {"type": "object", "additionalProperties": _STAGE},
        "queues": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "dropped_frames": {"type": "integer", "minimum": 0},
        "uptime_s": {"type": "number", "minimum": 0},
    },
}

GALLERY_STATE = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edgeface device gallery state (retained); the sync client adds running/fleet/expired",
    "type": "object",
    "required": ["version", "status", "reason", "ts"],
    "properties": {
        "version": _VERSION,
        "status": {"enum": ["applied", "rejected"]},
        "reason": {"type": ["string", "null"]},
        "ts": _TS,
        "running": {"type": "integer", "minimum": 0},
        "fleet": {"type": "string", "minLength": 1},
        "expired": {"type": "boolean"},
        "freshness": {"type": ["object", "null"]},  # the newest signed timestamp: stale, age_s, ...
    },
    "allOf": [
        {
            "if": {"properties": {"status": {"const": "rejected"}}},
            "then": {"properties": {"reason": {"type": "string", "minLength": 1}}},
        }
    ],
}

HA_DISCOVERY = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Home Assistant MQTT discovery config of one edgeface entity (retained)",
    "type": "object",
    "required": [
        "name",
        "unique_id",
        "availability_topic",
        "availability_template",
        "payload_available",
        "payload_not_available",
        "device",
    ],
    "anyOf": [{"required": ["state_topic"]}, {"required": ["image_topic", "content_type"]}],
    "properties": {
        "unique_id": {"type": "string", "pattern": "^edgeface_[A-Za-z0-9_-]+$"},
        "device": {
            "type": "object",
            "required": ["identifiers", "name", "manufacturer", "model", "sw_version"],
            "properties": {"identifiers": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
        },
        "payload_available": {"const": "online"},
        "payload_not_available": {"const": "offline"},
        "entity_category": {"const": "diagnostic"},
        "event_types": {"const": ["match", "unknown"]},
        "payload_on": {"const": "ON"},
        "payload_off": {"const": "OFF"},
    },
}

_B64 = {"type": "string", "pattern": "^[A-Za-z0-9+/]*={0,2}$"}
_HASHED = {
    "type": "object",
    "additionalProperties": False,
    "required": ["size", "sha256"],
    "properties": {"size": {"type": "integer", "minimum": 0}, "sha256": _SHA256},
}

# Retained on {prefix}/fleet/{fleet}/gallery (format of edgeface/sync/chunks.py); chunks are raw bytes.
FLEET_ANNOUNCEMENT = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edgeface fleet gallery announcement (retained)",
    "type": "object",
    "required": ["format", "manifest", "signature", "payload"],
    "properties": {
        "format": {"const": "edgeface-announce/1"},
        "manifest": _B64,
        "signature": _B64,
        "payload": {
            "type": "object",
            "required": ["size", "sha256", "chunks"],
            "properties": {
                "size": {"type": "integer", "minimum": 0},
                "sha256": _SHA256,
                "chunks": {"type": "array", "items": _HASHED},
            },
        },
    },
}

# The signed manifest inside an announcement, base64-decoded (docs/design.md §4, edgeface/sync/manifest.py).
BUNDLE_MANIFEST = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edgeface gallery bundle manifest",
    "type": "object",
    "required": [
        "format",
        "fleet",
        "version",
        "created",
        "expires",
        "model_sha256",
        "dim",
        "dtype",
        "count",
        "identities",
        "vectors",
    ],
    "properties": {
        "format": {"const": "edgeface-bundle/1"},
        "fleet": {"type": "string", "minLength": 1},
        "version": {"type": "integer", "minimum": 1},
        "created": {"type": "string", "format": "date-time"},
        "expires": {"type": ["string", "null"], "format": "date-time"},
        "model_sha256": _SHA256,
        "dim": {"type": "integer", "minimum": 1},
        "dtype": {"const": "float32"},
        "count": {"type": "integer", "minimum": 0},
        "identities": _SHA256,
        "vectors": _SHA256,
        "base_version": {"type": "integer", "minimum": 1},
        "remove": {"type": "array", "items": {"type": "string"}},
        "result": {
            "type": "object",
            "required": ["count", "identities", "vectors"],
            "properties": {
                "count": {"type": "integer", "minimum": 0},
                "identities": _SHA256,
                "vectors": _SHA256,
            },
        },
    },
    "dependentRequired": {"remove": ["base_version"], "result": ["base_version"]},
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "event": EVENT,
    "status": STATUS,
    "metrics": METRICS,
    "gallery_state": GALLERY_STATE,
    "ha_discovery": HA_DISCOVERY,
    "fleet_announcement": FLEET_ANNOUNCEMENT,
    "bundle_manifest": BUNDLE_MANIFEST,
}


def validate(kind: str, payload: Any) -> None:
    """Raise jsonschema.ValidationError unless ``payload`` matches the §6 schema ``kind``."""
    schema = SCHEMAS[kind]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(payload)


def validate_status_with_spool(payload: dict[str, Any]) -> None:
    """``STATUS`` with its ``spool`` object spelled out (``SpoolHealth.as_dict()``: present only while degraded)."""
    schema = copy.deepcopy(STATUS)
    schema["properties"]["spool"] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["mode", "quarantined_files", "events_lost", "events_lost_unknown",
                     "events_dropped_disk_full", "events_in_memory", "last_error"],
        "properties": {
            "mode": {"enum": ["disk", "memory"]},
            "quarantined_files": {"type": "integer", "minimum": 0},
            "events_lost": {"type": "integer", "minimum": 0},
            "events_lost_unknown": {"type": "boolean"},
            "events_dropped_disk_full": {"type": "integer", "minimum": 0},
            "events_in_memory": {"type": "integer", "minimum": 0},
            "last_error": {"type": ["string", "null"]},
        },
    }  # fmt: skip
    jsonschema.validate(payload, schema)

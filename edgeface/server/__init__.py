"""Server side of the fleet: what makes, signs and publishes galleries, and what measures accuracy.

`build` (full and delta bundles), `delta` (the smallest change between two galleries), `signing` (key
generation and Ed25519 signing), `publish` (retained MQTT announcement and chunks), `evaluation` (ROC,
identification) and `openset` (DIR at FPIR). Device code (camera, recognition, MQTT, the sync client) never
imports this package: the contract is in pyproject.toml (`[tool.importlinter]`) and `make lint` checks it.
Only the CLI (`edgeface gallery ...`, `edgeface eval`) joins both sides.
"""

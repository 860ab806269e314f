"""edgeface_tools: training-side tools (model export, the card's fallback decision, board dependency sets).

Code here may import TensorFlow; the device package `edgeface` never does, nor does it import this package
(pyproject.toml `[tool.importlinter]`). Server code the `edgeface` CLI runs (gallery build, signing,
publishing, evaluation) lives in `edgeface.server` so it works from an installed wheel.
"""

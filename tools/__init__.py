"""edgeface_tools: training- and server-side tools (model export, gallery building, evaluation).

Code here may import TensorFlow; the device package `edgeface` never does.
"""

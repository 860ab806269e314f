"""The demo: a scripted scene of real faces, a local mosquitto, and the runner behind `edgeface demo`."""

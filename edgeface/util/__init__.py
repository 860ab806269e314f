"""Helpers every layer may use: config field limits, log-safe text, timestamps, paths, statistics, image headers."""

"""From frames to events: the frame queue, tracks, the recognizer, which decisions are announced, and events."""

"""The door service: parts built once, start-up and recovery, the main loop, incidents, systemd notification."""

"""MQTT transport (docs/design.md §6): topics, payload builders, the spooled publisher, Home Assistant
discovery.

Importing this package does not import paho; ``MqttPublisher`` lives in ``edgeface.mqtt.client``.
"""

"""LoRaWAN checks and the ChirpStack v4 MQTT gateway protocol.

Parsing and MIC checks (``packet_forwarder.lorawan``) are pure functions;
``mqtt_link`` and ``uplink_sink`` are the thin I/O adapters.
"""

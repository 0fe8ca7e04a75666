"""Store-and-forward for uplinks: memory first, SQLite for what is not acknowledged quickly.

This package knows nothing of radios or MQTT: it moves opaque ``UplinkRecord``
bodies to an ``UplinkSink`` and keeps them until the sink confirms delivery.
"""

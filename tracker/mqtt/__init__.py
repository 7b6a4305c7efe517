"""MQTT edge of the tracker: the embedded broker (and, beside it, the ingester)."""

"""Hot spot patrol dosage tracker: the core, free of Flask and MQTT."""

#!/usr/bin/env python3
"""Entry point of the MQTT ingester; the loop lives in tracker.mqtt.ingester."""

from tracker.mqtt.run import main

if __name__ == "__main__":
    main()

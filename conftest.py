"""Fixtures for real servers (databases, MQTT brokers) are shared by every test module."""

pytest_plugins = ["tests.servers"]

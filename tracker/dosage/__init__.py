"""The dosage pipeline: pings and payloads, geofencing, the engine, storing, incremental recompute,
and the reports read from what is stored."""

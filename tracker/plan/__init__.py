"""The operation plan: its tables, the YAML reader, storage, and compliance against the plan."""

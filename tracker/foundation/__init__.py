"""The shared foundation: settings, the database and its tables, time, reading
input, writing tables."""

"""The shared foundation: settings, the database and its tables, time, parsing input, writing tables."""

"""The SQLite store: huedb's embedded truth (one file in the data directory, or memory)."""

"""Staging rows into the session: how a driver's incoming rows (database result batches, API
records) become the step's table in DuckDB, streamed, typed and never all in memory at once."""

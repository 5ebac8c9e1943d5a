"""The Dagster-free runtime: a session (one DuckDB file per run), a step's workspace, the runner
that executes one step through its driver, connections, asset checks, housekeeping, and the file
fingerprints behind the CSV sensor."""

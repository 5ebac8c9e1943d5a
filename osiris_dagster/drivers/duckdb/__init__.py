"""duckdb.processor: a SQL step sealed to its upstream views, and its query's column lineage."""

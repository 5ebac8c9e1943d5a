"""filesystem.csv_extractor and filesystem.csv_writer: reading CSV files into the session with
DuckDB, typing their columns from every value, and writing tables back out atomically."""

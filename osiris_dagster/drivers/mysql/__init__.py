"""mysql.extractor and mysql.writer: MySQL/MariaDB results streamed as Arrow (connectorx, with a
pymysql fallback), and session tables written back in batches."""

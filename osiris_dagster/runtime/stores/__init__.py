"""Where a session's step tables live (the lead fills this package; s3.py is the S3 part)."""

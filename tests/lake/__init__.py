"""Tests of the ducklake session store, executors past one process, Celery and S3."""

"""The one HTTP client (requests + urllib3 Retry) shared by the API drivers, and JSON paths."""

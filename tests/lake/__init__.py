"""End-to-end tests of the ducklake session store (run only in the lake virtualenv)."""

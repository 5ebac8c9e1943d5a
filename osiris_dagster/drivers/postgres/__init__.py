"""supabase.extractor and supabase.writer: PostgreSQL over SQL (psycopg) or REST (PostgREST)."""

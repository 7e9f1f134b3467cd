"""SQLAlchemy tables and engine helpers; the source of truth that survives restarts."""

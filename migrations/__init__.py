"""Alembic revisions of abstractruntime; shipped in the wheel as ``abstractruntime._migrations``."""

"""Numbered schema revisions; Alembic loads them by path."""

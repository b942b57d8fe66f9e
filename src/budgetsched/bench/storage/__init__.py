"""Storage: the SQLite results store (schema with migrations, one transaction helper, claims, provenance)."""

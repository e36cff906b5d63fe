"""training package (see docs/architecture.md)."""

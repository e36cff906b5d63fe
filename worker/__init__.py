"""worker package (see docs/architecture.md)."""

"""indexer package (see docs/architecture.md)."""

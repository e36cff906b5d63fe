"""training package (see DESIGN.md)."""

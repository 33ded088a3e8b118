"""Gateway keys and teams managed at runtime (docs/admin.md)."""

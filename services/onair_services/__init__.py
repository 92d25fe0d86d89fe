"""onair services."""

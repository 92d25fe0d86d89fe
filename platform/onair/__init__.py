"""onair — the platform library."""

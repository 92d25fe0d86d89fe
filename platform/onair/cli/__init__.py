"""The one CLI, ``onair``: devstack, serve, bench, pgo, logs, demo."""

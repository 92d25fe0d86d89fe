"""The one error type of the devstack: its message is one actionable line (plus a log tail)."""


class DevstackError(RuntimeError):
    """A server could not be found, started, probed or stopped."""

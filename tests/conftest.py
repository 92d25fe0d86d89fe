"""Test configuration: the real-server fixtures come from onair.testing (the devstack's own code)."""

pytest_plugins = ["onair.testing"]

"""liveapi: the streamer's write side — channels, publish keys, title, tags and options.

A write commits to liveapi's own database first, then logs one ``media.broad_info.*`` event per
changed field (the event is the log line); ``logged_version`` and the re-logger make sure a crash
between the two never loses an event for good. See docs/liveapi.md.
"""

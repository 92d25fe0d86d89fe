"""liveinfo: the read side viewers hit hardest (docs/liveinfo.md).

Projections of the media log events into its own database (``liveinfo.channels``: status, title,
tags, options, metadata; ``liveinfo.viewers``: viewer counts of the chat processes), a popularity
ranking in a Valkey sorted set, reads through the cached reader, and a live stream of each
channel's view over SSE fed from NATS.
"""

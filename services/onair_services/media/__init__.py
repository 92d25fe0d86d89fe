"""media: a simulated ingest and transcoder (no video).

Encoders connect to ``/ingest/{channel}`` with their publish key, checked against media's own
projection of ``media.broad_info.publish_key``; an accepted stream logs
``media.live_stream.status`` ``open`` and ``media.live_stream.metadata`` (source and renditions),
and ``close`` when it ends — disconnect, silence, shutdown, or a lease no instance renewed. See
docs/media.md.
"""

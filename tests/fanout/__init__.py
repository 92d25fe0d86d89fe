"""Tests of onair.fanout: the shared log, the NATS bridge, the SSE and WebSocket endpoints."""

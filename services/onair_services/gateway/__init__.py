"""gateway: the only public entry of onair (docs/gateway.md).

Routing (``table.py``), authentication of the user's access token and the signed identity to the
upstreams (``authn.py``), rate limits shared by the replicas (``onair.ratelimit``), a circuit
breaker per upstream (``onair.resilience``), HTTP, SSE and WebSocket pass-through (``proxy.py``,
``websocket.py``), CORS and security headers (``headers.py``), the combined OpenAPI
(``openapi.py``). The service skeleton gives it probes, the error body, request ids, metrics and
the access log.
"""

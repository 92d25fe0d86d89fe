"""The service skeleton every onair service is built on (written once, here).

``create_service_app(ServiceSpec(...), routers)`` -> a FastAPI app with the lifespan that opens the
base clients the service asked for, ``/healthz``, ``/readyz``, ``/metrics``, the request middleware
(request id, body limit, metrics, access log), one JSON error model and a truthful OpenAPI document.
See docs/service.md.
"""

from onair.service.app import Service, ServiceSpec, create_service_app, service_of
from onair.service.errors import ApiError, ErrorBody, Unavailable, answers, responses
from onair.service.settings import RuntimeSettings

__all__ = [
    "ApiError",
    "ErrorBody",
    "RuntimeSettings",
    "Service",
    "ServiceSpec",
    "Unavailable",
    "answers",
    "create_service_app",
    "responses",
    "service_of",
]

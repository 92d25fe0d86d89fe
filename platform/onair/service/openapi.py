"""An OpenAPI document that tells the truth about a service, derived once from its routes.

FastAPI documents 200 and 422 only, with a validation schema nobody answers with. The skeleton
documents, on every operation, the error statuses it can really return, each with the one error
body (:class:`onair.service.errors.ErrorBody`):

* 422 when the operation takes parameters or a body (and the body is the skeleton's, not
  FastAPI's ``HTTPValidationError``); 413 when it takes a body;
* 401 when it needs an identity (or accepts an optional one, which may be invalid), 403 when it
  needs a role — found from the ``onair.auth`` dependencies it uses (``__onair_auth__``), which also
  set the operation's ``security``;
* 503 when the service depends on a backend (database, Valkey, NATS, Kafka) that may be down;
* whatever the route declared itself (``responses=responses(404, 409)``) and
  ``ServiceSpec.common_errors``.

Security schemes: ``onairIdentity`` (the gateway's ``X-Onair-Identity`` header, internal calls) and
``bearerAuth`` (a user's access token, the public API behind the gateway).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from onair.service.errors import STATUS_TEXT, ErrorBody
from onair.service.routes import iter_routes

if TYPE_CHECKING:
    from onair.service.app import ServiceSpec

ERROR_REF = "#/components/schemas/ErrorBody"
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

SECURITY_SCHEMES: dict[str, Any] = {
    "onairIdentity": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Onair-Identity",
        "description": "Identity signed by the gateway (internal calls only; the gateway sets it)",
    },
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user's access token from POST /auth/login (public API, through the gateway)",
    },
}


def auth_kinds(dependant: Dependant) -> set[str]:
    """The ``__onair_auth__`` marks of every dependency of a route (``required``/``optional``/``role``)."""
    found: set[str] = set()

    def walk(dep: Dependant) -> None:
        mark = getattr(dep.call, "__onair_auth__", None)
        if isinstance(mark, str):
            found.add(mark)
        for sub in dep.dependencies:
            walk(sub)

    walk(dependant)
    return found


def _takes_input(route: Any) -> tuple[bool, bool]:
    params = bool(get_flat_params(route.dependant))
    body = route.body_field is not None
    return params or body, body


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": STATUS_TEXT.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


def _operations(schema: dict[str, Any], route: Any) -> Iterator[dict[str, Any]]:
    item = schema.get("paths", {}).get(route.path_format, {})
    for method in route.methods or ():
        op = item.get(method.lower())
        if op is not None:
            yield op


def _has_backend(spec: ServiceSpec) -> bool:
    return bool(
        spec.migrations or spec.valkey or spec.tracking or spec.nats or spec.kafka or spec.projections
    )


def document_errors(schema: dict[str, Any], app: FastAPI, spec: ServiceSpec) -> dict[str, Any]:
    """Add the error answers, the error schema and the security of every operation (in place)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, sub in (
        ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}).items()
    ):
        schemas.setdefault(name, sub)
    body_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    body_schema.pop("$defs", None)
    schemas["ErrorBody"] = body_schema
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    backend = _has_backend(spec)
    for route in iter_routes(app):
        if not isinstance(route.original_route if hasattr(route, "original_route") else route, APIRoute):
            continue
        if not route.include_in_schema:
            continue
        takes_input, takes_body = _takes_input(route)
        kinds = auth_kinds(route.dependant)
        statuses = set(spec.common_errors)
        if takes_input:
            statuses.add(422)
        if takes_body:
            statuses.add(413)
        if kinds:
            statuses.add(401)
        if "role" in kinds:
            statuses.add(403)
        if backend and route.path_format not in PROBE_PATHS:
            statuses.add(503)
        for op in _operations(schema, route):
            responses = op.setdefault("responses", {})
            if "422" in responses and not takes_input:
                del responses["422"]
            for status in sorted(statuses):
                current = responses.get(str(status))
                if current is None or _is_fastapi_validation(current):
                    responses[str(status)] = _error_response(status)
            if kinds:
                required = bool(kinds & {"required", "role"})
                op["security"] = [{"onairIdentity": []}] if required else [{"onairIdentity": []}, {}]
    unused = {"HTTPValidationError", "ValidationError"} & set(schemas)
    rest = {
        **schema,
        "components": {**components, "schemas": {k: v for k, v in schemas.items() if k not in unused}},
    }
    for name in unused:
        if not _referenced(rest, f"#/components/schemas/{name}"):
            schemas.pop(name, None)
    return schema


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    content = response.get("content", {}).get("application/json", {})
    return content.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError")


def _referenced(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        if node.get("$ref") == ref:
            return True
        return any(_referenced(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_referenced(v, ref) for v in node)
    return False


def install_openapi(app: FastAPI, spec: ServiceSpec) -> None:
    """Replace ``app.openapi`` with the truthful document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = document_errors(schema, app, spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

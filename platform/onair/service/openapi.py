"""An OpenAPI document that tells the truth about a service, derived once from its routes.

FastAPI documents 200 and 422 only, with a validation schema nobody answers with. The skeleton
documents, on every operation, the error statuses it can really return, each with the one error
body (:class:`onair.service.errors.ErrorBody`):

* 422 when the operation takes parameters or a body (and the body is the skeleton's, not
  FastAPI's ``HTTPValidationError``); 413 when it takes a body (a model, or a ``requestBody``
  given through ``openapi_extra`` for a raw upload);
* 401 when it needs an identity (or accepts an optional one, which may be invalid), 403 when it
  needs a role — found from the ``onair.auth`` dependencies it uses (``__onair_auth__``);
* whatever a dependency declares it can answer (:func:`onair.service.errors.answers`, e.g. a
  rate limiter's 429), on every route that uses it;
* 503 when the service depends on a backend (database, Valkey, NATS, Kafka) that may be down;
* whatever the route declared itself (``responses=responses(404, 409)``) and
  ``ServiceSpec.common_errors`` (probes excepted).

Security: the schemes a route's dependencies declare stay as FastAPI wrote them (``onair.auth``
declares the gateway's identity header as ``OnairIdentity``); an operation that accepts an
optional identity also lists ``{}`` (anonymous). The document always declares ``OnairIdentity``
(internal calls, the gateway's signed identity header) and ``BearerAuth`` (a user's access token,
the public API behind the gateway), without replacing a declaration a service made itself.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from onair.service.errors import ERRORS_MARK, STATUS_TEXT, ErrorBody
from onair.service.routes import iter_routes

if TYPE_CHECKING:
    from onair.service.app import ServiceSpec

ERROR_REF = "#/components/schemas/ErrorBody"
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

#: The scheme names every onair document uses (``onair.auth.fastapi`` declares the first).
IDENTITY_SCHEME = "OnairIdentity"
BEARER_SCHEME = "BearerAuth"

SECURITY_SCHEMES: dict[str, Any] = {
    IDENTITY_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "X-Onair-Identity",
        "description": "Identity signed by the gateway (internal calls only; the gateway sets it)",
    },
    BEARER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user's access token from POST /auth/login (public API, through the gateway)",
    },
}


def _walk(dependant: Dependant) -> Iterator[Any]:
    yield dependant.call
    for sub in dependant.dependencies:
        yield from _walk(sub)


def auth_kinds(dependant: Dependant) -> set[str]:
    """The ``__onair_auth__`` marks of every dependency of a route (``required``/``optional``/``role``)."""
    return {
        mark for call in _walk(dependant) if isinstance(mark := getattr(call, "__onair_auth__", None), str)
    }


def declared_errors(dependant: Dependant) -> set[int]:
    """The statuses the dependencies of a route declare (``__onair_errors__``, see ``answers``)."""
    found: set[int] = set()
    for call in _walk(dependant):
        found.update(getattr(call, ERRORS_MARK, ()) or ())
    return found


def _takes_input(route: Any, ops: list[dict[str, Any]]) -> tuple[bool, bool]:
    params = bool(get_flat_params(route.dependant))
    body = route.body_field is not None or any("requestBody" in op for op in ops)
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
    schemes = components.setdefault("securitySchemes", {})
    for name, scheme in SECURITY_SCHEMES.items():
        schemes.setdefault(name, scheme)
    backend = _has_backend(spec)
    for route in iter_routes(app):
        if not isinstance(route.original_route if hasattr(route, "original_route") else route, APIRoute):
            continue
        if not route.include_in_schema:
            continue
        ops = list(_operations(schema, route))
        takes_input, takes_body = _takes_input(route, ops)
        kinds = auth_kinds(route.dependant)
        probe = route.path_format in PROBE_PATHS
        statuses = declared_errors(route.dependant) | (set() if probe else set(spec.common_errors))
        if takes_input:
            statuses.add(422)
        if takes_body:
            statuses.add(413)
        if kinds:
            statuses.add(401)
        if "role" in kinds:
            statuses.add(403)
        if backend and not probe:
            statuses.add(503)
        for op in ops:
            for param in op.get("parameters", []):
                _no_null(param)
            responses = op.setdefault("responses", {})
            if "422" in responses and not takes_input:
                del responses["422"]
            for status in sorted(statuses):
                current = responses.get(str(status))
                if current is None or _is_fastapi_validation(current):
                    responses[str(status)] = _error_response(status)
            for status, response in responses.items():
                _errors_are_json(status, response)
            if kinds:
                security = [req for req in op.get("security", []) if req] or [{IDENTITY_SCHEME: []}]
                if not kinds & {"required", "role"}:  # optional: anonymous callers are welcome too
                    security.append({})
                op["security"] = security
    unused = {"HTTPValidationError", "ValidationError"} & set(schemas)
    rest = {
        **schema,
        "components": {**components, "schemas": {k: v for k, v in schemas.items() if k not in unused}},
    }
    for name in unused:
        if not _referenced(rest, f"#/components/schemas/{name}"):
            schemas.pop(name, None)
    return schema


def _no_null(param: dict[str, Any]) -> None:
    """A parameter is a text or absent, never JSON ``null``: FastAPI writes ``x: str | None = None``
    as ``anyOf: [{string}, {null}]``, and a client (or a request generator) would send ``"null"``."""
    schema = param.get("schema")
    if not isinstance(schema, dict) or not isinstance(schema.get("anyOf"), list):
        return
    kept = [s for s in schema["anyOf"] if s != {"type": "null"}]
    if len(kept) == len(schema["anyOf"]):
        return
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    param["schema"] = {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def _errors_are_json(status: str, response: dict[str, Any]) -> None:
    """An error answer is JSON whatever the route's own media type (FastAPI documents a declared
    error of an HTML or binary route under that route's media type)."""
    content = response.get("content") or {}
    if status[:1] not in ("4", "5") or list(content) == ["application/json"]:
        return
    if _referenced(content, ERROR_REF):
        response["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}


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


# -- one public document from several services (the gateway's /openapi.json) -------------------------

SCHEMA_REF = "#/components/schemas/"
#: What the gateway itself may answer on any route: rate limit, upstream unusable, down, too slow.
GATEWAY_ERRORS = (429, 502, 503, 504)
_INTERNAL_PATHS = PROBE_PATHS | {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def merge_openapi(
    docs: Mapping[str, Mapping[str, Any]],
    *,
    public_security: Sequence[Mapping[str, Sequence[str]]] | None = None,
    security_schemes: Mapping[str, Mapping[str, Any]] | None = None,
    services: Mapping[str, str] | None = None,
    gateway_errors: Sequence[int] = GATEWAY_ERRORS,
    title: str = "onair public API",
    version: str = "0.1.0",
    description: str = "",
) -> dict[str, Any]:
    """One OpenAPI document for the public API from the documents of the services behind it.

    ``docs`` maps a public path prefix (as the gateway routes it, e.g. ``"/live"``) to the
    OpenAPI document of the service that serves it; a service with several prefixes appears once
    per prefix. Only the paths under each prefix are taken (never probes or the docs pages).

    * Security: an operation that needs the gateway's identity (``OnairIdentity``, which clients
      never send) requires ``public_security`` instead (default: ``BearerAuth``, the user's access
      token the gateway verifies); one that accepts an optional identity lists ``{}`` too. Other
      schemes a service declares are kept.
    * ``gateway_errors`` (429, 502, 503, 504) are documented on every operation with the error body.
    * Each operation is tagged with its service (``tags`` and ``x-onair-service``) and its
      ``operationId`` is prefixed with the service name, so ids stay unique and stable.
    * Component schemas reachable from the public operations are merged; equal ones are shared, a
      name two services use for different schemas is renamed ``<Service><Name>`` (references too).

    Raises ``ValueError`` when two services document the same method on the same path.
    """
    public = [dict(req) for req in (public_security or [{BEARER_SCHEME: []}])]
    out_schemes: dict[str, Any] = {
        name: dict(scheme)
        for name, scheme in (security_schemes or {BEARER_SCHEME: SECURITY_SCHEMES[BEARER_SCHEME]}).items()
    }
    out_schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    owner: dict[tuple[str, str], str] = {}
    tags: dict[str, dict[str, str]] = {}
    for prefix, doc in docs.items():
        name = (services or {}).get(prefix) or _service_name(doc)
        components = doc.get("components", {})
        schemas: dict[str, Any] = components.get("schemas", {})
        taken = {
            p: item
            for p, item in doc.get("paths", {}).items()
            if p.startswith(prefix) and p not in _INTERNAL_PATHS
        }
        if not taken:
            continue
        tags.setdefault(name, {"name": name, "description": str(doc.get("info", {}).get("title", name))})
        renames = _schema_renames(taken, schemas, out_schemas, name)
        scheme_renames = _scheme_renames(taken, components.get("securitySchemes", {}), out_schemes, name)
        for old in _reachable(taken, schemas):
            out_schemas.setdefault(renames.get(old, old), _rename_refs(copy.deepcopy(schemas[old]), renames))
        for path, item in taken.items():
            target = paths.setdefault(path, {})
            for method, op in item.items():
                if method not in _METHODS:
                    target.setdefault(method, copy.deepcopy(op))  # path-level parameters, summary
                    continue
                key = (path, method)
                if key in owner and owner[key] != name:
                    raise ValueError(f"{method.upper()} {path} is documented by both {owner[key]} and {name}")
                if key in owner:
                    continue  # the same service under two prefixes
                owner[key] = name
                new = _rename_refs(copy.deepcopy(op), renames)
                new["tags"] = [name]
                new["x-onair-service"] = name
                if "operationId" in new:
                    new["operationId"] = f"{name}_{new['operationId']}"
                _publish_security(new, public, scheme_renames)
                responses = new.setdefault("responses", {})
                for status in gateway_errors:
                    responses.setdefault(str(status), _error_response(status))
                target[method] = new
    if _referenced(paths, ERROR_REF) and "ErrorBody" not in out_schemas:
        out_schemas["ErrorBody"] = _error_body_schema(out_schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, **({"description": description} if description else {})},
        "tags": sorted(tags.values(), key=lambda t: t["name"]),
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(out_schemas.items())), "securitySchemes": out_schemes},
    }


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _service_name(doc: Mapping[str, Any]) -> str:
    title = str(doc.get("info", {}).get("title", "service"))
    return title.removeprefix("onair ").strip().replace(" ", "-") or "service"


def _error_body_schema(existing: Mapping[str, Any]) -> dict[str, Any]:
    body = ErrorBody.model_json_schema(ref_template=SCHEMA_REF + "{model}")
    for sub_name, sub in body.pop("$defs", {}).items():
        if sub_name not in existing:
            existing[sub_name] = sub  # type: ignore[index]
    return body


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMA_REF):
            yield ref[len(SCHEMA_REF) :]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _reachable(paths: Mapping[str, Any], schemas: Mapping[str, Any]) -> list[str]:
    seen: list[str] = []
    todo = list(_refs(paths))
    while todo:
        name = todo.pop()
        if name in seen or name not in schemas:
            continue
        seen.append(name)
        todo.extend(_refs(schemas[name]))
    return seen


def _schema_renames(
    paths: Mapping[str, Any], schemas: Mapping[str, Any], merged: Mapping[str, Any], service: str
) -> dict[str, str]:
    """Names of ``schemas`` that must change because ``merged`` has a different schema of that name
    (or a schema they reference was renamed): until nothing changes."""
    reachable = _reachable(paths, schemas)
    renames: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for name in reachable:
            if name in renames:
                continue
            mine = _rename_refs(copy.deepcopy(schemas[name]), renames)
            if name in merged and merged[name] != mine:
                renames[name] = _unique(f"{service.title().replace('-', '')}{name}", merged, schemas)
                changed = True
    return renames


def _scheme_renames(
    paths: Mapping[str, Any], schemes: Mapping[str, Any], merged: dict[str, Any], service: str
) -> dict[str, str]:
    renames: dict[str, str] = {}
    used = {
        n
        for item in paths.values()
        for op in item.values()
        if isinstance(op, dict)
        for req in op.get("security", [])
        for n in req
    }
    for name in sorted(used - {IDENTITY_SCHEME}):
        scheme = schemes.get(name)
        if scheme is None:
            continue
        if name in merged and merged[name] != scheme:
            renames[name] = _unique(f"{service.title().replace('-', '')}{name}", merged, schemes)
        merged.setdefault(renames.get(name, name), dict(scheme))
    return renames


def _unique(name: str, *taken: Mapping[str, Any]) -> str:
    candidate, i = name, 2
    while any(candidate in t for t in taken):
        candidate, i = f"{name}{i}", i + 1
    return candidate


def _rename_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if not renames:
        return node
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMA_REF) and ref[len(SCHEMA_REF) :] in renames:
            node["$ref"] = SCHEMA_REF + renames[ref[len(SCHEMA_REF) :]]
        for value in node.values():
            _rename_refs(value, renames)
    elif isinstance(node, list):
        for value in node:
            _rename_refs(value, renames)
    return node


def _publish_security(op: dict[str, Any], public: list[dict[str, Any]], renames: Mapping[str, str]) -> None:
    security = op.get("security")
    if not security:
        return
    out: list[dict[str, Any]] = []
    for req in security:
        if IDENTITY_SCHEME in req:
            out.extend(p for p in public if p not in out)
        else:
            new = {renames.get(k, k): v for k, v in req.items()}
            if new not in out:
                out.append(new)
    op["security"] = out

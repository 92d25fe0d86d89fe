"""The gateway's own routes (everything else is proxied): its identity keys and the public API docs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

router = APIRouter()

#: The docs page loads Swagger UI from its CDN and runs an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'"
)


@router.get(
    "/.well-known/identity-jwks.json",
    tags=["gateway"],
    summary="The public keys of the identities the gateway signs (services verify X-Onair-Identity)",
    response_class=Response,
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}, "description": "JWKS"}},
)
async def identity_jwks(request: Request) -> Response:
    body: bytes = request.app.state.service.state["identity_jwks"]
    return Response(body, media_type="application/json", headers={"Cache-Control": "public, max-age=60"})


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> Response:
    import orjson

    doc = await request.app.state.service.state["openapi"].document()
    return Response(orjson.dumps(doc), media_type="application/json")


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    page = get_swagger_ui_html(openapi_url="/openapi.json", title="onair API")
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page

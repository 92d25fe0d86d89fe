"""The pages: one route per page, each a template rendered around the page's script.

Data never comes from here: the page's script asks the BFF and the public API through the gateway
(same origin), with the access token it keeps in memory. What the server renders is the page's
structure (landmarks, headings, forms with their labels, the live regions), so a page is usable
and accessible before its data arrives, and no data of one user is ever cached in a page.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from onair_services.web.settings import WebSettings

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(tags=["pages"])

ChannelId = Annotated[
    str, PathParam(pattern=r"^[a-z0-9_]{3,32}$", description="Channel id (the streamer's username)")
]
HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The page"}
}


def static_version() -> str:
    """A short hash of the static files: their URLs change when they do (cache busting)."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def render(request: Request, template: str, script: str, status: int = 200, **context: Any) -> HTMLResponse:
    settings: WebSettings = request.app.state.web_settings
    page = templates.TemplateResponse(
        request,
        template,
        {
            "script": script,
            "v": request.app.state.static_version,
            "home_refresh_s": settings.home_refresh_s,
            **context,
        },
        status_code=status,
    )
    page.headers["Content-Security-Policy"] = settings.csp
    page.headers["Cache-Control"] = "no-cache"
    return page


@router.get("/", response_class=HTMLResponse, responses=HTML, summary="Home: on air now, ranking, search")
async def home(request: Request) -> HTMLResponse:
    return render(request, "home.html", "home.js")


@router.get(
    "/c/{channel}", response_class=HTMLResponse, responses=HTML, summary="A channel: player, chat, donations"
)
async def channel(request: Request, channel: ChannelId) -> HTMLResponse:
    return render(request, "channel.html", "channel.js", channel=channel)


@router.get("/login", response_class=HTMLResponse, responses=HTML, summary="Log in")
async def login(request: Request) -> HTMLResponse:
    return render(request, "login.html", "login.js")


@router.get("/signup", response_class=HTMLResponse, responses=HTML, summary="Sign up")
async def signup(request: Request) -> HTMLResponse:
    return render(request, "signup.html", "signup.js")


@router.get("/studio", response_class=HTMLResponse, responses=HTML, summary="The streamer's console")
async def studio(request: Request) -> HTMLResponse:
    return render(request, "studio.html", "studio.js")


@router.get("/credits", response_class=HTMLResponse, responses=HTML, summary="Wallet: balance, buy, history")
async def credits(request: Request) -> HTMLResponse:
    return render(request, "credits.html", "credits.js")


def not_found_page(request: Request) -> HTMLResponse:
    return render(request, "not_found.html", "nav.js", status=404, path=request.url.path)

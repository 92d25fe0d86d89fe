"""The web app's pages in-process (no browser): every page answers HTML with its CSP, holds no
inline script, inline handler or style attribute (the CSP would block them), labels every
control, and points only at static files that exist; 404s are a page for browsers and the JSON
error body for everyone else."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from onair.fanout.app import running_server
from onair.service import RuntimeSettings
from onair_services.web.app import create_app
from onair_services.web.pages import STATIC_DIR
from onair_services.web.settings import DEFAULT_CSP

PAGES = ["/", "/c/alice", "/login", "/signup", "/studio", "/credits"]


@pytest_asyncio.fixture
async def web(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(RuntimeSettings(spool_dir=tmp_path / "spool"))
    async with running_server(app, lifespan="on") as url, httpx.AsyncClient(base_url=url) as http:
        yield http


class Page(HTMLParser):
    """What the checks need of a page: scripts, styles, controls, labels, attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = False
        self.styles: list[str] = []
        self.controls: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.label_depth = 0
        self.wrapped: list[str] = []
        self.bad_attrs: list[str] = []
        self.ids: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name, _ in attrs:
            if name.startswith("on") or name == "style":
                self.bad_attrs.append(f"<{tag} {name}>")
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "script":
            self.scripts.append(a)
            self._in_script = True
        elif tag == "link" and a.get("rel") == "stylesheet":
            self.styles.append(str(a.get("href")))
        elif tag == "style":
            self.bad_attrs.append("<style>")
        elif tag == "label":
            self.label_depth += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        elif tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.controls.append(a)
            if self.label_depth:
                self.wrapped.append(str(a.get("id") or a.get("name")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.label_depth -= 1
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_is_html_with_a_strict_csp_and_labelled_controls(
    web: httpx.AsyncClient, path: str
) -> None:
    r = await web.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == DEFAULT_CSP
    assert "unsafe-inline" not in DEFAULT_CSP
    page = Page()
    page.feed(r.text)
    assert page.bad_attrs == [], "inline handlers/styles are blocked by the CSP"
    assert not page.inline_script, "inline scripts are blocked by the CSP"
    assert len(page.scripts) == 1 and page.scripts[0]["type"] == "module"
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    for control in page.controls:
        cid = control.get("id")
        assert (cid and cid in page.label_for) or (cid or control.get("name")) in page.wrapped, (
            f"{path}: a control without a label: {control}"
        )
    for url in [str(s["src"]) for s in page.scripts] + page.styles:
        asset = re.sub(r"\?.*$", "", url)
        resp = await web.get(url)
        assert resp.status_code == 200, asset
        assert resp.headers["cache-control"] == "no-cache"
    assert 'lang="en"' in r.text and 'name="viewport"' in r.text


async def test_static_files_are_typed_and_every_module_import_exists(web: httpx.AsyncClient) -> None:
    for path in STATIC_DIR.iterdir():
        r = await web.get(f"/static/{path.name}")
        assert r.status_code == 200
        wanted = {".js": "text/javascript", ".css": "text/css"}[path.suffix]
        assert r.headers["content-type"].startswith(wanted)
        assert r.headers["x-content-type-options"] == "nosniff"
        if path.suffix == ".js":
            for imported in re.findall(r'from "\./([^"]+)"|import "\./([^"]+)"', path.read_text()):
                name = imported[0] or imported[1]
                assert (STATIC_DIR / name).exists(), f"{path.name} imports a missing {name}"


async def test_no_token_is_ever_put_in_web_storage_or_a_readable_cookie() -> None:
    code = "\n".join(
        line
        for p in STATIC_DIR.glob("*.js")
        for line in p.read_text().splitlines()
        if not line.lstrip().startswith(("//", "*", "/*"))  # code, not comments
    )
    assert "localStorage" not in code and "sessionStorage" not in code
    assert "document.cookie" not in code
    assert "innerHTML" not in code  # text goes in as text


async def test_not_found_is_a_page_for_browsers_and_json_for_the_rest(web: httpx.AsyncClient) -> None:
    r = await web.get("/no/such/page", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Nothing here" in r.text and "/no/such/page" in r.text
    r = await web.get("/no/such/page", headers={"Accept": "application/json"})
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "detail": "no route /no/such/page"}
    r = await web.get("/c/Not%20A%20Channel")
    assert r.status_code == 422
    assert (await web.get("/healthz")).json()["status"] == "ok"

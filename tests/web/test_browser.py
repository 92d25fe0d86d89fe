"""The web app in a real browser (Chromium) against the whole platform.

The main scenario follows one streamer and one viewer, each in their own browser context (own
cookies, own memory): sign-up, a channel, a follow, going live, a title change seen without a
reload, chat both ways in order, a purchase and a donation that shows in chat, the end of the
stream. Then: log in and out (where the tokens live), a wrong password, keyboard-only chat, a
phone-width page, an unknown channel.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from .conftest import PASSWORD, Platform, simulate

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SLOW = 30_000  # ms: what the log stream's projections may take on a busy machine
expect.set_options(timeout=SLOW)


def context(browser: Browser, platform: Platform, **kwargs: Any) -> BrowserContext:
    ctx = browser.new_context(base_url=platform.url, viewport=kwargs.pop("viewport", DESKTOP), **kwargs)
    ctx.set_default_timeout(SLOW)
    return ctx


def sign_up(page: Page, username: str, role: str) -> None:
    page.goto("/signup")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.locator(f'input[name="role"][value="{role}"]').check()
    page.get_by_role("button", name="Sign up").click()


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def chat_texts(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("#chat-log .msg-text").all_inner_texts()]


def in_order(seen: list[str], wanted: list[str]) -> bool:
    """``wanted`` appears in ``seen`` as a subsequence (in that order)."""
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)


def wait_until(check: Any, timeout_s: float = SLOW / 1000) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_streamer_goes_live_and_a_viewer_watches_chats_and_donates(
    platform: Platform, browser: Browser, shots: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    sname, vname = f"s_{tag}", f"v_{tag}"
    s_ctx, v_ctx = context(browser, platform), context(browser, platform)
    try:
        # -- the streamer signs up, lands in the studio and creates the channel ------------------
        studio = s_ctx.new_page()
        sign_up(studio, sname, "streamer")
        expect(studio).to_have_url(re.compile(r"/studio$"))
        create = studio.locator("#create-form")
        create.get_by_label("Title", exact=True).fill("Warming up")
        create.get_by_label("Tags (comma separated, up to 10)").fill("speedrun, retro")
        create.get_by_role("button", name="Create channel").click()
        expect(studio.locator("#publish-key")).to_have_value(re.compile(r"^live_"))
        expect(studio.locator("#key-fingerprint")).to_have_text(re.compile(r"^sha256:"))

        # -- the viewer signs up, opens the channel (offline) and follows it ---------------------
        watch = v_ctx.new_page()
        sign_up(watch, vname, "viewer")
        expect(watch).to_have_url(re.compile(r"/$"))
        wait_until(lambda: httpx.get(f"{platform.url}/live/{sname}").status_code == 200)
        watch.goto(f"/c/{sname}")
        expect(watch.locator("#channel-title")).to_have_text("Warming up")
        expect(watch.locator("#player-status")).to_have_text("Offline")
        follow = watch.get_by_role("button", name="Follow")
        follow.click()
        expect(watch.locator("#follow")).to_have_attribute("aria-pressed", "true")
        home = v_ctx.new_page()
        home.goto("/")

        # -- the streamer goes live (the simulated encoder) ---------------------------------------
        studio.get_by_role("button", name="Go live (simulated encoder)").click()
        expect(studio.locator("#broadcast-status")).to_have_text("LIVE")
        # the viewer sees it without a reload: the channel page, the notification, the home
        expect(watch.locator("#player-status")).to_have_text("Live")
        expect(watch.locator("#live-badge")).to_be_visible()
        expect(watch.locator("#rendition option")).to_have_count(4)  # 1080p60 -> 1080/720/480/360
        expect(watch.locator("#notifications")).to_contain_text(f"{sname} went live")
        card = home.locator(f'#onair .card[data-channel="{sname}"]')
        expect(card).to_contain_text("Warming up")

        # -- the streamer changes the title: page and home follow, search finds it ----------------
        new_title = f"오늘의 방송 {tag}"
        info = studio.locator("#info-form")
        info.get_by_label("Title", exact=True).fill(new_title)
        info.get_by_label("Tags (comma separated, up to 10)").fill("speedrun, 게임")
        info.get_by_role("button", name="Save").click()
        expect(studio.locator("#info-status")).to_have_text(re.compile("Saved"))
        expect(watch.locator("#channel-title")).to_have_text(new_title)
        expect(watch.locator("#tags")).to_contain_text("#게임")
        expect(card).to_contain_text(new_title)
        home.get_by_label("Search channels on air").fill("오늘의")
        expect(home.locator(f'#search-results .card[data-channel="{sname}"]')).to_be_visible()

        # -- chat: from one context to the other, in order ----------------------------------------
        mine = s_ctx.new_page()  # the streamer watches their own channel page
        mine.goto(f"/c/{sname}")
        expect(mine.locator("#chat-form")).to_be_visible()
        sent = [f"hello {i} from the viewer" for i in range(3)]
        box = watch.get_by_label("Message", exact=True)
        for text in sent:
            box.fill(text)
            box.press("Enter")
            expect(watch.locator("#chat-log .msg-text").last).to_have_text(text)
        mine.get_by_label("Message", exact=True).fill("welcome, everyone")
        mine.get_by_label("Message", exact=True).press("Enter")
        for page in (watch, mine):
            expect(page.locator("#chat-log .msg-text").last).to_have_text("welcome, everyone")
            wait_until(lambda p=page: in_order(chat_texts(p), [*sent, "welcome, everyone"]))

        # -- money: buy credits, donate, see it in chat and in the studio -------------------------
        wallet = v_ctx.new_page()
        wallet.goto("/credits")
        wallet.get_by_label("Amount").fill("20")
        wallet.get_by_role("button", name="Buy").click()
        expect(wallet.locator("#credits-balance")).to_have_text("20.00")
        expect(wallet.locator("#ledger")).to_contain_text("Bought credits")
        watch.get_by_label("Amount").fill("5")
        watch.get_by_label("Message (optional)").fill("great run!")
        watch.get_by_role("button", name="Donate").click()
        expect(watch.locator("#donate-status")).to_contain_text("Thank you")
        expect(watch.locator("#balance")).to_have_text("15.00")
        for page in (watch, mine):
            donation = page.locator("#chat-log .msg-donation").last
            expect(donation).to_contain_text(vname)
            expect(donation).to_contain_text("5.00")
            expect(donation).to_contain_text("great run!")
        expect(studio.locator("#stats-donations")).to_contain_text(vname)
        wallet.reload()
        expect(wallet.locator("#ledger")).to_contain_text("Donated")

        # -- screenshots of the home and the channel page (desktop) -------------------------------
        home.reload()
        expect(
            home.locator(f'#ranking li[data-channel="{sname}"], #onair .card[data-channel="{sname}"]').first
        ).to_be_visible()
        home.screenshot(path=str(shots / "home.png"), full_page=True)
        watch.screenshot(path=str(shots / "channel.png"), full_page=True)

        # -- the stream ends, and the page says so ------------------------------------------------
        studio.get_by_role("button", name="End stream").click()
        expect(studio.locator("#broadcast-status")).to_have_text("off air")
        expect(watch.locator("#stream-ended")).to_have_text("The stream has ended.")
        expect(watch.locator("#player-status")).to_have_text("The stream has ended")
        expect(watch.locator("#live-badge")).to_be_hidden()
    finally:
        s_ctx.close()
        v_ctx.close()


def test_log_in_and_out_keep_the_tokens_out_of_reach(platform: Platform, browser: Browser) -> None:
    name = platform.signup("viewer")
    ctx = context(browser, platform)
    try:
        page = ctx.new_page()
        log_in(page, name)
        expect(page).to_have_url(re.compile(r"/$"))
        expect(page.locator("#nav-user")).to_have_text(name)
        # nothing in web storage, nothing readable in document.cookie
        assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
        assert page.evaluate("() => document.cookie") == ""
        cookies = {c["name"]: c for c in ctx.cookies()}
        refresh = cookies["onair_refresh"]
        assert refresh["httpOnly"] and refresh["secure"] and refresh["sameSite"] == "Strict"
        assert refresh["path"] == "/auth"
        # a new page (memory is gone) is signed in again through the cookie
        page.reload()
        expect(page.locator("#nav-user")).to_have_text(name)
        with page.expect_navigation():  # log out, then back to the home
            page.get_by_role("button", name="Log out").click()
        expect(page.locator("#nav-account")).to_contain_text("Log in")
        page.reload()
        expect(page.locator("#nav-account")).to_have_attribute("data-state", "signed-out")
        assert "onair_refresh" not in {c["name"] for c in ctx.cookies()}
    finally:
        ctx.close()


def test_a_wrong_password_shows_the_apis_message(platform: Platform, browser: Browser) -> None:
    name = platform.signup("viewer")
    ctx = context(browser, platform)
    try:
        page = ctx.new_page()
        log_in(page, name, "not the password at all")
        expect(page.locator("#login-error")).to_have_text("wrong username or password")
        expect(page).to_have_url(re.compile(r"/login"))
        # and a sign-up the API refuses shows its detail too
        sign_up(page, name, "viewer")
        expect(page.locator("#signup-error")).to_contain_text(f"the username '{name}' is taken")
    finally:
        ctx.close()


def test_a_chat_message_is_sent_with_the_keyboard_only(
    platform: Platform, browser: Browser, channel: tuple[str, str]
) -> None:
    name, _ = channel
    viewer = platform.signup("viewer")
    ctx = context(browser, platform)
    try:
        page = ctx.new_page()
        log_in(page, viewer)
        expect(page).to_have_url(re.compile(r"/$"))
        expect(page.locator("#nav-user")).to_have_text(viewer)
        page.goto(f"/c/{name}")
        expect(page.locator("#chat-form")).to_be_visible()
        for _ in range(80):  # Tab through the page until the message box has the focus
            if page.evaluate("() => document.activeElement && document.activeElement.id") == "chat-text":
                break
            page.keyboard.press("Tab")
        else:
            raise AssertionError("the message box cannot be reached with the keyboard")
        page.keyboard.type("typed without a mouse")
        page.keyboard.press("Enter")
        expect(page.locator("#chat-log .msg-text").last).to_have_text("typed without a mouse")
        assert page.evaluate("() => document.activeElement.id") == "chat-text"  # ready for the next
    finally:
        ctx.close()


def test_pages_fit_a_phone(
    platform: Platform, browser: Browser, channel: tuple[str, str], shots: Path
) -> None:
    name, token = channel
    simulate(platform, name, token, live=True)
    ctx = context(browser, platform, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = ctx.new_page()
        for path in ("/", f"/c/{name}", "/login", "/signup", "/studio", "/credits"):
            page.goto(path)
            expect(page.locator("#nav-account")).not_to_have_attribute("data-state", "loading")
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
        page.goto(f"/c/{name}")
        expect(page.locator("#channel-title")).to_have_text(f"{name} plays")
        expect(page.locator("#player-status")).to_have_text("Live")
        # on a phone the chat comes right after the player, before donations and the rest
        chat_top = page.locator("#chat-heading").bounding_box()
        donate_top = page.locator("#donate-heading").bounding_box()
        assert chat_top and donate_top and chat_top["y"] < donate_top["y"]
        page.screenshot(path=str(shots / "channel-phone.png"), full_page=True)
    finally:
        ctx.close()
        simulate(platform, name, token, live=False)


def test_an_unknown_channel_says_so(platform: Platform, browser: Browser) -> None:
    ctx = context(browser, platform)
    try:
        page = ctx.new_page()
        page.goto("/c/nobody_here_at_all")
        expect(page.locator("#page-error")).to_have_text("There is no channel named “nobody_here_at_all”.")
        response = page.goto("/no/such/page")
        assert response is not None and response.status == 404
        expect(page.get_by_role("heading", name="Nothing here")).to_be_visible()
    finally:
        ctx.close()


def test_the_chat_shows_gaps_and_deletes_as_the_fan_out_sends_them(
    platform: Platform, browser: Browser, channel: tuple[str, str]
) -> None:
    """The page's reading of the room stream (the stream is the fan-out's format, served by the
    test: a real gap needs a room older than its retention)."""
    name, _ = channel

    def frame(n: int, body: dict[str, Any], event: str | None = None) -> str:
        head = f"event: {event}\n" if event else f"id: {n}\n"
        return head + "data: " + json.dumps(body) + "\n\n"

    stream = "".join(
        [
            frame(1, {"type": "message", "id": 1, "n": 1, "ts": 1, "user": "ann", "text": "first"}),
            frame(2, {"type": "message", "id": 2, "n": 2, "ts": 2, "user": "bo", "text": "rude"}),
            frame(0, {"type": "gap", "missed": 7, "reason": "expired"}, event="gap"),
            frame(10, {"type": "delete", "id": 2, "n": 10, "ts": 3, "by": name}),
            frame(11, {"type": "donation", "id": 11, "n": 11, "ts": 4, "user": "cy", "amount": 250}),
            frame(
                1, {"type": "message", "id": 1, "n": 1, "ts": 1, "user": "ann", "text": "first"}
            ),  # a repeat
        ]
    )
    ctx = context(browser, platform)
    try:
        page = ctx.new_page()
        served: list[str] = []

        def room(route: Route) -> None:  # the stream once; a reconnect then finds the room away
            served.append(route.request.url)
            if len(served) == 1:
                route.fulfill(status=200, content_type="text/event-stream", body=stream)
            else:
                route.abort()

        page.route(re.compile(rf".*/chat/{name}/sse.*"), room)
        page.goto(f"/c/{name}")
        log = page.locator("#chat-log")
        expect(log.locator(".msg-gap")).to_have_text("Some messages were skipped (7).")
        expect(log.locator(".msg-deleted")).to_have_text("message deleted by a moderator")
        expect(log.locator(".msg-donation")).to_contain_text("cy donated 2.50")
        assert page.locator("#chat-log .msg-text").all_inner_texts() == ["first"]  # once, not twice
        assert log.locator("li").count() == 4
    finally:
        ctx.close()

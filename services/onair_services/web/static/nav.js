// Every page: the account part of the navigation, and the signed-in user's notifications
// ("went live" of the channels they follow) while the page is open.

import { currentUser, hasRole, logout, onSession, ready } from "./api.js";
import { authorizedStream } from "./sse.js";
import { $, el } from "./ui.js";

let notifications = null;

function renderAccount(user) {
  const box = $("nav-account");
  if (!box) return;
  box.replaceChildren();
  box.dataset.state = user ? "signed-in" : "signed-out";
  if (!user) {
    const next = encodeURIComponent(location.pathname + location.search);
    box.append(el("a", { href: `/login?next=${next}` }, "Log in"), el("a", { href: "/signup" }, "Sign up"));
    return;
  }
  if (hasRole("streamer")) box.append(el("a", { href: "/studio" }, "Studio"));
  box.append(el("a", { href: "/credits" }, "Credits"));
  box.append(el("span", { class: "nav-user", id: "nav-user" }, user.username));
  const button = el("button", { type: "button", class: "button button-quiet", id: "logout" }, "Log out");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await logout();
    } finally {
      location.assign("/");
    }
  });
  box.append(button);
}

export function notice(text, { link, kind = "info" } = {}) {
  const box = $("notifications");
  if (!box) return;
  const item = el("div", { class: `toast toast-${kind}` }, el("span", {}, text));
  if (link) item.append(" ", el("a", { href: link.href }, link.text));
  const close = el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
  close.addEventListener("click", () => item.remove());
  item.append(close);
  box.append(item);
  setTimeout(() => item.remove(), 30000);
}

// One notification stream per browser, not per tab: a browser holds at most six connections per
// site over HTTP/1.1, and each channel page already keeps two streams. The tab holding the
// "onair-notify" lock reads the stream and passes each notification to the other tabs
// (BroadcastChannel); when it closes, the next tab takes the lock over.
const relay = "BroadcastChannel" in window ? new BroadcastChannel("onair-notify") : null;
let stopHolding = null;

function showNotification(body) {
  if (body.type === "went_live") {
    notice(`${body.channel} went live${body.title ? `: ${body.title}` : ""}`, {
      link: { href: `/c/${body.channel}`, text: "Watch" },
    });
  }
}

if (relay) relay.onmessage = (event) => showNotification(event.data);

function readNotifications(onBody) {
  return authorizedStream("/notify/stream", {
    onEvent(ev) {
      if (ev.event !== "message") return;
      try {
        onBody(JSON.parse(ev.data));
      } catch {
        // not JSON: ignore
      }
    },
  });
}

function followNotifications(user) {
  if (stopHolding) {
    stopHolding();
    stopHolding = null;
  }
  if (!user) return;
  if (!(navigator.locks && relay)) {
    const stream = readNotifications(showNotification);
    stopHolding = () => stream.close();
    return;
  }
  const abort = new AbortController();
  let release = null;
  stopHolding = () => {
    abort.abort();
    if (release) release();
  };
  navigator.locks
    .request(`onair-notify:${user.id}`, { signal: abort.signal }, async () => {
      const stream = readNotifications((body) => {
        showNotification(body);
        relay.postMessage(body);
      });
      await new Promise((resolve) => {
        release = resolve;
      });
      stream.close();
    })
    .catch(() => {}); // aborted while waiting: signed out
}

let shown; // the user id the page shows (undefined: nothing shown yet)

function sync(user) {
  const id = user ? user.id : null;
  if (id === shown) return;
  shown = id;
  renderAccount(user);
  followNotifications(user);
}

onSession(sync);
ready.then(() => sync(currentUser()));

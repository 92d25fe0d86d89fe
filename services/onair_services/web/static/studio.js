// The streamer's console: create the channel, edit title and tags, rotate the publish key (shown
// once), start and stop the built-in simulated encoder, watch viewers and donations come in.

import { ApiError, api, currentUser, hasRole, ready } from "./api.js";
import "./nav.js";
import { $, clearError, el, money, show, showError } from "./ui.js";

let me = null;
let numbers = null;

function tags(text) {
  return text
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
}

function showKey(key) {
  $("publish-key").value = key;
  show($("key-once"), true);
  $("key-once").focus();
}

function fill(ch) {
  $("info-title").value = ch.title;
  $("info-tags").value = ch.tags.join(", ");
  $("key-fingerprint").textContent = ch.key_fingerprint;
  $("encoder-channel").textContent = ch.id;
  $("channel-link").href = `/c/${ch.id}`;
  show($("create-section"), false);
  show($("studio"), true);
}

// -- broadcast -----------------------------------------------------------------------------------
function renderSession(body) {
  const live = Boolean(body && body.live);
  $("broadcast-status").textContent = live ? "LIVE" : "off air";
  const s = body && body.session;
  $("broadcast-session").textContent = s
    ? live
      ? `${s.kind} session since ${new Date(s.opened_at).toLocaleTimeString()} · ${s.renditions.map((r) => r.name).join(", ")}`
      : `last session ended${s.close_reason ? ` (${s.close_reason})` : ""}`
    : "";
  $("go-live").disabled = live;
  $("stop-live").disabled = !live;
}

/** Media learns about a new channel from the log stream: retry its 404 for a little while. */
async function media(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await api(path, options);
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404 || err.code === "not_live" || attempt >= 15) throw err;
      $("broadcast-session").textContent = "Waiting for the ingest to learn about your channel…";
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

async function loadSession() {
  try {
    renderSession(await media(`/media/channels/${me}/session`));
    clearError($("broadcast-error"));
  } catch (err) {
    showError($("broadcast-error"), err);
  }
}

$("go-live").addEventListener("click", async () => {
  $("go-live").disabled = true;
  clearError($("broadcast-error"));
  try {
    const session = await media(`/media/channels/${me}/simulate`, { method: "POST" });
    renderSession({ live: true, session });
  } catch (err) {
    showError($("broadcast-error"), err);
  }
  await loadSession();
});

$("stop-live").addEventListener("click", async () => {
  $("stop-live").disabled = true;
  clearError($("broadcast-error"));
  try {
    const session = await api(`/media/channels/${me}/simulate`, { method: "DELETE" });
    renderSession({ live: false, session });
  } catch (err) {
    showError($("broadcast-error"), err);
  }
  await loadSession();
});

// -- title, tags, key ----------------------------------------------------------------------------
$("info-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError($("info-error"));
  const status = $("info-status");
  status.textContent = "Saving…";
  try {
    const body = await api(`/channels/${me}`, {
      method: "PATCH",
      body: { title: $("info-title").value, tags: tags($("info-tags").value) },
    });
    fill(body.channel);
    status.textContent = Object.keys(body.positions).length ? "Saved: viewers see it now." : "Nothing changed.";
  } catch (err) {
    status.textContent = "";
    showError($("info-error"), err);
  }
});

$("rotate-key").addEventListener("click", async () => {
  clearError($("key-error"));
  try {
    const body = await api(`/channels/${me}/publish-key`, { method: "POST" });
    fill(body.channel);
    showKey(body.publish_key);
  } catch (err) {
    showError($("key-error"), err);
  }
});

$("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError($("create-error"));
  const body = { tags: tags($("create-tags").value) };
  const title = $("create-title").value.trim();
  if (title) body.title = title;
  try {
    const made = await api("/channels", { method: "POST", body });
    fill(made.channel);
    showKey(made.publish_key);
    startNumbers();
    loadSession();
  } catch (err) {
    showError($("create-error"), err);
  }
});

// -- live numbers --------------------------------------------------------------------------------
// Asked from the BFF every few seconds rather than streamed: a browser holds at most six
// connections per site over HTTP/1.1, and the channel page (which the streamer often has open
// too) already keeps two streams.
const NUMBERS_MS = 3000;
const seenDonations = new Set();

async function loadNumbers() {
  try {
    const page = await api(`/bff/web/live/${me}`);
    $("stats-viewers").textContent = String(page.chat ? page.chat.viewers : page.channel.viewers);
    const gifts = page.chat ? page.chat.messages.filter((m) => m.type === "donation") : [];
    for (const gift of gifts) {
      if (seenDonations.has(gift.id)) continue;
      seenDonations.add(gift.id);
      $("stats-donations").prepend(
        el("li", { class: "msg msg-donation" }, el("span", { class: "msg-user" }, gift.user), ` ${money(gift.amount)}`, gift.text ? ` — ${gift.text}` : ""),
      );
    }
    show($("stats-donations-empty"), seenDonations.size === 0);
    $("stats-donors").replaceChildren(
      ...(page.donors || []).map((d) => el("li", {}, el("span", { class: "msg-user" }, d.donor), ` ${money(d.amount)}`)),
    );
  } catch (err) {
    if (err.status !== 404) console.warn(err); // liveinfo may not know a new channel yet
  }
}

function startNumbers() {
  if (numbers) return;
  loadNumbers();
  numbers = setInterval(() => {
    if (document.visibilityState === "visible") loadNumbers();
  }, NUMBERS_MS);
}

async function start() {
  await ready;
  const user = currentUser();
  if (!user || !(hasRole("streamer") || hasRole("admin"))) {
    show($("studio-signin"), true);
    return;
  }
  me = user.username;
  try {
    fill(await api(`/channels/${me}`));
  } catch (err) {
    if (err.status === 404) {
      show($("create-section"), true);
      return;
    }
    showError($("studio-error"), err);
    return;
  }
  startNumbers();
  loadSession();
}

start();

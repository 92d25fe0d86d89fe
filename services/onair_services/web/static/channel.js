// A channel: the player stand-in, title/tags/renditions that follow the channel live (liveinfo's
// SSE stream), chat over SSE with a send box, donations, follow, the caller's balance.
//
// The first paint comes from the BFF (one composed answer); then two EventSources keep the page
// current: /live/<channel>/events (the channel's view, newest version wins) and
// /chat/<channel>/sse (resumed right after the last message the BFF gave, so nothing is shown
// twice; a gap marker from the fan-out is shown as "some messages were skipped").

import { api, currentUser, newKey, onSession, ready } from "./api.js";
import "./nav.js";
import { $, clearError, debounce, el, money, show, showError, since, tagList, toMinor } from "./ui.js";

const channel = $("main").dataset.channel;
const MAX_CHAT = 300;
const DEGRADED_TEXT = {
  chat: "chat history",
  donors: "top supporters",
  related: "related channels",
  wallet: "your balance",
  follow: "your follow state",
};

let version = -1;
let wasLive = null;
let lastN = 0;
let chatSource = null;
let liveSource = null;
let donationKey = null;
let degradedRetries = 0;

// -- the channel's view --------------------------------------------------------------------------
function renderView(view) {
  if (typeof view.version === "number" && view.version <= version) return; // never go back
  version = typeof view.version === "number" ? view.version : version;
  const live = view.status === "live";
  document.title = `${view.title} · onair`;
  $("channel-title").textContent = view.title;
  $("tags").replaceChildren(...tagList(view.tags));
  $("viewers").textContent = String(view.viewers ?? 0);
  $("started").textContent = live ? ` · ${since(view.started_at)}` : "";

  const player = $("player");
  player.dataset.status = live ? "live" : "offline";
  show($("live-badge"), live);
  const ended = !live && (wasLive === true || Boolean(view.ended_at));
  $("player-status").textContent = live ? "Live" : ended ? "The stream has ended" : "Offline";
  show($("stream-ended"), ended);
  wasLive = live;

  const select = $("rendition");
  const current = select.value;
  const renditions = live ? view.renditions || [] : [];
  select.replaceChildren(
    ...renditions.map((r) =>
      el("option", { value: r.name }, `${r.name}${r.fps ? ` · ${r.fps} fps` : ""}${r.bitrate_kbps ? ` · ${r.bitrate_kbps} kbit/s` : ""}`),
    ),
  );
  if (renditions.some((r) => r.name === current)) select.value = current;
  select.disabled = renditions.length === 0;
  show($("player-controls"), renditions.length > 0);
  renderRendition(view);
}

let lastView = null;
function renderRendition(view = lastView) {
  lastView = view;
  if (!view) return;
  const live = view.status === "live";
  const chosen = $("rendition").value;
  const source = view.source;
  $("player-rendition").textContent = live
    ? `${chosen || "auto"}${source ? ` · source ${source.height}p${source.fps} ${source.codec || ""}` : ""}`
    : "";
}
$("rendition").addEventListener("change", () => renderRendition());

function followView() {
  liveSource = new EventSource(`/live/${channel}/events`);
  liveSource.onmessage = (event) => {
    try {
      renderView(JSON.parse(event.data));
    } catch (err) {
      console.error(err);
    }
  };
  liveSource.onerror = () => {
    // EventSource retries by itself after a dropped connection, but gives up on an error answer
    // (a 503 while liveinfo restarts): then open it again a little later.
    if (liveSource.readyState === EventSource.CLOSED) setTimeout(followView, 3000);
  };
  liveSource.addEventListener("gap", async () => {
    // updates were lost: read the channel again
    try {
      renderView(await api(`/live/${channel}`, { auth: false }));
    } catch (err) {
      console.warn(err);
    }
  });
}

// -- chat ----------------------------------------------------------------------------------------
function atBottom(log) {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}

function addChatItem(item) {
  const log = $("chat-log");
  const stick = atBottom(log);
  log.append(item);
  while (log.children.length > MAX_CHAT) log.firstElementChild.remove();
  if (stick) log.scrollTop = log.scrollHeight;
}

function chatEvent(ev, live = true) {
  if (typeof ev.n === "number") {
    if (ev.n <= lastN) return; // already shown (the BFF's history, or a replay after a reconnect)
    lastN = ev.n;
  }
  if (ev.type === "message") {
    addChatItem(
      el(
        "li",
        { class: "msg", dataset: { id: ev.id, n: ev.n } },
        el("span", { class: "msg-user" }, ev.user || "someone"),
        " ",
        el("span", { class: "msg-text" }, ev.text || ""),
      ),
    );
  } else if (ev.type === "donation") {
    if (live) refreshDonors();
    addChatItem(
      el(
        "li",
        { class: "msg msg-donation", dataset: { id: ev.id, n: ev.n } },
        el("span", { class: "msg-user" }, ev.user || "someone"),
        " donated ",
        el("strong", {}, money(ev.amount)),
        ev.text ? el("span", { class: "msg-text" }, ` — ${ev.text}`) : null,
      ),
    );
  } else if (ev.type === "delete") {
    const gone = $("chat-log").querySelector(`li[data-id="${Number(ev.id)}"]`);
    if (gone) {
      gone.classList.add("msg-deleted");
      gone.replaceChildren("message deleted by a moderator");
    }
  } else if (ev.type === "system") {
    addChatItem(el("li", { class: "msg msg-system", dataset: { n: ev.n } }, ev.text || ""));
  }
}

function chatGap(gap) {
  const count = typeof gap.missed === "number" ? ` (${gap.missed})` : "";
  addChatItem(el("li", { class: "msg msg-gap" }, `Some messages were skipped${count}.`));
}

function followChat() {
  const url = lastN > 0 ? `/chat/${channel}/sse?last_event_id=${lastN}` : `/chat/${channel}/sse`;
  chatSource = new EventSource(url);
  chatSource.onmessage = (event) => {
    try {
      chatEvent(JSON.parse(event.data));
    } catch (err) {
      console.error(err);
    }
  };
  chatSource.addEventListener("gap", (event) => {
    try {
      chatGap(JSON.parse(event.data));
    } catch {
      chatGap({});
    }
  });
  chatSource.onerror = () => {
    // reconnect ourselves, resuming after the last message shown
    chatSource.close();
    setTimeout(followChat, 2000);
  };
}

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("chat-text");
  const text = input.value.trim();
  if (!text) return;
  const button = event.target.querySelector("button");
  button.disabled = true;
  try {
    await api(`/chat/${channel}/messages`, { method: "POST", body: { text } });
    input.value = "";
    clearError($("chat-error"));
  } catch (err) {
    showError($("chat-error"), err);
  } finally {
    button.disabled = false;
    input.focus();
  }
});

// -- the caller's parts: follow, donate, balance -------------------------------------------------
function renderPersonal(page) {
  const user = currentUser();
  const own = user && user.username === channel;
  show($("chat-form"), Boolean(user));
  show($("chat-signin"), !user);
  show($("donate-form"), Boolean(user) && !own);
  show($("donate-signin"), !user);
  show($("studio-link"), Boolean(own));
  const follow = $("follow");
  show(follow, Boolean(user) && !own); // unknown state (degraded): "Follow" (PUT is idempotent)
  if (page.follow) setFollowing(page.follow.following);
  if (page.wallet) $("balance").textContent = money(page.wallet.balance);
}

function setFollowing(following) {
  const button = $("follow");
  button.setAttribute("aria-pressed", following ? "true" : "false");
  button.textContent = following ? "Following" : "Follow";
}

$("follow").addEventListener("click", async () => {
  const button = $("follow");
  const following = button.getAttribute("aria-pressed") === "true";
  button.disabled = true;
  try {
    await api(`/follows/${channel}`, { method: following ? "DELETE" : "PUT" });
    setFollowing(!following);
    clearError($("follow-error"));
  } catch (err) {
    showError($("follow-error"), err);
  } finally {
    button.disabled = false;
  }
});

async function refreshBalance() {
  try {
    const body = await api("/wallet/balance");
    $("balance").textContent = money(body.balance);
  } catch (err) {
    showError($("donate-error"), err);
  }
}

for (const id of ["donate-amount", "donate-message"]) {
  $(id).addEventListener("input", () => {
    donationKey = null; // another donation: another key
  });
}

$("donate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const amount = toMinor($("donate-amount").value);
  const status = $("donate-status");
  clearError($("donate-error"));
  if (amount === null) {
    showError($("donate-error"), "Enter an amount above 0.");
    return;
  }
  const message = $("donate-message").value.trim();
  const body = { channel, amount };
  if (message) body.message = message;
  donationKey = donationKey || newKey(); // a retry of the same donation reuses its key
  const button = event.target.querySelector("button");
  button.disabled = true;
  status.textContent = "Sending…";
  try {
    const done = await api("/wallet/donations", {
      method: "POST",
      body,
      headers: { "Idempotency-Key": donationKey },
    });
    status.textContent =
      done.state === "completed" || done.state === "announcing"
        ? `Thank you! You donated ${money(done.amount)}.`
        : `Your donation is being processed (${done.state}).`;
    donationKey = null;
    $("donate-message").value = "";
  } catch (err) {
    status.textContent = "";
    if (err.status !== 0) donationKey = null; // answered: a new attempt is a new donation
    showError($("donate-error"), err);
  } finally {
    button.disabled = false;
    refreshBalance();
  }
});

// -- the page ------------------------------------------------------------------------------------
function renderDonors(donors) {
  if (!donors) return;
  $("donors").replaceChildren(
    ...donors.map((d) => el("li", {}, el("span", { class: "msg-user" }, d.donor), ` ${money(d.amount)}`)),
  );
  show($("donors-empty"), donors.length === 0);
}

function renderRelated(related) {
  if (!related) return;
  $("related").replaceChildren(
    ...related.map((r) => el("li", {}, el("a", { href: `/c/${r.channel}` }, r.title || r.channel), " ", el("span", { class: "muted" }, `@${r.channel}`))),
  );
  show($("related-empty"), related.length === 0);
}

function renderDegraded(parts) {
  const names = parts.map((p) => DEGRADED_TEXT[p] || p);
  $("degraded").textContent = names.length ? `Unavailable right now: ${names.join(", ")}.` : "";
  show($("degraded"), names.length > 0);
}

// A donation in chat moves the ranking of supporters: ask the BFF again a moment later (the
// wallet's top-donors view follows its ledger a little behind).
const refreshDonors = debounce(async () => {
  try {
    const page = await api(`/bff/web/live/${channel}`);
    renderDonors(page.donors);
    if (page.wallet) $("balance").textContent = money(page.wallet.balance);
  } catch (err) {
    console.warn(err);
  }
}, 1500);

async function loadPage() {
  const page = await api(`/bff/web/live/${channel}`);
  renderView(page.channel);
  if (page.chat) {
    if (lastN === 0) for (const message of page.chat.messages) chatEvent(message, false);
    lastN = Math.max(lastN, page.chat.last_n || 0);
  }
  renderDonors(page.donors);
  renderRelated(page.related);
  renderPersonal(page);
  renderDegraded(page.degraded);
  if (page.degraded.length && degradedRetries < 6) {
    // a part is missing (an upstream failed or was slow): ask again, a little later each time
    degradedRetries += 1;
    setTimeout(() => loadPage().catch(() => {}), 2000 * degradedRetries);
  } else if (!page.degraded.length) {
    degradedRetries = 0;
  }
  return page;
}

async function start() {
  await ready;
  for (let attempt = 0; ; attempt++) {
    try {
      await loadPage();
      clearError($("page-error"));
      break;
    } catch (err) {
      if (err.status === 404) {
        showError($("page-error"), `There is no channel named “${channel}”.`);
        show($("channel-page"), false);
        return;
      }
      showError($("page-error"), `${err.message} Retrying…`);
      await new Promise((r) => setTimeout(r, Math.min(1000 * 2 ** attempt, 10000)));
    }
  }
  followView();
  followChat();
  onSession(() => loadPage().catch((err) => showError($("page-error"), err)));
}

start();

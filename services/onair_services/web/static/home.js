// Home: channels on air now and the ranking (from the BFF, asked again every few seconds: the list
// has no stream of its own), and a search box with results as you type (the search API).

import { api } from "./api.js";
import "./nav.js";
import { $, channelLink, clearError, debounce, el, show, showError } from "./ui.js";

const main = $("main");
const refreshMs = Math.max(2, Number(main.dataset.refreshS) || 5) * 1000;

function renderOnAir(onAir) {
  const list = $("onair");
  list.setAttribute("aria-busy", "false");
  if (!onAir) return; // degraded: keep what is shown
  list.replaceChildren(...onAir.items.map((item) => channelLink(item, { viewers: item.viewers ?? undefined })));
  show($("onair-empty"), onAir.items.length === 0);
}

function renderRanking(ranking) {
  if (!ranking) return;
  $("ranking").replaceChildren(
    ...ranking.map((e) =>
      el(
        "li",
        { dataset: { channel: e.channel } },
        el("a", { href: `/c/${e.channel}` }, e.title || e.channel),
        " ",
        el("span", { class: "muted" }, `@${e.channel} · ${e.viewers} watching`),
      ),
    ),
  );
  show($("ranking-empty"), ranking.length === 0);
}

async function loadHome() {
  try {
    const home = await api("/bff/web/home", { auth: false });
    renderOnAir(home.on_air);
    renderRanking(home.ranking);
    const degraded = new Set(home.degraded);
    for (const [part, id] of [["on_air", "onair-error"], ["ranking", "ranking-error"]]) {
      if (degraded.has(part)) showError($(id), "This list is unavailable right now; retrying.");
      else clearError($(id));
    }
  } catch (err) {
    showError($("onair-error"), err);
  }
}

// -- search ------------------------------------------------------------------------------------
let searchSeq = 0;

async function search(q, tag) {
  const seq = ++searchSeq;
  const params = new URLSearchParams({ limit: "20" });
  if (q) params.set("q", q);
  if (tag) params.set("tag", tag);
  const wrap = $("search-results-wrap");
  if (!q && !tag) {
    show(wrap, false);
    clearError($("search-error"));
    return;
  }
  try {
    const page = await api(`/search?${params}`, { auth: false });
    if (seq !== searchSeq) return; // an older answer arriving late
    clearError($("search-error"));
    $("search-results").replaceChildren(...page.items.map((item) => channelLink(item)));
    $("search-summary").textContent =
      page.total === 0 ? "No channel on air matches." : `${page.total} channel${page.total === 1 ? "" : "s"} on air match.`;
    show(wrap, true);
  } catch (err) {
    if (seq === searchSeq) showError($("search-error"), err);
  }
}

const input = $("search-q");
const typed = debounce(() => search(input.value.trim(), null), 250);
input.addEventListener("input", typed);
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  search(input.value.trim(), null);
});
const wantedTag = new URLSearchParams(location.search).get("tag");
if (wantedTag) {
  input.value = "";
  $("search-results-heading").textContent = `Channels tagged #${wantedTag}`;
  search("", wantedTag);
}

loadHome();
setInterval(() => {
  if (document.visibilityState === "visible") loadHome();
}, refreshMs);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") loadHome();
});

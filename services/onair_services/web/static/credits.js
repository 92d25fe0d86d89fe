// The wallet: balance, buying credit through the simulated provider, the ledger's history.

import { api, newKey, ready } from "./api.js";
import "./nav.js";
import { $, clearError, el, money, show, showError, toMinor, when } from "./ui.js";

const KIND = {
  "purchase:deposit": "Bought credits",
  "donation:debit": "Donated",
  "donation:credit": "Donation received",
  "compensation:refund": "Refund",
};
let page = 1;
let purchaseKey = null;

async function loadBalance() {
  const body = await api("/wallet/balance");
  $("credits-balance").textContent = money(body.balance);
  $("credits-held").textContent = body.held ? `${money(body.held)} held in donations still running` : "";
}

function row(entry) {
  const what = KIND[`${entry.kind}:${entry.step}`] || `${entry.kind} (${entry.step})`;
  return el(
    "tr",
    {},
    el("td", {}, when(entry.created_at)),
    el("td", {}, what),
    el("td", {}, entry.channel ? el("a", { href: `/c/${entry.channel}` }, entry.channel) : "—"),
    el("td", { class: `num ${entry.amount < 0 ? "minus" : "plus"}` }, `${entry.amount > 0 ? "+" : ""}${money(entry.amount)}`),
  );
}

async function loadLedger(reset = false) {
  if (reset) page = 1;
  const body = await api(`/wallet/ledger?page=${page}&limit=20`);
  const rows = body.entries.map(row);
  if (reset) $("ledger").replaceChildren(...rows);
  else $("ledger").append(...rows);
  show($("ledger-empty"), reset && rows.length === 0);
  show($("ledger-more"), body.has_more);
}

$("ledger-more").addEventListener("click", async () => {
  page += 1;
  try {
    await loadLedger();
  } catch (err) {
    showError($("credits-error"), err);
  }
});

$("buy-amount").addEventListener("input", () => {
  purchaseKey = null;
});

$("buy-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("buy-error");
  const status = $("buy-status");
  clearError(error);
  const amount = toMinor($("buy-amount").value);
  if (amount === null) {
    showError(error, "Enter an amount above 0.");
    return;
  }
  purchaseKey = purchaseKey || newKey();
  const button = event.target.querySelector("button");
  button.disabled = true;
  status.textContent = "Paying…";
  try {
    const done = await api("/wallet/purchase", {
      method: "POST",
      body: { amount },
      headers: { "Idempotency-Key": purchaseKey },
    });
    status.textContent =
      done.state === "completed" ? `Bought ${money(done.amount)}.` : `Your purchase is being processed (${done.state}).`;
    purchaseKey = null;
  } catch (err) {
    status.textContent = "";
    if (err.status !== 0) purchaseKey = null;
    showError(error, err);
  } finally {
    button.disabled = false;
    await Promise.allSettled([loadBalance(), loadLedger(true)]);
  }
});

async function start() {
  const signedIn = await ready;
  if (!signedIn) {
    show($("credits-signin"), true);
    return;
  }
  show($("credits"), true);
  try {
    await Promise.all([loadBalance(), loadLedger(true)]);
  } catch (err) {
    showError($("credits-error"), err);
  }
}

start();

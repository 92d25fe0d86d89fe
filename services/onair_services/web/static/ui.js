// Small DOM helpers. Text always goes in as text (textContent), never as HTML.

export function $(id) {
  return document.getElementById(id);
}

/** el("li", {class: "x", dataset: {n: 1}}, "text", child) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Show an error's message (an ApiError carries the API's `detail`) in a role=alert element. */
export function showError(node, err) {
  if (!node) return;
  const text = err instanceof Error ? err.message : String(err);
  node.textContent = text;
  node.hidden = false;
}

export function clearError(node) {
  if (!node) return;
  node.textContent = "";
  node.hidden = true;
}

export function show(node, visible = true) {
  if (node) node.hidden = !visible;
}

/** Minor units -> "12.50". */
export function money(minor) {
  if (typeof minor !== "number") return "—";
  return (minor / 100).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

/** "12.5" -> 1250 minor units (null when not a positive amount). */
export function toMinor(text) {
  const value = Number.parseFloat(String(text).replace(",", "."));
  if (!Number.isFinite(value) || value <= 0) return null;
  return Math.round(value * 100);
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(typeof iso === "number" ? iso : iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString();
}

export function since(iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (s < 60) return "just started";
  if (s < 3600) return `live for ${Math.floor(s / 60)} min`;
  return `live for ${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

export function tagList(tags) {
  return (tags || []).map((t) => el("li", { class: "tag" }, el("a", { href: `/?tag=${encodeURIComponent(t)}` }, `#${t}`)));
}

/** A card/link for a channel (home, search results, related). */
export function channelLink(item, { viewers } = {}) {
  const meta = [];
  if (typeof viewers === "number") meta.push(el("span", { class: "viewers" }, `${viewers} watching`));
  return el(
    "li",
    { class: "card", dataset: { channel: item.channel } },
    el("a", { class: "card-link", href: `/c/${item.channel}` }, el("span", { class: "card-title" }, item.title || item.channel)),
    el("p", { class: "card-meta" }, el("span", { class: "muted" }, `@${item.channel}`), ...meta),
    item.tags && item.tags.length ? el("ul", { class: "tags", "aria-label": "Tags" }, ...tagList(item.tags)) : null,
  );
}

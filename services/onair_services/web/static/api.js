// The session and every call to the API (same origin: the gateway).
//
// The access token lives in this module's memory only: never in localStorage, sessionStorage or
// a cookie JavaScript can read. The refresh token is the auth service's HttpOnly, Secure,
// SameSite=Strict cookie (Path=/auth): POST /auth/refresh trades it for a new access token when
// the page loads and a minute before the token expires. Refreshes are serialised across tabs
// (navigator.locks): the auth service revokes a session whose refresh token is used twice.

const REFRESH_EARLY_S = 60;
let session = null; // {token, user, expiresAt}
let timer = null;
let inflight = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body.detail === "string" ? body.detail : `the server answered ${status}`;
    super(detail);
    this.status = status;
    this.code = body && body.error ? body.error : "http_error";
    this.body = body || {};
  }
}

export function currentUser() {
  return session ? session.user : null;
}

export function hasRole(role) {
  const user = currentUser();
  return Boolean(user && Array.isArray(user.roles) && user.roles.includes(role));
}

export function accessToken() {
  return session ? session.token : null;
}

/** Call fn(user) now and whenever the session changes (log in, log out, refresh). */
export function onSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function notify() {
  for (const fn of listeners) {
    try {
      fn(currentUser());
    } catch (err) {
      console.error(err);
    }
  }
}

function start(body) {
  const changed = !session || session.user.id !== body.user.id;
  session = {
    token: body.access_token,
    user: body.user,
    expiresAt: Date.now() + body.expires_in * 1000,
  };
  clearTimeout(timer);
  const inMs = Math.max(5, body.expires_in - REFRESH_EARLY_S) * 1000;
  timer = setTimeout(() => refresh(), inMs);
  if (changed) notify();
}

function end() {
  const had = session !== null;
  session = null;
  clearTimeout(timer);
  if (had) notify();
}

function locked(fn) {
  if (navigator.locks && navigator.locks.request) {
    return navigator.locks.request("onair-auth-refresh", fn);
  }
  return fn();
}

/** Trade the refresh cookie for a new access token; false when there is no valid session. */
export function refresh() {
  if (!inflight) {
    inflight = locked(async () => {
      try {
        const resp = await fetch("/auth/refresh", {
          method: "POST",
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (resp.ok) {
          start(await resp.json());
          return true;
        }
        end();
        return false;
      } catch (err) {
        console.warn("refresh failed", err);
        return session !== null;
      }
    }).finally(() => {
      inflight = null;
    });
  }
  return inflight;
}

async function answer(resp) {
  if (resp.status === 204) return null;
  const type = resp.headers.get("content-type") || "";
  const body = type.includes("json") ? await resp.json().catch(() => null) : null;
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

/**
 * Call the API: JSON in and out, the access token when there is one, one refresh and retry on a
 * 401. Errors throw ApiError whose message is the body's `detail`.
 */
export async function api(path, { method = "GET", body, headers = {}, auth = true } = {}) {
  const send = () => {
    const h = { Accept: "application/json", ...headers };
    if (body !== undefined) h["Content-Type"] = "application/json";
    if (auth && session) h.Authorization = `Bearer ${session.token}`;
    return fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  };
  let resp;
  try {
    resp = await send();
  } catch (err) {
    throw new ApiError(0, { error: "network", detail: "cannot reach onair; check your connection" });
  }
  if (resp.status === 401 && auth && session) {
    if (await refresh()) resp = await send();
  }
  return answer(resp);
}

export async function login(username, password) {
  const body = await api("/auth/login", {
    method: "POST",
    body: { username, password },
    auth: false,
  });
  start(body);
  return body.user;
}

export async function signup(username, password, role) {
  await api("/auth/signup", { method: "POST", body: { username, password, role }, auth: false });
  return login(username, password);
}

export async function logout() {
  try {
    await api("/auth/logout", { method: "POST" });
  } finally {
    end();
  }
}

/** Resolves once the page knows whether someone is signed in (the refresh on page load). */
export const ready = refresh().catch(() => false);

/** A fresh idempotency key for one operation (a retry of the same operation reuses it). */
export function newKey() {
  return crypto.randomUUID();
}

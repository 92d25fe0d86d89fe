// Log in: the access token stays in memory (api.js); the auth service sets the refresh cookie.

import { login } from "./api.js";
import "./nav.js";
import { $, clearError, showError } from "./ui.js";

/** Where to go after logging in: a path of this site only (never another origin). */
export function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const error = $("login-error");
  const username = form.username.value.trim().toLowerCase();
  const password = form.password.value;
  if (!username || !password) {
    showError(error, "Enter your username and password.");
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  clearError(error);
  try {
    await login(username, password);
    location.assign(nextPath());
  } catch (err) {
    showError(error, err);
    form.password.focus();
  } finally {
    button.disabled = false;
  }
});

// Sign up, then log in; a streamer goes to the studio.

import { signup } from "./api.js";
import "./nav.js";
import { $, clearError, showError } from "./ui.js";

$("signup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const error = $("signup-error");
  const username = form.username.value.trim();
  const password = form.password.value;
  const role = form.querySelector('input[name="role"]:checked').value;
  const button = form.querySelector("button");
  button.disabled = true;
  clearError(error);
  try {
    await signup(username, password, role);
    location.assign(role === "streamer" ? "/studio" : "/");
  } catch (err) {
    showError(error, err);
  } finally {
    button.disabled = false;
  }
});

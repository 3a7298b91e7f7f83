// Sign in: the token is checked with GET /api/v2/auth/identity, then kept in sessionStorage.

import { ApiError, call, paths, token } from "./api.js";
import { errorBox, h } from "./dom.js";

const TOKEN_CHARS = /^[\x21-\x7e]+$/;

export function renderSignIn(view) {
  const input = h("input", {
    id: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: "",
  });
  const status = h("div", { class: "status" });
  const form = h(
    "form",
    { class: "card signin", id: "signin-form" },
    h("h1", {}, "Sign in"),
    h("label", { for: "token" }, "Token"),
    input,
    h("button", { type: "submit" }, "Sign in"),
    h(
      "p",
      { class: "muted" },
      "The token stays in this browser tab (sessionStorage) and is sent with every request.",
    ),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!TOKEN_CHARS.test(value)) {
      status.replaceChildren(errorBox(new Error("A token is printable ASCII without spaces.")));
      return;
    }
    token.set(value);
    try {
      await call("GET", paths.identity);
    } catch (error) {
      token.clear();
      status.replaceChildren(errorBox(error instanceof ApiError ? error : new Error(String(error))));
      return;
    }
    location.hash = "#/";
  });
  view.append(form);
}

// The console's router: #/signin, #/ (tenants and databases), #/db/<tenant>/<database>,
// #/col/<tenant>/<database>/<collection id>. Each view renders into a fresh element that
// replaces the page once complete; document.body.dataset.ready names the view shown.

import { ApiError, token } from "./api.js";
import { renderCollection } from "./collection.js";
import { renderDatabase } from "./database.js";
import { errorBox, h } from "./dom.js";
import { renderSignIn } from "./signin.js";
import { renderTenants } from "./tenants.js";

const main = document.getElementById("main");
const who = document.getElementById("who");
const signOut = document.getElementById("sign-out");
let generation = 0;

const VIEWS = [
  [/^#\/db\/([^/]+)\/([^/]+)$/, renderDatabase, "database"],
  [/^#\/col\/([^/]+)\/([^/]+)\/([^/]+)$/, renderCollection, "collection"],
  [/^(#\/?)?$/, renderTenants, "tenants"],
];

async function route() {
  const mine = ++generation;
  document.body.dataset.ready = "";
  signOut.hidden = !token.get();
  const view = h("div", { class: "view" });
  let name = "signin";
  try {
    if (!token.get() || location.hash === "#/signin") {
      who.textContent = "";
      renderSignIn(view);
    } else {
      const found = VIEWS.map(([pattern, render, label]) => [pattern.exec(location.hash), render, label])
        .find(([match]) => match);
      // A part decoding to "." or ".." would be a dot segment of the API path built from it
      // (fetch resolves those), so the console's token would go to another path.
      const parts = found ? found[0].slice(1).map(decodeURIComponent) : [];
      if (!found || parts.some((part) => part === "." || part === "..")) {
        name = "missing";
        view.append(h("h1", {}, "No such page"), h("p", {}, h("a", { href: "#/" }, "Back to the tenants")));
      } else {
        const [, render, label] = found;
        name = label;
        await render(view, ...parts);
      }
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      token.clear();
      if (mine === generation) location.hash = "#/signin";
      return;
    }
    name = "error";
    view.replaceChildren(h("h1", {}, "Could not load this page"), errorBox(error));
  }
  if (mine !== generation) return;
  main.replaceChildren(view);
  document.body.dataset.ready = name;
}

signOut.addEventListener("click", () => {
  token.clear();
  location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
route();

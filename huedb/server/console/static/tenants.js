// The tenants and databases this token can see.

import { ApiError, call, paths } from "./api.js";
import { h, showWho } from "./dom.js";

async function places(identity) {
  try {
    return await call("GET", paths.tenants);
  } catch (error) {
    // A tenant-scoped token may not list tenants: it sees its own tenant.
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
  }
  let databases = identity.databases;
  if (databases.includes("*")) {
    databases = (await call("GET", paths.databases(identity.tenant))).map((d) => d.name);
  }
  return [{ name: identity.tenant, databases }];
}

export async function renderTenants(view) {
  const identity = await call("GET", paths.identity);
  const found = await places(identity);
  const scoped = found.length === 1 && found[0].name !== "default_tenant";
  showWho(scoped ? `signed in · tenant ${identity.tenant}` : "signed in");
  const open = h("form", { class: "inline", id: "open-database" });
  const tenantInput = h("input", { id: "open-tenant", placeholder: "tenant", required: "" });
  const databaseInput = h("input", { id: "open-db", placeholder: "database", required: "" });
  open.append("Open another: ", tenantInput, " / ", databaseInput, h("button", { type: "submit" }, "Open"));
  open.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/db/${encodeURIComponent(tenantInput.value)}/${encodeURIComponent(databaseInput.value)}`;
  });
  view.append(
    h("h1", {}, "Tenants and databases"),
    h("p", { class: "muted" }, "Tenants and databases that hold collections (and the defaults)."),
    h(
      "ul",
      { class: "tenants", id: "tenants" },
      found.map((tenant) =>
        h(
          "li",
          { dataset: { tenant: tenant.name } },
          h("strong", {}, tenant.name),
          h(
            "ul",
            {},
            tenant.databases.map((database) =>
              h(
                "li",
                {},
                h(
                  "a",
                  {
                    href: `#/db/${encodeURIComponent(tenant.name)}/${encodeURIComponent(database)}`,
                    dataset: { database },
                  },
                  database,
                ),
              ),
            ),
          ),
        ),
      ),
    ),
    open,
  );
}

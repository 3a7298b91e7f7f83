// One database: its collections with their figures, aliases, scale warnings, the metrics
// panel, the alias switches (admin tokens) and the backup download (admin tokens of every
// tenant).

import { call, callBlob, paths } from "./api.js";
import { metricsSection } from "./chart.js";
import {
  embeddingName,
  errorBox,
  formatBytes,
  formatCount,
  h,
  reload,
  setFlash,
  showWho,
  takeFlash,
} from "./dom.js";

export function collectionHref(tenant, database, id) {
  return `#/col/${encodeURIComponent(tenant)}/${encodeURIComponent(database)}/${encodeURIComponent(id)}`;
}

function collectionsTable(tenant, database, models, figures, aliases) {
  const byId = new Map(figures.map((f) => [f.id, f]));
  const head = ["Name", "Records", "Dimension", "Space", "Embedding model", "Disk", "Index memory", "Index", "Aliases"];
  return h(
    "table",
    { id: "collections", class: "grid" },
    h("thead", {}, h("tr", {}, head.map((title) => h("th", {}, title)))),
    h(
      "tbody",
      {},
      models.map((model) => {
        const f = byId.get(model.id) ?? {};
        const names = aliases.filter((a) => a.collection_id === model.id).map((a) => a.name);
        return h(
          "tr",
          { dataset: { collection: model.name, id: model.id } },
          h("td", {}, h("a", { href: collectionHref(tenant, database, model.id) }, model.name)),
          h("td", { class: "num", dataset: { field: "count" } }, formatCount(f.count)),
          h("td", { class: "num", dataset: { field: "dimension" } }, model.dimension ?? "–"),
          h("td", { dataset: { field: "space" } }, f.space ?? "–"),
          h("td", { dataset: { field: "model" } }, embeddingName(model)),
          h("td", { class: "num", dataset: { field: "disk" } }, formatBytes(f.disk_bytes)),
          h("td", { class: "num", dataset: { field: "index-memory" } }, formatBytes(f.index_memory_bytes)),
          h("td", {}, f.index_kind ?? "not loaded"),
          h("td", {}, names.join(", ")),
        );
      }),
    ),
  );
}

function aliasesSection(base, models, aliases, admin) {
  const status = h("div", { class: "status", id: "alias-status" });
  const rows = aliases.map((alias) => {
    const cells = [h("td", {}, alias.name), h("td", { dataset: { field: "target" } }, alias.collection)];
    if (admin) {
      const select = h(
        "select",
        { "aria-label": `New target of ${alias.name}`, dataset: { aliasTarget: alias.name } },
        models.map((m) => h("option", { value: m.name, selected: m.name === alias.collection ? "" : null }, m.name)),
      );
      const button = h("button", { type: "button", dataset: { switchAlias: alias.name } }, "Switch");
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          await call("PUT", `${base}/aliases/${encodeURIComponent(alias.name)}`, { collection: select.value });
          setFlash(`Alias ${alias.name} now names ${select.value}.`);
          reload();
        } catch (error) {
          status.replaceChildren(errorBox(error));
          button.disabled = false;
        }
      });
      cells.push(h("td", {}, select, " ", button));
    }
    return h("tr", { dataset: { alias: alias.name } }, cells);
  });
  return h(
    "section",
    { class: "card", id: "aliases" },
    h("h2", {}, "Aliases"),
    aliases.length
      ? h(
          "table",
          { class: "grid" },
          h("thead", {}, h("tr", {}, h("th", {}, "Alias"), h("th", {}, "Collection"), admin ? h("th", {}, "Switch to") : null)),
          h("tbody", {}, rows),
        )
      : h("p", { class: "muted" }, "No aliases in this database."),
    status,
  );
}

export function warningsSection(warnings) {
  return h(
    "section",
    { class: "card", id: "warnings" },
    h("h2", {}, "Scale warnings"),
    warnings.length
      ? h("ul", { class: "warnings" }, warnings.map((w) => h("li", {}, w)))
      : h("p", { class: "muted" }, "No scale warnings (thresholds: docs/operations.md, huedb stats)."),
  );
}

function backupSection() {
  const status = h("div", { class: "status", id: "backup-status" });
  const button = h("button", { type: "button", id: "backup" }, "Download a backup");
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.replaceChildren(h("p", { class: "muted" }, "Writing the backup…"));
    try {
      const blob = await callBlob("POST", paths.backup);
      const link = h("a", { href: URL.createObjectURL(blob), download: "huedb-backup.tar" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
      status.replaceChildren(h("p", { class: "ok" }, `Backup downloaded (${formatBytes(blob.size)}).`));
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
    button.disabled = false;
  });
  return h(
    "section",
    { class: "card admin", id: "admin-backup" },
    h("h2", {}, "Backup (admin)"),
    h("p", { class: "muted" }, "An online backup of the whole data directory, as a tar file."),
    button,
    status,
  );
}

export async function renderDatabase(view, tenant, database) {
  const base = paths.database(tenant, database);
  const [models, stats, aliases] = await Promise.all([
    call("GET", `${base}/collections`),
    call("GET", `${base}/stats`),
    call("GET", `${base}/aliases`),
  ]);
  const admin = stats.role === "admin";
  // Backups span every tenant: the server refuses them to a tenant-scoped admin token.
  const globalAdmin = admin && !stats.scoped;
  showWho(`${stats.role} token · ${tenant}`);
  view.append(
    ...[
    h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Tenants"), " / ", tenant, " / ", database),
    h("h1", {}, `Database ${database}`),
    takeFlash(),
    h(
      "section",
      { class: "card" },
      h("h2", {}, `Collections (${models.length})`),
      models.length
        ? collectionsTable(tenant, database, models, stats.collections, aliases)
        : h("p", { class: "muted" }, "No collections."),
    ),
    aliasesSection(base, models, aliases, admin),
    warningsSection(stats.warnings),
    metricsSection(),
    globalAdmin ? backupSection() : null,
    ].filter(Boolean),
  );
}

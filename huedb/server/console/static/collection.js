// One collection: its figures, indexing status and aliases; records page by page with a
// where / where_document editor; queries by text or by a record's vector; (admin) delete.

import { call, paths } from "./api.js";
import { warningsSection } from "./database.js";
import {
  embeddingName,
  errorBox,
  formatBytes,
  formatCount,
  h,
  jsonText,
  setFlash,
  showWho,
  takeFlash,
} from "./dom.js";
import { parseJson } from "./json.js";

const DEFAULT_DIMENSION = 384;

function figuresSection(model, figures, aliases, status) {
  const names = aliases.filter((a) => a.collection_id === model.id).map((a) => a.name);
  const progress =
    `${(status.op_indexing_progress * 100).toFixed(0)} % indexed ` +
    `(${formatCount(status.num_indexed_ops)} of ${formatCount(status.total_ops)} records; below 100 % queries use exact search)`;
  const latency =
    figures.recent_queries > 0
      ? `p50 ${figures.query_p50_ms.toFixed(2)} ms, p99 ${figures.query_p99_ms.toFixed(2)} ms over ${figures.recent_queries} queries (this worker)`
      : "no recent queries on this worker";
  const rows = [
    ["ID", model.id, "id"],
    ["Records", formatCount(figures.count), "count"],
    ["Dimension", model.dimension ?? "– (no vectors yet)", "dimension"],
    ["Space", figures.space ?? "–", "space"],
    ["Embedding model", embeddingName(model), "model"],
    ["Disk", `${formatBytes(figures.disk_bytes)} (vectors, documents, metadata)`, "disk"],
    ["Index memory", `${formatBytes(figures.index_memory_bytes)} (estimate for a graph)`, "index-memory"],
    ["Index snapshot", formatBytes(figures.snapshot_bytes), "snapshot"],
    ["Index in this worker", figures.index_kind ?? "not loaded", "index-kind"],
    ["Indexing status", progress, "indexing"],
    ["Query latency", latency, "latency"],
    ["Aliases", names.length ? names.join(", ") : "none", "aliases"],
    ["Metadata", jsonText(model.metadata) || "none", "metadata"],
  ];
  return h(
    "section",
    { class: "card", id: "figures" },
    h("h2", {}, "Figures"),
    h("dl", { class: "figures" }, rows.map(([term, value, field]) => [h("dt", {}, term), h("dd", { dataset: { field } }, String(value))])),
  );
}

function parseFilter(label, text) {
  if (!text.trim()) return null;
  let value;
  try {
    value = parseJson(text);
  } catch (error) {
    throw new Error(`${label}: not valid JSON (${error.message})`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${label}: must be a JSON object`);
  }
  return value;
}

function withFilters(body, filters) {
  if (filters.where) body.where = filters.where;
  if (filters.whereDocument) body.where_document = filters.whereDocument;
  return body;
}

/** A distance cell: six decimals, or "not finite" where the server sends null (an infinite
 * or NaN distance: JSON has no such number). */
function distanceCell(distance) {
  if (distance === null || distance === undefined) {
    return h(
      "td",
      { class: "num", dataset: { field: "distance", distance: "" }, title: "The distance is infinite or NaN (null in the API's answer)." },
      "not finite",
    );
  }
  return h("td", { class: "num", dataset: { field: "distance", distance: String(distance) } }, Number(distance).toFixed(6));
}

function recordCells(id, document, metadata) {
  return [
    h("td", { class: "id", dataset: { field: "id" } }, id),
    h("td", { class: "doc", dataset: { field: "document" } }, document ?? ""),
    h("td", { class: "meta", dataset: { field: "metadata" } }, jsonText(metadata)),
  ];
}

function recordsSection(col, total, onSimilar) {
  const where = h("textarea", { id: "where", rows: "3", spellcheck: "false", placeholder: '{"genre": {"$eq": "news"}}' });
  const whereDocument = h("textarea", { id: "where-document", rows: "3", spellcheck: "false", placeholder: '{"$contains": "text"}' });
  const pageSize = h("select", { id: "page-size", "aria-label": "Records per page" }, [10, 25, 50, 100].map((n) => h("option", { value: String(n), selected: n === 25 ? "" : null }, `${n} per page`)));
  const filterStatus = h("div", { class: "status", id: "filter-status" });
  const rows = h("tbody");
  const info = h("span", { id: "page-info" });
  const previous = h("button", { type: "button", id: "previous-page" }, "← Previous");
  const next = h("button", { type: "button", id: "next-page" }, "Next →");
  const section = h("section", { class: "card", id: "records", dataset: { state: "loading", offset: "0" } });
  const state = { offset: 0, filters: { where: null, whereDocument: null } };
  const filtered = () => Boolean(state.filters.where || state.filters.whereDocument);

  async function load() {
    section.dataset.state = "loading";
    const limit = Number(pageSize.value);
    const body = withFilters({ limit, offset: state.offset, include: ["documents", "metadatas"] }, state.filters);
    let result;
    try {
      result = await call("POST", `${col}/get`, body);
    } catch (error) {
      rows.replaceChildren();
      info.textContent = "";
      filterStatus.replaceChildren(errorBox(error));
      previous.disabled = true;
      next.disabled = true;
      section.dataset.state = "error";
      return;
    }
    rows.replaceChildren(
      ...result.ids.map((id, i) => {
        const similar = h("button", { type: "button", class: "quiet", dataset: { similar: id } }, "Similar");
        similar.addEventListener("click", () => onSimilar(id));
        return h("tr", { dataset: { recordId: id } }, recordCells(id, result.documents[i], result.metadatas[i]), h("td", {}, similar));
      }),
    );
    const n = result.ids.length;
    const range = n ? `Records ${formatCount(state.offset + 1)}–${formatCount(state.offset + n)}` : "No records";
    info.textContent = filtered() ? `${range} matching the filters` : `${range} of ${formatCount(total)}`;
    previous.disabled = state.offset === 0;
    next.disabled = n < limit || (!filtered() && state.offset + n >= total);
    section.dataset.offset = String(state.offset);
    section.dataset.state = "ready";
  }

  const apply = h("button", { type: "submit", id: "apply-filters" }, "Apply filters");
  const clear = h("button", { type: "button", id: "clear-filters", class: "quiet" }, "Clear");
  const form = h(
    "form",
    { class: "filters", id: "filters" },
    h("label", { for: "where" }, "where (metadata filter, JSON)"),
    where,
    h("label", { for: "where-document" }, "where_document (document filter, JSON)"),
    whereDocument,
    h("div", { class: "row" }, apply, clear, pageSize),
    filterStatus,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      state.filters = { where: parseFilter("where", where.value), whereDocument: parseFilter("where_document", whereDocument.value) };
    } catch (error) {
      filterStatus.replaceChildren(errorBox(error));
      section.dataset.state = "error";
      return;
    }
    filterStatus.replaceChildren();
    state.offset = 0;
    load();
  });
  clear.addEventListener("click", () => {
    where.value = "";
    whereDocument.value = "";
    filterStatus.replaceChildren();
    state.filters = { where: null, whereDocument: null };
    state.offset = 0;
    load();
  });
  pageSize.addEventListener("change", () => {
    state.offset = 0;
    load();
  });
  previous.addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - Number(pageSize.value));
    load();
  });
  next.addEventListener("click", () => {
    state.offset += Number(pageSize.value);
    load();
  });
  section.append(
    h("h2", {}, "Records"),
    form,
    h("table", { class: "grid records" }, h("thead", {}, h("tr", {}, ["ID", "Document", "Metadata", ""].map((t) => h("th", {}, t)))), rows),
    h("div", { class: "row pager" }, previous, info, next),
  );
  return { element: section, load, filters: () => state.filters };
}

function querySection(col, model, filters) {
  const ef = embeddingName(model);
  const canEmbed = ef === "default" && (model.dimension === null || model.dimension === DEFAULT_DIMENSION);
  const text = h("input", { id: "query-text", type: "search", placeholder: "Text to search for", disabled: !canEmbed });
  const byText = h("button", { type: "submit", id: "run-text-query", disabled: !canEmbed }, "Query by text");
  const recordId = h("input", { id: "query-record", placeholder: "Record ID" });
  const byRecord = h("button", { type: "submit", id: "run-record-query" }, "Query by record");
  const nResults = h("input", { id: "n-results", type: "number", min: "1", max: "100", value: "10", "aria-label": "Results" });
  const useFilters = h("input", { id: "query-filters", type: "checkbox" });
  const status = h("div", { class: "status", id: "query-status" });
  const heading = h("p", { id: "query-heading", class: "muted" });
  const rows = h("tbody");
  const section = h("section", { class: "card", id: "query", dataset: { state: "idle" } });
  const note = canEmbed
    ? null
    : h(
        "p",
        { class: "notice", id: "text-query-note" },
        "Text queries are embedded on the server by its default embedder (all-MiniLM-L6-v2, 384 dimensions); ",
        `this collection's embedding function is ${ef}` + (model.dimension ? ` with ${model.dimension} dimensions` : "") + ": query by a record's vector instead.",
      );

  async function run(describe, vector) {
    section.dataset.state = "loading";
    status.replaceChildren();
    try {
      const body = { query_embeddings: [await vector()], n_results: Number(nResults.value) || 10, include: ["documents", "metadatas", "distances"] };
      const result = await call("POST", `${col}/query`, useFilters.checked ? withFilters(body, filters()) : body);
      const ids = result.ids[0];
      heading.textContent = `${describe}: ${ids.length} results, nearest first`;
      rows.replaceChildren(
        ...ids.map((id, i) =>
          h(
            "tr",
            { dataset: { recordId: id } },
            h("td", { class: "num" }, String(i + 1)),
            recordCells(id, result.documents[0][i], result.metadatas[0][i]),
            distanceCell(result.distances[0][i]),
          ),
        ),
      );
      section.dataset.state = "ready";
    } catch (error) {
      rows.replaceChildren();
      heading.textContent = "";
      status.replaceChildren(errorBox(error));
      section.dataset.state = "error";
    }
  }

  async function recordVector(id) {
    const found = await call("POST", `${col}/get`, { ids: [id], include: ["embeddings"] });
    if (!found.ids.length) throw new Error(`No record with ID ${JSON.stringify(id)} in this collection.`);
    return found.embeddings[0];
  }

  const byRecordQuery = (id) => {
    recordId.value = id;
    run(`Nearest to record ${id}`, () => recordVector(id));
    section.scrollIntoView();
  };
  const textForm = h("form", { class: "row", id: "text-query" }, text, byText);
  textForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    const asked = text.value;
    run(`Text "${asked}"`, async () => (await call("GET", `${col}/embed?text=${encodeURIComponent(asked)}`)).embedding);
  });
  const recordForm = h("form", { class: "row", id: "record-query" }, recordId, byRecord);
  recordForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (recordId.value) byRecordQuery(recordId.value);
  });
  section.append(
    h("h2", {}, "Query"),
    textForm,
    ...(note ? [note] : []),
    recordForm,
    h("div", { class: "row" }, h("label", { for: "n-results" }, "Results "), nResults, h("label", {}, useFilters, " Apply the record filters above")),
    status,
    heading,
    h("table", { class: "grid results" }, h("thead", {}, h("tr", {}, ["#", "ID", "Document", "Metadata", "Distance"].map((t) => h("th", {}, t)))), rows),
  );
  return { element: section, byRecord: byRecordQuery };
}

function deleteSection(base, tenant, database, model) {
  const confirm = h("input", { id: "delete-confirm", autocomplete: "off", spellcheck: "false", placeholder: model.name });
  const button = h("button", { type: "button", id: "delete-collection", class: "danger", disabled: true }, "Delete this collection");
  const status = h("div", { class: "status", id: "delete-status" });
  confirm.addEventListener("input", () => {
    button.disabled = confirm.value !== model.name;
  });
  button.addEventListener("click", async () => {
    button.disabled = true;
    const path = `${base}/collections/${encodeURIComponent(model.name)}`;
    try {
      // Deleting goes by name: if this collection was renamed since the page loaded and
      // another took its name, the name is no longer this page's collection.
      const current = await call("GET", path);
      if (current.id !== model.id) {
        const moved = `The name ${model.name} now belongs to another collection; nothing was deleted. Reload the page.`;
        status.replaceChildren(errorBox(new Error(moved)));
        return;
      }
      await call("DELETE", path);
    } catch (error) {
      status.replaceChildren(errorBox(error));
      button.disabled = false;
      return;
    }
    setFlash(`Deleted collection ${model.name}.`);
    location.hash = `#/db/${encodeURIComponent(tenant)}/${encodeURIComponent(database)}`;
  });
  return h(
    "section",
    { class: "card admin danger-zone", id: "admin-delete" },
    h("h2", {}, "Delete (admin)"),
    h("label", { for: "delete-confirm" }, `Type the collection's name (${model.name}) to delete it and all its records:`),
    h("div", { class: "row" }, confirm, button),
    status,
  );
}

export async function renderCollection(view, tenant, database, id) {
  const base = paths.database(tenant, database);
  const col = paths.collection(tenant, database, id);
  const [model, stats, aliases, status, total] = await Promise.all([
    call("GET", `${base}/collections/by-id/${encodeURIComponent(id)}`),
    call("GET", `${base}/stats`),
    call("GET", `${base}/aliases`),
    call("GET", `${col}/indexing_status`),
    call("GET", `${col}/count`),
  ]);
  const figures = stats.collections.find((c) => c.id === model.id) ?? {};
  const admin = stats.role === "admin";
  showWho(`${stats.role} token · ${tenant}`);
  const warnings = stats.warnings.filter((w) => w.startsWith(`${model.name}: `));
  let query = null;
  const records = recordsSection(col, total, (recordIdValue) => query.byRecord(recordIdValue));
  query = querySection(col, model, records.filters);
  await records.load();
  view.append(
    ...[
    h(
      "nav",
      { class: "crumbs" },
      h("a", { href: "#/" }, "Tenants"),
      ` / ${tenant} / `,
      h("a", { href: `#/db/${encodeURIComponent(tenant)}/${encodeURIComponent(database)}` }, database),
      " / ",
      model.name,
    ),
    h("h1", {}, `Collection ${model.name}`),
    takeFlash(),
    figuresSection(model, figures, aliases, status),
    warningsSection(warnings),
    records.element,
    query.element,
    admin ? deleteSection(base, tenant, database, model) : null,
    ].filter(Boolean),
  );
}

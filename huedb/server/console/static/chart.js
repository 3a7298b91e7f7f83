// The metrics panel: request rate and mean query latency, drawn as SVG lines from GET /metrics
// (Prometheus text), polled every few seconds while the panel is on the page.

import { ApiError, callText } from "./api.js";
import { h } from "./dom.js";

const POLL_MS = 3000;
const POINTS = 60;
const WIDTH = 560;
const HEIGHT = 90;
const SVG = "http://www.w3.org/2000/svg";
// Every request to /metrics (the console's own polls and any Prometheus scrapes alike) is
// left out of the request rate (docs/operations.md, "Web console").
const SELF = 'route="/metrics"';

/** Sums of the series a chart needs from one scrape (Prometheus text format). */
export function totals(text) {
  const sums = { requests: 0, querySeconds: 0, queries: 0 };
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (!Number.isFinite(value)) continue;
    if (line.startsWith("huedb_http_requests_total{") && !line.includes(SELF)) sums.requests += value;
    else if (line.startsWith("huedb_query_duration_seconds_sum{")) sums.querySeconds += value;
    else if (line.startsWith("huedb_query_duration_seconds_count{")) sums.queries += value;
  }
  return sums;
}

function svg(tag, attrs) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
  return element;
}

/** One line chart: a polyline scaled to its largest value, with the latest value as text. */
function lineChart(id, title, unit) {
  const line = svg("polyline", { points: "", fill: "none", stroke: "#2b6cb0", "stroke-width": 2 });
  const frame = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, width: WIDTH, height: HEIGHT, role: "img" });
  frame.append(svg("rect", { x: 0, y: 0, width: WIDTH, height: HEIGHT, fill: "none", stroke: "#ccc" }), line);
  const latest = h("span", { class: "num", id, dataset: { value: "" } }, "–");
  const top = h("span", { class: "muted" }, "");
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, `${title}: `, latest, ` ${unit} `, top), frame);
  return {
    figure,
    draw(values) {
      const max = Math.max(...values, 1e-9);
      const step = WIDTH / (POINTS - 1);
      const offset = POINTS - values.length;
      line.setAttribute(
        "points",
        values.map((v, i) => `${((offset + i) * step).toFixed(1)},${(HEIGHT - 4 - (v / max) * (HEIGHT - 8)).toFixed(1)}`).join(" "),
      );
      const last = values[values.length - 1];
      latest.textContent = last.toFixed(unit === "ms" ? 2 : 1);
      latest.dataset.value = String(last);
      top.textContent = `(max ${max.toFixed(unit === "ms" ? 2 : 1)} in the last ${values.length} polls)`;
    },
  };
}

/** The panel; it polls /metrics until it leaves the page. */
export function metricsSection() {
  const rate = lineChart("request-rate", "Requests per second", "req/s");
  const latency = lineChart("query-latency", "Mean query latency", "ms");
  const status = h("p", { class: "muted", id: "metrics-status" }, "Reading /metrics…");
  const section = h(
    "section",
    { class: "card", id: "metrics", dataset: { scrapes: "0" } },
    h("h2", {}, "Query latency and request rate"),
    rate.figure,
    latency.figure,
    status,
  );
  const rates = [];
  const latencies = [];
  let previous = null;
  let missed = 0;
  let timer = null;

  async function poll() {
    // Rendered off-page first; once it is away for a few polls the view has changed: stop.
    missed = section.isConnected ? 0 : missed + 1;
    if (missed > 2) {
      clearInterval(timer);
      return;
    }
    let now;
    try {
      now = { at: performance.now(), ...totals(await callText("GET", "/metrics")) };
    } catch (error) {
      clearInterval(timer);
      const why =
        error instanceof ApiError && error.status === 403
          ? "this token cannot read /metrics (a tenant-scoped token: the metrics span every tenant)"
          : `${error.status ?? ""} ${error.message}`;
      status.textContent = `Metrics not readable: ${why}.`;
      return;
    }
    if (previous) {
      const seconds = (now.at - previous.at) / 1000;
      const queries = now.queries - previous.queries;
      rates.push(Math.max(0, (now.requests - previous.requests) / seconds));
      latencies.push(queries > 0 ? ((now.querySeconds - previous.querySeconds) / queries) * 1000 : 0);
      if (rates.length > POINTS) rates.shift();
      if (latencies.length > POINTS) latencies.shift();
      rate.draw(rates);
      latency.draw(latencies);
    }
    previous = now;
    section.dataset.scrapes = String(Number(section.dataset.scrapes) + 1);
    status.textContent = `Every worker, polled every ${POLL_MS / 1000} s; latency is the engine time of query calls.`;
  }

  timer = setInterval(poll, POLL_MS);
  poll();
  return section;
}

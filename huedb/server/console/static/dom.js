// Small DOM helpers. Text goes in as text nodes only: record contents are never parsed as HTML.

import { stringifyJson } from "./json.js";

const PROPERTIES = new Set(["value", "checked", "disabled", "hidden", "open"]);

/** An element with attributes (on* names are listeners) and children (nodes or text). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (PROPERTIES.has(key)) element[key] = value;
    else element.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** 1536 -> "1.5 KiB". */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export const formatCount = (n) => (n === null || n === undefined ? "–" : n.toLocaleString("en"));

/** The box that shows a refused call: status, error name and the server's message. */
export function errorBox(error) {
  const text =
    error.status === undefined
      ? error.message
      : `${error.status} ${error.name}: ${error.message}`;
  return h("div", { class: "error", role: "alert" }, text);
}

/** The embedding function a collection records, as a short name. */
export function embeddingName(model) {
  const ef = model.configuration_json?.embedding_function;
  if (!ef) return "none";
  return ef.name ?? ef.type ?? "unknown";
}

/** A JSON value for a table cell (one line), 64-bit integers exact. */
export const jsonText = (value) => (value === null || value === undefined ? "" : stringifyJson(value));

/** The header's line about the signed-in token. */
export function showWho(text) {
  document.getElementById("who").textContent = text;
}

let flash = null;

/** A message for the next view rendered (after an action that navigates). */
export function setFlash(text) {
  flash = text;
}

/** The pending message as a notice element, once. */
export function takeFlash() {
  const text = flash;
  flash = null;
  return text ? h("p", { class: "ok", role: "status", id: "flash" }, text) : null;
}

/** Render the current page again. */
export function reload() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

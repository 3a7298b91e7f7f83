// Calls to the huedb server: every one carries the token, kept in this tab's sessionStorage.
// Bodies are read and written by json.js, which keeps 64-bit integers exact.

import { parseJson, stringifyJson } from "./json.js";

const TOKEN_KEY = "huedb.console.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** A refused call: the HTTP status and Chroma's error body ({error, message}). */
export class ApiError extends Error {
  constructor(status, name, message) {
    super(message);
    this.status = status;
    this.name = name;
  }
}

async function send(method, path, body) {
  const headers = { Authorization: `Bearer ${token.get() ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : stringifyJson(body),
    cache: "no-store",
    credentials: "omit",
  });
  if (!response.ok) {
    let name = "Error";
    let message = response.statusText;
    try {
      const error = await response.json();
      name = error.error ?? name;
      message = error.message ?? message;
    } catch {
      // not a JSON error body: keep the status text
    }
    throw new ApiError(response.status, name, message);
  }
  return response;
}

/** The JSON answer of a call; an ApiError for any status outside 2xx. */
export async function call(method, path, body) {
  return parseJson(await (await send(method, path, body)).text());
}

/** The body of a call as text (GET /metrics). */
export async function callText(method, path) {
  return (await send(method, path)).text();
}

/** The body of a call as a Blob (downloads). */
export async function callBlob(method, path, body) {
  return (await send(method, path, body)).blob();
}

const enc = encodeURIComponent;

export const paths = {
  identity: "/api/v2/auth/identity",
  tenants: "/api/v2/console/tenants",
  backup: "/api/v2/admin/backup",
  databases: (tenant) => `/api/v2/tenants/${enc(tenant)}/databases`,
  database: (tenant, database) => `/api/v2/tenants/${enc(tenant)}/databases/${enc(database)}`,
  collection: (tenant, database, id) =>
    `${paths.database(tenant, database)}/collections/${enc(id)}`,
};
